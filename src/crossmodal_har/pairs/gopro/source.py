"""The ``gopro`` ingest layout: one session per GoPro MP4, its IMU in canonical units (g, rad/s)
on the video clock (s).

When ACCL and GYRO run at different rates (HERO5: 200 Hz and 400 Hz), the slower one is
linearly interpolated onto the faster one's timestamps (upsampling cannot alias; the signal
layer's anti-aliased resampling to 50 Hz follows), over the interval both cover. Units are
converted from the declared SIUN/UNIT (GoPro writes m/s^2 and rad/s) with the unit table of
:mod:`crossmodal_har.signals.units`.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.pairs.gopro.telemetry import GoProTelemetry, ImuStream, read_telemetry
from crossmodal_har.pairs.session import SessionSpec, read_labels_csv
from crossmodal_har.signals.types import ImuRecording
from crossmodal_har.signals.units import declared_unit_factor, declared_unit_names

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def _factor(key: str, unit: str, source: Optional[Path]) -> float:
    kind = "acc" if key == "ACCL" else "gyro"
    f = declared_unit_factor(kind, unit)
    if f is None:
        raise DataError(source, f"{key} unit {unit!r} not understood (expected one of {declared_unit_names(kind)})")
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


def iter_gopro_sessions(src_dir: PathLike) -> Iterator[SessionSpec]:
    """One ``SessionSpec`` per GoPro MP4 under ``src_dir`` (recursively), IMU loaded lazily.

    Session name: path under ``src_dir`` without suffix (``a/b.MP4`` -> ``a__b``); subject: the
    first folder under ``src_dir``, or the file stem for files directly in it. Labels come from an
    optional ``src_dir/labels.csv`` (session,start,end,label[,subject]; s on the video clock),
    whose subject column, when given, overrides the folder's. After ``load_imu()``, ``meta`` also
    holds the camera, firmware, measured rates and sample counts.
    ``load_imu()`` returns an :class:`ImuRecording` on the video clock in g and rad/s and raises
    :class:`DataError` for a file without telemetry, truncated telemetry, or not from a GoPro.
    """
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
                          labels=list(labels.get(name, [])), meta=meta, inputs=[path])
