"""GoPro telemetry: the MP4's "GoPro MET" track read with PyAV, its GPMF payloads decoded into
the ACCL and GYRO streams, each sample timed on the video clock (by :mod:`.timing`).

Axes: output is GoPro's camera frame (X, Y, Z; Z points out of the top of the camera, so an
upright, still camera reads acc ~ (0, 0, +1 g)). Stored channel order comes from ``ORIN`` when
the stream declares it (lowercase = negated axis), else from ``MTRX``+``ORIO``, else from a
per-model table (HERO5 "ZXY", HERO6/7 "YxZ", Fusion "yXZ", from GoPro's documentation).

Units are kept as declared (SIUN/UNIT, normalised spelling); :mod:`.source` converts them to the
canonical g and rad/s.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import av
import numpy as np

from crossmodal_har.errors import DataError
from crossmodal_har.pairs import gpmf
from crossmodal_har.pairs.gopro.timing import FRAME_LOCKED_KEYS, Chunk, frame_locked_offset, stream_times

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

IMU_KEYS = ("ACCL", "GYRO")

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


def _text(block: gpmf.SensorBlock, key: str) -> Optional[str]:
    t = block.prop_text(key)
    if isinstance(t, list):
        t = "".join(t)
    return t or None


def _norm_unit(u: str) -> str:
    return u.replace("\u00b2", "^2").replace("\u00b0", "deg").replace("\u00b5", "u").replace(" ", "")


def axis_plan(block: gpmf.SensorBlock, camera: str) -> Tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """How to bring a stream's stored channels to camera X, Y, Z: ``(description, function)``.

    From ``ORIN`` when declared, else ``MTRX``+``ORIO``, else :data:`FALLBACK_AXIS_ORDER` for
    ``camera``, else the stored order (description ``"stored"``).
    """
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
    clock_offset = frame_locked_offset(per_payload, pts_all)
    tele = GoProTelemetry(src, camera, device_name, media)
    for key in IMU_KEYS:
        chunks: List[Chunk] = []
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
                    axis_desc, transform = axis_plan(b, camera)
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
            chunks.append(Chunk(pts, p.duration_s, vals, None if tsmp is None else int(tsmp), stmp, float(timo)))
        if not chunks:
            continue
        if unit is None:
            unit = _DEFAULT_UNITS[key]
            log.warning("%s: %s declares no unit; assuming %s (GoPro's documented unit)", src, key, unit)
        t, method = stream_times(key, chunks, clock_offset, src)
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
