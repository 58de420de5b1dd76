"""GoPro MP4s as paired IMU+video: the accelerometer and gyroscope from the "GoPro MET" track.

A GoPro MP4 carries, beside its video, a timed data track (handler "GoPro MET", sample format
``gpmd``) whose samples ("payloads", usually one per ~1 s) are GPMF (see :mod:`.gpmf`). This
module reads every payload with its presentation time and duration (PyAV), decodes the ACCL and
GYRO streams, and puts each IMU sample on the video clock: seconds from the video stream's first
presentation time (the convention of :mod:`crossmodal_har.pairs.sources`).

Timing (see docs/gopro.md):
    * Sample indices come from ``TSMP`` (total samples so far) when present, else from counting.
    * With ``STMP`` (microsecond timestamp of each payload's first sample; MAX, HERO6+ and later):
      sample times are interpolated between consecutive STMPs (extrapolated with the last local
      rate after the last one), then moved onto the video clock by the offset between a
      frame-locked stream's STMP (SHUT/ISOE/ISOG, one sample per video frame) and the payload's
      presentation time; without a frame-locked stream, by the median offset of the IMU stream's
      own STMPs to its payload times.
    * Without STMP (HERO5): a least-squares line through (first sample index, payload start time)
      of every payload gives the rate and the time of sample 0. The last payload's duration is
      not used: it is often padded past the end of the video.
    * ``TIMO`` (a declared delay of a stream) is subtracted.

Axes: output is GoPro's camera frame (X, Y, Z; Z points out of the top of the camera, so an
upright, still camera reads acc ~ (0, 0, +1 g)). Stored channel order comes from ``ORIN`` when
the stream declares it (lowercase = negated axis), else from ``MTRX``+``ORIO``, else from a
per-model table (HERO5 "ZXY", HERO6/7 "YxZ", Fusion "yXZ", from GoPro's documentation).

Units: canonical acc in g (9.80665 m/s^2), gyro in rad/s, time in s; converted from the
declared SIUN/UNIT (GoPro writes m/s^2 and rad/s).

When ACCL and GYRO run at different rates (HERO5: 200 Hz and 400 Hz), the slower one is
linearly interpolated onto the faster one's timestamps (upsampling cannot alias; the signal
layer's anti-aliased resampling to 50 Hz follows), over the interval both cover.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.pairs import gpmf
from crossmodal_har.signals.types import STANDARD_GRAVITY, ImuRecording

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "Payload", "MediaInfo", "ImuStream", "GoProTelemetry", "read_payloads", "telemetry_from_payloads",
    "read_telemetry", "load_gopro_imu", "iter_gopro_sessions", "find_gopro_files", "camera_model",
    "FALLBACK_AXIS_ORDER",
]

IMU_KEYS = ("ACCL", "GYRO")
# Streams with one sample per video frame: their STMP ties the camera clock to the video clock.
FRAME_LOCKED_KEYS = ("SHUT", "ISOE", "ISOG")

# Firmware prefix (MP4 "firmware" tag) -> camera model. Only for naming and for the axis order of
# streams that do not declare ORIN.
FIRMWARE_MODELS: Dict[str, str] = {
    "HD5": "HERO5 Black", "HX1": "HERO5 Session", "HD6": "HERO6 Black", "HD7": "HERO7 Black",
    "HD8": "HERO8 Black", "HD9": "HERO9 Black", "H19": "MAX", "H21": "HERO10 Black",
    "H22": "HERO11 Black", "H23": "HERO12 Black", "FS1": "Fusion",
}
# Stored channel order (camera axes; lowercase = negated) for cameras whose IMU streams carry no
# ORIN tag, from the axis tables of GoPro's GPMF documentation.
FALLBACK_AXIS_ORDER: Dict[str, str] = {
    "HERO5 Black": "ZXY", "HERO5 Session": "ZXY", "HERO6 Black": "YxZ", "HERO7 Black": "YxZ",
    "Fusion": "yXZ",
}

_ACC_TO_G = {"m/s^2": 1.0 / STANDARD_GRAVITY, "m/s2": 1.0 / STANDARD_GRAVITY, "g": 1.0}
_GYRO_TO_RAD_S = {"rad/s": 1.0, "deg/s": np.pi / 180.0, "degree/s": np.pi / 180.0}
_DEFAULT_UNITS = {"ACCL": "m/s^2", "GYRO": "rad/s"}


@dataclass
class Payload:
    """One sample of the GPMF track: its GPMF bytes and its timing on the container clock (s)."""

    pts_s: float
    duration_s: float
    data: bytes


@dataclass
class MediaInfo:
    """What the MP4 says about itself (seconds on the container's presentation clock)."""

    video_start_s: float = 0.0
    video_duration_s: float = 0.0
    video_frames: int = 0
    video_fps: float = 0.0
    firmware: str = ""
    declared_payloads: int = 0


@dataclass
class ImuStream:
    """One IMU stream (ACCL or GYRO), axes and units as stored except for the axis map.

    Attributes:
        key: ``ACCL`` or ``GYRO``.
        t: [n] float64 sample times on the video clock (s).
        values: [n, 3] float64, camera axes X, Y, Z, in ``unit`` (SCAL applied).
        unit: the declared unit, normalised (``m/s^2``, ``rad/s`` ...).
        axis_order: the stored order used (``"ZXY"``, ``"XzY"``, ... or ``"stored"``).
        timing: ``"stmp"`` or ``"payload"`` (see module docstring).
        payloads: payloads that contributed samples.
        declared_total: last TSMP (samples declared by the camera), or None.
    """

    key: str
    t: np.ndarray
    values: np.ndarray
    unit: str
    axis_order: str
    timing: str
    payloads: int
    declared_total: Optional[int] = None

    @property
    def rate_hz(self) -> float:
        """Measured mean rate (Hz) on the video clock."""
        if len(self.t) < 2:
            return 0.0
        return (len(self.t) - 1) / float(self.t[-1] - self.t[0])


@dataclass
class GoProTelemetry:
    """ACCL and GYRO of one file, plus what the file says about the camera and video."""

    path: Optional[Path]
    camera: str
    device_name: str
    media: MediaInfo
    streams: Dict[str, ImuStream] = field(default_factory=dict)

    def meta(self) -> Dict[str, Any]:
        """JSON-able summary: camera, firmware, and per stream its measured rate (Hz), sample
        count, declared sample count (TSMP), declared unit, stored axis order and timing method."""
        return {
            "camera": self.camera, "device_name": self.device_name, "firmware": self.media.firmware,
            "video_duration_s": self.media.video_duration_s, "video_fps": self.media.video_fps,
            "axes": "GoPro camera frame X, Y, Z (Z out of the top; upright camera reads acc_z = +1 g)",
            "streams": {
                key: {"rate_hz": round(s.rate_hz, 4), "samples": int(len(s.t)),
                      "declared_samples": s.declared_total, "declared_unit": s.unit,
                      "axis_order": s.axis_order, "timing": s.timing,
                      "first_s": float(s.t[0]), "last_s": float(s.t[-1])}
                for key, s in self.streams.items()
            },
        }


def camera_model(firmware: str, device_name: str = "") -> str:
    """Camera model from the MP4 firmware tag (``HD5.02...`` -> HERO5 Black), else DVNM."""
    model = FIRMWARE_MODELS.get(firmware[:3].upper()) if firmware else None
    if model:
        return model
    if device_name and device_name.lower() not in ("camera", ""):
        return device_name
    return "unknown GoPro" + (f" (firmware {firmware})" if firmware else "")


# ----------------------------------------------------------------------------------------- MP4


def _clean_handler(name: str) -> str:
    return "".join(ch for ch in name if ch.isprintable()).strip()


def _discard_others(container: Any, keep: Any) -> None:
    """Tell the demuxer to skip every other stream, so that only the telemetry samples are read
    from disk (~0.1 % of a GoPro file) instead of the whole file."""
    import av

    discard = getattr(getattr(av.stream, "Discard", None), "all", None)
    if discard is None:  # older PyAV: read everything, still correct
        return
    for s in container.streams:
        if s is not keep:
            try:
                s.discard = discard
            except (AttributeError, TypeError, ValueError):  # pragma: no cover
                return


def read_payloads(path: PathLike) -> Tuple[List[Payload], MediaInfo]:
    """Read every GPMF payload of the "GoPro MET" track with its pts and duration (s).

    Raises:
        DataError: unreadable or truncated file, no GoPro telemetry track, or fewer payloads than
            the track declares.
    """
    import av  # heavy; only when reading

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        container = av.open(os.fspath(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise DataError(path, f"not a readable MP4 (truncated or corrupt?): {why}") from None
    try:
        info = MediaInfo(firmware=str(container.metadata.get("firmware", "")).strip())
        if container.streams.video:
            vs = container.streams.video[0]
            tb = float(vs.time_base) if vs.time_base else 0.0
            info.video_start_s = float(vs.start_time * tb) if vs.start_time is not None else 0.0
            if vs.duration is not None and tb:
                info.video_duration_s = float(vs.duration * tb)
            elif container.duration:
                info.video_duration_s = container.duration / 1e6
            info.video_frames = int(vs.frames or 0)
            rate = vs.average_rate or vs.guessed_rate
            info.video_fps = float(rate) if rate else 0.0
        met = None
        for s in container.streams:
            if s.type != "data":
                continue
            handler = _clean_handler(str(s.metadata.get("handler_name", "")))
            if handler == "GoPro MET" or (met is None and s.name == "bin_data"):
                met = s
                if handler == "GoPro MET":
                    break
        if met is None:
            raise DataError(path, "no GoPro telemetry track ('GoPro MET' GPMF data); "
                                  "not a GoPro MP4, or the camera recorded without telemetry")
        info.declared_payloads = int(met.frames or 0)
        _discard_others(container, met)
        payloads: List[Payload] = []
        try:
            for pkt in container.demux(met):
                if pkt.size == 0 or pkt.pts is None:
                    continue
                if pkt.is_corrupt:
                    raise DataError(path, f"telemetry payload {len(payloads)} is corrupt (truncated file?)")
                tb = pkt.time_base
                payloads.append(Payload(float(pkt.pts * tb), float((pkt.duration or 0) * tb), bytes(pkt)))
        except av.FFmpegError as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise DataError(path, f"telemetry track unreadable after {len(payloads)} payloads "
                                  f"(truncated file?): {why}") from None
    finally:
        container.close()
    if not payloads:
        raise DataError(path, "the GoPro telemetry track is empty")
    if info.declared_payloads and len(payloads) < info.declared_payloads:
        raise DataError(path, f"telemetry track truncated: {len(payloads)} of "
                              f"{info.declared_payloads} payloads readable")
    if not payloads[0].data.startswith(b"DEVC"):
        raise DataError(path, "the 'GoPro MET' track does not hold GPMF (no DEVC at its start)")
    return payloads, info


# ------------------------------------------------------------------------------------- GPMF


@dataclass
class _Chunk:
    """One stream's samples in one payload."""

    pts_s: float
    duration_s: float
    values: np.ndarray  # [n, e] scaled, stored order
    tsmp: Optional[int]
    stmp_us: Optional[float]
    timo_s: float


def _text(block: gpmf.SensorBlock, key: str) -> Optional[str]:
    t = block.prop_text(key)
    if isinstance(t, list):
        t = "".join(t)
    return t or None


def _norm_unit(u: str) -> str:
    return u.replace("\u00b2", "^2").replace("\u00b0", "deg").replace("\u00b5", "u").replace(" ", "")


def _axis_plan(block: gpmf.SensorBlock, camera: str) -> Tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """How to bring stored channels to camera X, Y, Z: (description, function)."""
    orin = _text(block, "ORIN")
    if orin:
        amap = gpmf.axis_map(orin, "XYZ")
        return orin, lambda v: gpmf.apply_axis_map(v, amap)
    mtrx = block.props.get("MTRX")
    orio = _text(block, "ORIO")
    if mtrx is not None and orio and len(orio) == 3:
        m = mtrx.values().astype(np.float64).reshape(3, 3)
        amap = gpmf.axis_map(orio, "XYZ")
        return f"MTRX->{orio}", lambda v: gpmf.apply_axis_map(v @ m.T, amap)
    order = FALLBACK_AXIS_ORDER.get(camera)
    if order:
        amap = gpmf.axis_map(order, "XYZ")
        return order, lambda v: gpmf.apply_axis_map(v, amap)
    return "stored", lambda v: v


def _fit_line(x: np.ndarray, y: np.ndarray) -> Tuple[float, float]:
    """Least-squares y = a + b x; returns (a, b)."""
    xm, ym = x.mean(), y.mean()
    b = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
    return float(ym - b * xm), b


def _first_indices(chunks: Sequence[_Chunk]) -> np.ndarray:
    n = np.array([len(c.values) for c in chunks], dtype=np.int64)
    counted = np.concatenate([[0], np.cumsum(n)[:-1]])
    if all(c.tsmp is not None for c in chunks):
        first = np.array([c.tsmp for c in chunks], dtype=np.int64) - n
        # TSMP counts from record start; payloads dropped from the file leave a gap in the count,
        # which keeps later samples at their right place. Inconsistent counters: count instead.
        if first[0] >= 0 and np.all(first[1:] >= first[:-1] + n[:-1]):
            return first - first[0]
        log.debug("TSMP inconsistent with sample counts; counting samples instead")
    return counted


def _stream_times(key: str, chunks: Sequence[_Chunk], clock_offset_s: Optional[float],
                  source: Optional[Path]) -> Tuple[np.ndarray, str]:
    """Per-sample times (s, video clock) of one stream, and the method used."""
    first = _first_indices(chunks).astype(np.float64)
    n = np.array([len(c.values) for c in chunks], dtype=np.int64)
    idx = np.concatenate([f + np.arange(k) for f, k in zip(first, n)])
    pts = np.array([c.pts_s for c in chunks])
    stmp = [c.stmp_us for c in chunks]
    t: Optional[np.ndarray] = None
    method = "payload"
    if len(chunks) >= 2 and all(s is not None for s in stmp):
        y = np.array(stmp, dtype=np.float64) * 1e-6
        if np.all(np.diff(y) > 0):
            local = (y[-1] - y[-2]) / (first[-1] - first[-2])
            t_cam = np.where(idx <= first[-1], np.interp(idx, first, y), y[-1] + (idx - first[-1]) * local)
            offset = clock_offset_s if clock_offset_s is not None else float(np.median(pts - y))
            t = t_cam + offset
            method = "stmp"
        else:
            log.warning("%s: %s STMP not increasing; timing from payload times instead", source, key)
    if t is None:
        if len(chunks) >= 2:
            a, b = _fit_line(first, pts)
        else:
            dur = chunks[0].duration_s
            if not dur > 0:
                raise DataError(source, f"{key}: one telemetry payload with no duration; cannot time samples")
            b = dur / n[0]
            a = pts[0]
        if not b > 0:
            raise DataError(source, f"{key}: telemetry payload times do not increase with the sample count")
        t = a + idx * b
    timo = chunks[-1].timo_s
    if timo:
        t = t - timo
    if not np.all(np.diff(t) > 0):
        raise DataError(source, f"{key}: derived sample times are not strictly increasing")
    return t, method


def _frame_locked_offset(payload_blocks: Sequence[Dict[str, gpmf.SensorBlock]],
                         pts: Sequence[float]) -> Optional[float]:
    """Video-clock minus STMP-clock offset (s) from a stream with one sample per video frame."""
    for key in FRAME_LOCKED_KEYS:
        offs = []
        for blocks, p in zip(payload_blocks, pts):
            b = blocks.get(key)
            if b is None or b.repeat == 0:
                continue
            s = b.prop_number("STMP")
            if s is not None:
                offs.append(p - s * 1e-6)
        if offs:
            return float(np.median(offs))
    return None


def telemetry_from_payloads(payloads: Sequence[Payload], *, media: Optional[MediaInfo] = None,
                            source: Optional[PathLike] = None, use_stmp: bool = True) -> GoProTelemetry:
    """Decode ACCL and GYRO from GPMF payloads and time every sample on the video clock.

    Pure (no file access): ``payloads`` may be built by hand in tests.

    Args:
        use_stmp: time samples from STMP where present (else, or when False, from payload times).

    Raises:
        DataError: malformed/truncated GPMF, or no ACCL/GYRO stream.
    """
    src = None if source is None else Path(source)
    media = media or MediaInfo()
    wanted = IMU_KEYS + FRAME_LOCKED_KEYS
    per_payload: List[Dict[str, gpmf.SensorBlock]] = []
    device_id: Any = None
    device_name = ""
    for i, p in enumerate(payloads):
        try:
            items = gpmf.parse(p.data)
            blocks: Dict[str, gpmf.SensorBlock] = {}
            for b in gpmf.iter_samples(items, keys=wanted):
                if b.key in IMU_KEYS and device_id is None:
                    device_id, device_name = b.device_id, b.device_name
                # The camera's own IMU: the first device that had one (a Karma drone or a BLE
                # sensor adds other devices with other streams).
                if b.device_id == device_id or b.key in FRAME_LOCKED_KEYS:
                    blocks.setdefault(b.key, b)
        except gpmf.GpmfError as exc:
            raise DataError(src, f"telemetry payload {i} at {p.pts_s:.3f} s: {exc} "
                                 "(truncated or corrupt telemetry)") from None
        per_payload.append(blocks)
    camera = camera_model(media.firmware, device_name)
    # The video clock starts at the video stream's first presentation time (0 on GoPro files).
    pts_all = [p.pts_s - media.video_start_s for p in payloads]
    clock_offset = _frame_locked_offset(per_payload, pts_all)
    tele = GoProTelemetry(src, camera, device_name, media)
    for key in IMU_KEYS:
        chunks: List[_Chunk] = []
        unit = axis_desc = None
        transform: Optional[Callable[[np.ndarray], np.ndarray]] = None
        declared = None
        for p, pts, blocks in zip(payloads, pts_all, per_payload):
            b = blocks.get(key)
            if b is None:
                continue
            tsmp = b.prop_number("TSMP")
            declared = int(tsmp) if tsmp is not None else declared
            if b.repeat == 0:
                continue
            try:
                vals = b.values()
                if transform is None:
                    axis_desc, transform = _axis_plan(b, camera)
                vals = transform(vals)
            except gpmf.GpmfError as exc:
                raise DataError(src, f"{key} at {p.pts_s:.3f} s: {exc}") from None
            if vals.shape[1] != 3:
                raise DataError(src, f"{key} has {vals.shape[1]} axes per sample, expected 3")
            u = b.units()
            if isinstance(u, list):
                u = u[0] if u else None
            unit = _norm_unit(u) if u else unit
            timo = b.prop_number("TIMO") or 0.0
            stmp = b.prop_number("STMP") if use_stmp else None
            chunks.append(_Chunk(pts, p.duration_s, vals, None if tsmp is None else int(tsmp), stmp, float(timo)))
        if not chunks:
            continue
        if unit is None:
            unit = _DEFAULT_UNITS[key]
            log.warning("%s: %s declares no unit; assuming %s (GoPro's documented unit)", src, key, unit)
        t, method = _stream_times(key, chunks, clock_offset, src)
        tele.streams[key] = ImuStream(key, t, np.concatenate([c.values for c in chunks]), unit,
                                      axis_desc or "stored", method, len(chunks), declared)
        if axis_desc == "stored":
            log.warning("%s: %s declares no axis order (ORIN) and camera %r is not in the table; "
                        "axes kept in stored order", src, key, camera)
    missing = [k for k in IMU_KEYS if k not in tele.streams]
    if missing:
        raise DataError(src, f"GoPro telemetry has no {' or '.join(missing)} samples "
                             "(camera without IMU, or IMU recording disabled)")
    return tele


def read_telemetry(path: PathLike, *, use_stmp: bool = True) -> GoProTelemetry:
    """:func:`read_payloads` then :func:`telemetry_from_payloads` on one MP4."""
    payloads, media = read_payloads(path)
    return telemetry_from_payloads(payloads, media=media, source=path, use_stmp=use_stmp)


# ---------------------------------------------------------------------------- canonical IMU


def _factor(key: str, unit: str, source: Optional[Path]) -> float:
    table = _ACC_TO_G if key == "ACCL" else _GYRO_TO_RAD_S
    f = table.get(unit)
    if f is None:
        raise DataError(source, f"{key} unit {unit!r} not understood (expected one of {sorted(table)})")
    return f


def canonical_arrays(tele: GoProTelemetry) -> Tuple[np.ndarray, np.ndarray]:
    """Combine ACCL and GYRO into ``(t [T] s, data [T, 6])`` in g and rad/s.

    The stream with more samples gives the timestamps; the other is linearly interpolated onto
    them, over the interval both cover.
    """
    acc, gyr = tele.streams["ACCL"], tele.streams["GYRO"]
    a = acc.values * _factor("ACCL", acc.unit, tele.path)
    g = gyr.values * _factor("GYRO", gyr.unit, tele.path)
    base, other = (acc, gyr) if len(acc.t) >= len(gyr.t) else (gyr, acc)
    lo, hi = max(acc.t[0], gyr.t[0]), min(acc.t[-1], gyr.t[-1])
    keep = (base.t >= lo) & (base.t <= hi)
    t = base.t[keep]
    if len(t) < 2:
        raise DataError(tele.path, "ACCL and GYRO samples do not overlap in time")

    def on_t(stream: ImuStream, v: np.ndarray) -> np.ndarray:
        if stream is base:
            return v[keep]
        return np.stack([np.interp(t, stream.t, v[:, j]) for j in range(3)], axis=1)

    data = np.concatenate([on_t(acc, a), on_t(gyr, g)], axis=1)
    return t, data


def load_gopro_imu(path: PathLike, *, name: Optional[str] = None, subject: Optional[str] = None,
                   telemetry: Optional[GoProTelemetry] = None) -> ImuRecording:
    """The IMU of a GoPro MP4 as an :class:`ImuRecording` on the video clock (s; g; rad/s).

    Raises:
        DataError: not a GoPro file, no IMU stream, truncated telemetry.
    """
    path = Path(path)
    tele = telemetry or read_telemetry(path)
    t, data = canonical_arrays(tele)
    mean_g = float(np.linalg.norm(data[:, :3], axis=1).mean())
    if not 0.5 < mean_g < 2.0:
        log.warning("%s: mean |acc| is %.2f g (expected about 1 g): check the declared ACCL unit %r",
                    path, mean_g, tele.streams["ACCL"].unit)
    name = name or path.stem
    return ImuRecording(name=name, t=t, data=data, subject=subject or name, source=path)


# ---------------------------------------------------------------------------------- sources


def find_gopro_files(src_dir: PathLike) -> List[Path]:
    """Every ``.mp4``/``.MP4`` under ``src_dir`` (recursively), sorted, hidden files skipped.

    Raises:
        UserError: ``src_dir`` is not a directory.
    """
    root = Path(src_dir)
    if not root.is_dir():
        raise UserError(f"--src {root}: no such directory")
    files = [p for p in root.rglob("*") if p.suffix.lower() == ".mp4" and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def session_name(path: Path, root: Path) -> str:
    """Session id: the path under ``root`` without suffix, ``/`` replaced by ``__``."""
    rel = path.relative_to(root).with_suffix("")
    return "__".join(rel.parts)


def _session_names(files: Sequence[Path], root: Path) -> List[str]:
    names = [session_name(p, root) for p in files]
    seen: Dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    # two files that differ only by suffix case (a.mp4, a.MP4) keep their suffix in the name
    return [n + "__" + p.suffix.lstrip(".") if seen[n] > 1 else n for n, p in zip(names, files)]


def _subject(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else path.stem


def _load_session_imu(path: Path, name: str, subject: str, meta: Dict[str, Any]) -> ImuRecording:
    tele = read_telemetry(path)
    meta["camera"] = tele.camera
    meta["gopro"] = tele.meta()
    return load_gopro_imu(path, name=name, subject=subject, telemetry=tele)


def iter_gopro_sessions(src_dir: PathLike) -> Iterator[Any]:
    """One ``SessionSpec`` per GoPro MP4 under ``src_dir`` (recursively), IMU loaded lazily.

    Session name: path under ``src_dir`` without suffix (``a/b.MP4`` -> ``a__b``); subject: the
    first folder under ``src_dir``, or the file stem for files directly in it. Labels come from an
    optional ``src_dir/labels.csv`` (session,start,end,label[,subject]; s on the video clock),
    whose subject column, when given, overrides the folder's. After ``load_imu()``, ``meta`` also
    holds the camera, firmware, measured rates and sample counts.
    ``load_imu()`` returns an :class:`ImuRecording` on the video clock in g and rad/s and raises
    :class:`DataError` for a file without telemetry, truncated telemetry, or not from a GoPro.
    """
    from crossmodal_har.pairs.sources import SessionSpec, read_labels_csv  # ingestion's; lazily

    root = Path(src_dir)
    files = find_gopro_files(root)
    if not files:
        raise UserError(f"--src {root}: no .mp4/.MP4 files (searched recursively)")
    labels, label_subjects = read_labels_csv(root / "labels.csv")
    names = _session_names(files, root)
    for name in sorted(set(labels) - set(names)):
        log.warning("labels.csv names session %r, which has no MP4 under %s", name, root)
    for name, path in sorted(zip(names, files)):
        subject = label_subjects.get(name) or _subject(path, root)
        meta: Dict[str, Any] = {"layout": "gopro", "file": path.relative_to(root).as_posix()}

        load = functools.partial(_load_session_imu, path, name, subject, meta)
        yield SessionSpec(name=name, subject=subject, video_path=path, load_imu=load,
                          labels=list(labels.get(name, [])), meta=meta)
