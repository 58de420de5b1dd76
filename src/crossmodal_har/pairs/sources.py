"""Where paired IMU + video sessions come from: one :class:`~crossmodal_har.pairs.session.SessionSpec`
per video, for each layout (``iter_sessions`` dispatches).

Layouts:

``paired`` (users' own data, the simulator's output)::

    <root>/<session>/video.*        one video file PyAV reads (video.mp4, video.mkv, ...)
    <root>/<session>/imu.csv        time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z  (or imu.parquet, or a
                                    device file imu.cwa / imu.bin / ...: its clock is Unix epoch
                                    seconds, so session.json's imu_offset_s is minus the video's
                                    start in epoch seconds; its "tz" reads an Axivity clock)
    <root>/<session>/session.json   optional, see SESSION_KEYS
    <root>/labels.csv               optional: session,start,end,label[,subject]  (seconds, video clock)

``ego4d``: see :mod:`crossmodal_har.pairs.ego4d`. ``gopro``: see :mod:`crossmodal_har.pairs.gopro`.

A source never raises for one bad session: problems that belong to one session (an unreadable
``session.json``, a missing ``imu.csv``) surface when its ``load_imu()`` is called, as a
:class:`~crossmodal_har.errors.DataError` that ingestion records in the report. Problems with the
whole source (no such directory, a bad row of ``labels.csv``: see
:func:`~crossmodal_har.pairs.session.read_labels_csv`) raise at once, before any session is ingested.

Time convention: ``load_imu()`` returns timestamps on the *video clock*: seconds from the first
presentation time of the video stream (the stream's ``start_time``; 0 for most files).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.io import read_json
from crossmodal_har.pairs.ego4d import iter_ego4d_sessions
from crossmodal_har.pairs.gopro.source import iter_gopro_sessions
from crossmodal_har.pairs.session import Label, SessionSpec, read_labels_csv
from crossmodal_har.signals.clock import zone
from crossmodal_har.signals.devices import device_suffixes
from crossmodal_har.signals.recording import read_recording, units_for
from crossmodal_har.signals.text import finite_number, quote, short_number
from crossmodal_har.signals.types import ImuRecording
from crossmodal_har.signals.units import Units

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
LAYOUTS = ("paired", "ego4d", "gopro")

# session.json keys and their defaults. Other keys are kept in ``meta["session_json"]`` and
# logged (once per session), so files written by other tools still ingest and typos stay visible.
SESSION_KEYS: Dict[str, Any] = {
    "imu_offset_s": 0.0,  # added to the IMU clock to put it on the video clock (s)
    "acc_unit": "g",
    "gyro_unit": "rad/s",
    "time_unit": "s",
    "subject": None,
    "tz": "UTC",  # time zone of a device IMU file's clock when the file has none (Axivity)
    "sensor": None,  # which sensor of an IMU file that holds several (APDM .h5: a label or id)
}
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def iter_sessions(layout: str, src: PathLike, **opts: Any) -> Iterator[SessionSpec]:
    """Yield the sessions of ``src`` in the given layout, sorted by name.

    Options: ``ego4d``: ``ego4d_json``, ``imu_dir``, ``video_dir``, ``imu_offset_s``;
    ``paired``/``gopro``: none. Options set to ``None`` are ignored.
    """
    opts = {k: v for k, v in opts.items() if v is not None}
    if layout == "paired":
        _no_opts(layout, opts)
        yield from iter_paired_sessions(src)
    elif layout == "ego4d":
        yield from iter_ego4d_sessions(src, **opts)
    elif layout == "gopro":
        _no_opts(layout, opts)
        yield from iter_gopro_sessions(Path(src))
    else:
        raise UserError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def _no_opts(layout: str, opts: Dict[str, Any]) -> None:
    if opts:
        raise UserError(f"option(s) {', '.join(sorted(opts))} do not apply to the {layout} layout")


# ------------------------------------------------------------------------------------ paired

def iter_paired_sessions(root: PathLike) -> Iterator[SessionSpec]:
    """Sessions of the paired-folder layout (every sub-directory of ``root`` is a session)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--src {root}: no such directory")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise UserError(f"--src {root}: no session directories (expected <root>/<session>/video.mp4 + imu.csv)")
    # A bad row of labels.csv (overlap, unknown session, ...) refuses the whole run, before any work.
    labels, label_subjects = read_labels_csv(root / "labels.csv", sessions=[d.name for d in dirs])
    for d in dirs:
        yield _paired_session(d, labels.get(d.name, []), label_subjects.get(d.name))


