"""Where paired IMU + video sessions come from: one :class:`SessionSpec` per video.

Layouts:

``paired`` (users' own data, the simulator's output)::

    <root>/<session>/video.*        one video file PyAV reads (video.mp4, video.mkv, ...)
    <root>/<session>/imu.csv        time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z  (or imu.parquet)
    <root>/<session>/session.json   optional, see SESSION_KEYS
    <root>/labels.csv               optional: session,start,end,label[,subject]  (seconds, video clock)

``ego4d``: see :mod:`crossmodal_har.pairs.ego4d`. ``gopro``: see :mod:`crossmodal_har.pairs.gopro`.

A source never raises for one bad session: problems that belong to one session (an unreadable
``session.json``, a missing ``imu.csv``) surface when its ``load_imu()`` is called, as a
:class:`~crossmodal_har.errors.DataError` that ingestion records in the report. Problems with the
whole source (no such directory, a malformed ``labels.csv``) raise at once.

Time convention: ``load_imu()`` returns timestamps on the *video clock*: seconds from the first
presentation time of the video stream (the stream's ``start_time``; 0 for most files).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals.types import ImuRecording

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
LAYOUTS = ("paired", "ego4d", "gopro")
Label = Tuple[float, float, str]

# session.json keys and their defaults. Other keys are kept in ``meta["session_json"]`` and
# logged (once per session), so files written by other tools still ingest and typos stay visible.
SESSION_KEYS: Dict[str, Any] = {
    "imu_offset_s": 0.0,  # added to the IMU clock to put it on the video clock (s)
    "acc_unit": "g",
    "gyro_unit": "rad/s",
    "time_unit": "s",
    "subject": None,
}
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


@dataclass
class SessionSpec:
    """One paired session: a video and the IMU recorded with it.

    Attributes:
        name: unique session id within the source (shard names and the manifest use it).
        subject: person id (for subject-wise splits).
        video_path: the video file.
        load_imu: returns the IMU as an ImuRecording in canonical units (g, rad/s) with ``t`` in
            seconds on the video clock; raises DataError for bad data. Sources may record repairs
            they made (e.g. sorted/deduplicated timestamps) in ``meta["imu_fixes"]`` while loading.
        labels: ``(start_s, end_s, label)`` on the video clock; may be empty.
        meta: free-form, JSON-serialisable details for the report.
    """

    name: str
    subject: str
    video_path: Path
    load_imu: Callable[[], ImuRecording]
    labels: List[Label] = field(default_factory=list)
    meta: Dict[str, Any] = field(default_factory=dict)


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
        from crossmodal_har.pairs.ego4d import iter_ego4d_sessions

        yield from iter_ego4d_sessions(src, **opts)
    elif layout == "gopro":
        _no_opts(layout, opts)
        try:
            from crossmodal_har.pairs.gopro import iter_gopro_sessions
        except ImportError as exc:  # pragma: no cover - depends on the gopro module being present
            raise UserError(f"the gopro layout is not available: {exc}") from None
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
    labels, label_subjects = read_labels_csv(root / "labels.csv")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise UserError(f"--src {root}: no session directories (expected <root>/<session>/video.mp4 + imu.csv)")
    names = {d.name for d in dirs}
    for name in sorted(set(labels) - names):
        log.warning("labels.csv names session %r, which has no directory under %s", name, root)
    for d in dirs:
        yield _paired_session(d, labels.get(d.name, []), label_subjects.get(d.name))


def _find_video(d: Path) -> Path:
    cands = sorted(p for p in d.iterdir() if p.is_file() and p.stem == "video" and p.suffix.lower() in VIDEO_SUFFIXES)
    if not cands:
        cands = sorted(p for p in d.iterdir() if p.is_file() and p.stem == "video")
    return cands[0] if cands else d / "video.mp4"


def _find_imu(d: Path) -> Path:
    for name in ("imu.csv", "imu.parquet"):
        if (d / name).is_file():
            return d / name
    return d / "imu.csv"


def read_session_json(path: Path) -> Dict[str, Any]:
    """Read and validate a paired session's ``session.json`` (missing file = all defaults)."""
    from crossmodal_har.io import read_json

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
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise DataError(path, f"imu_offset_s must be a number of seconds, got {value!r}")
            value = float(value)
        elif key == "subject":
            if value is not None and not isinstance(value, (str, int)):
                raise DataError(path, f"subject must be a string, got {value!r}")
            value = None if value is None else str(value)
        out[key] = value
    from crossmodal_har.signals.units import Units

    Units.from_mapping({k: out[k] for k in ("acc_unit", "gyro_unit", "time_unit")}, path)
    if out["extra"]:
        log.debug("%s: keeping unrecognised key(s) %s as metadata (known: %s)", path,
                 ", ".join(sorted(out["extra"])), ", ".join(SESSION_KEYS))
    return out