def _find_video(d: Path) -> Path:
    cands = sorted(p for p in d.iterdir() if p.is_file() and p.stem == "video" and p.suffix.lower() in VIDEO_SUFFIXES)
    if not cands:
        cands = sorted(p for p in d.iterdir() if p.is_file() and p.stem == "video")
    return cands[0] if cands else d / "video.mp4"


def _find_imu(d: Path) -> Path:
    for name in ("imu.csv", "imu.parquet", *(f"imu{suf}" for suf in device_suffixes())):
        if (d / name).is_file():
            return d / name
    return d / "imu.csv"


def read_session_json(path: Path) -> Dict[str, Any]:
    """Read and validate a paired session's ``session.json`` (missing file = all defaults)."""
    out = dict(SESSION_KEYS)
    out["extra"] = {}
    if not path.exists():
        return out
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(path, "session.json must be a JSON object")
    for key, value in data.items():
        if key not in SESSION_KEYS:
            out["extra"][key] = value
            continue
        if key == "imu_offset_s":
            if not finite_number(value):
                raise DataError(path, f"imu_offset_s must be a finite number of seconds, got {short_number(value)}")
            value = float(value)
        elif key == "subject":
            if value is not None and not isinstance(value, (str, int)):
                raise DataError(path, f"subject must be a string, got {quote(value)}")
            value = None if value is None else str(value)
        elif key == "sensor":
            if value is not None and not isinstance(value, str):
                raise DataError(path, f"sensor must be a sensor's label or id (a string), got {quote(value)}")
        elif key == "tz":
            if not isinstance(value, str):
                raise DataError(path, f"tz must be a time zone name such as UTC or Europe/London, got {quote(value)}")
            zone(value, path)
        out[key] = value
    Units.from_mapping({k: out[k] for k in ("acc_unit", "gyro_unit", "time_unit")}, path)
    if out["extra"]:
        log.debug("%s: keeping unrecognised key(s) %s as metadata (known: %s)", path,
                 ", ".join(sorted(out["extra"])), ", ".join(SESSION_KEYS))
    return out


def _raise(exc: Exception) -> ImuRecording:
    raise exc


def _load_paired_imu(imu_path: Path, units: Dict[str, str], offset_s: float, name: str,
                     subject: str, tz: str = "UTC", sensor: Optional[str] = None) -> ImuRecording:
    if not imu_path.is_file():
        raise DataError(imu_path, "missing IMU file (expected imu.csv, imu.parquet or a device file "
                                  f"{', '.join('imu' + s for s in device_suffixes())})")
    rec = read_recording(imu_path, units_for(imu_path, Units(**units)), subject=subject, name=name, tz=tz,
                         sensor=sensor)
    if offset_s:
        t = rec.t + offset_s
        # float64 keeps ~16 digits: an offset far larger than the recording's times rounds distinct
        # samples onto one time (2**47 s leaves 0.03 s resolution), which would pass silently as a gap
        if len(t) > 1 and not np.all(np.diff(t) > 0):
            raise DataError(imu_path.parent / "session.json",
                            f"imu_offset_s = {short_number(offset_s)} s is too large for the timestamps' "
                            "precision (samples would share a time); give the offset in seconds between the clocks")
        rec.t = t
    return rec


def _paired_session(d: Path, labels: List[Label], label_subject: Optional[str]) -> SessionSpec:
    name = d.name
    video = _find_video(d)
    imu = _find_imu(d)
    inputs = [video, imu, d / "session.json"]
    try:
        sj = read_session_json(d / "session.json")
    except DataError as exc:
        return SessionSpec(name=name, subject=label_subject or name, video_path=video,
                           load_imu=functools.partial(_raise, exc), labels=labels,
                           meta={"layout": "paired", "dir": str(d)}, inputs=inputs)
    subject = sj["subject"] or label_subject or name
    units = {k: sj[k] for k in ("acc_unit", "gyro_unit", "time_unit")}
    meta = {"layout": "paired", "dir": str(d), "imu_offset_s": sj["imu_offset_s"], "units": units}
    if sj["sensor"] is not None:  # a part of the session's fingerprint (ingest redoes it when it changes)
        meta["sensor"] = sj["sensor"]
    if sj["extra"]:
        meta["session_json"] = sj["extra"]
    load = functools.partial(_load_paired_imu, imu, units, sj["imu_offset_s"], name, subject, sj["tz"], sj["sensor"])
    return SessionSpec(name=name, subject=subject, video_path=video, load_imu=load, labels=labels, meta=meta,
                       inputs=inputs)