def _raise(exc: Exception) -> ImuRecording:
    raise exc


def _load_paired_imu(imu_path: Path, units: Dict[str, str], offset_s: float, name: str,
                     subject: str) -> ImuRecording:
    from crossmodal_har.signals.readers import read_imu_table
    from crossmodal_har.signals.units import Units

    if not imu_path.is_file():
        raise DataError(imu_path, "missing IMU file (expected imu.csv or imu.parquet)")
    rec = read_imu_table(imu_path, Units(**units), subject=subject, name=name)
    if offset_s:
        rec.t = rec.t + offset_s
    return rec


def _paired_session(d: Path, labels: List[Label], label_subject: Optional[str]) -> SessionSpec:
    name = d.name
    video = _find_video(d)
    imu = _find_imu(d)
    try:
        sj = read_session_json(d / "session.json")
    except DataError as exc:
        return SessionSpec(name=name, subject=label_subject or name, video_path=video,
                           load_imu=functools.partial(_raise, exc), labels=labels,
                           meta={"layout": "paired", "dir": str(d)})
    subject = sj["subject"] or label_subject or name
    units = {k: sj[k] for k in ("acc_unit", "gyro_unit", "time_unit")}
    meta = {"layout": "paired", "dir": str(d), "imu_offset_s": sj["imu_offset_s"], "units": units}
    if sj["extra"]:
        meta["session_json"] = sj["extra"]
    load = functools.partial(_load_paired_imu, imu, units, sj["imu_offset_s"], name, subject)
    return SessionSpec(name=name, subject=subject, video_path=video, load_imu=load, labels=labels, meta=meta)


def read_labels_csv(path: Path) -> Tuple[Dict[str, List[Label]], Dict[str, str]]:
    """Read ``labels.csv`` (session,start,end,label[,subject]; seconds on the video clock).

    Returns ``({session: [(start, end, label), ...]}, {session: subject})``. A missing file gives
    empty dicts; a malformed one is a DataError naming the line.
    """
    import csv

    labels: Dict[str, List[Label]] = {}
    subjects: Dict[str, str] = {}
    if not path.exists():
        return labels, subjects
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return labels, subjects
        header = [h.strip().lower() for h in header]
        need = ["session", "start", "end", "label"]
        if header[:4] != need or len(header) > 5 or (len(header) == 5 and header[4] != "subject"):
            raise DataError(path, f"header must be session,start,end,label[,subject], got {','.join(header)}", line=1)
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataError(path, f"expected {len(header)} fields, got {len(row)}", line=lineno)
            sess, a, b, lab = (c.strip() for c in row[:4])
            try:
                start, end = float(a), float(b)
            except ValueError:
                raise DataError(path, f"start/end must be numbers (seconds), got {a!r}, {b!r}", line=lineno) from None
            if not (np.isfinite(start) and np.isfinite(end)) or end <= start:
                raise DataError(path, f"segment end must be after start, got {start}..{end}", line=lineno)
            if not lab:
                raise DataError(path, "empty label", line=lineno)
            labels.setdefault(sess, []).append((start, end, lab))
            if len(row) == 5 and row[4].strip():
                subj = row[4].strip()
                if subjects.setdefault(sess, subj) != subj:
                    raise DataError(path, f"session {sess!r} has two subjects ({subjects[sess]!r}, {subj!r})", line=lineno)
    for segs in labels.values():
        segs.sort()
    return labels, subjects


def safe_name(name: str) -> str:
    """A file-system-safe version of a session name (for shard directory names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "session"
