"""Where paired IMU + video sessions come from: one :class:`~crossmodal_har.pairs.session.SessionSpec`
per video, for each layout (``iter_sessions`` dispatches).

Layouts:

``paired`` (users' own data, the simulator's output)::

    <root>/<session>/video.*        one video file PyAV reads (video.mp4, video.mkv, ...)
    <root>/<session>/imu.csv        time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z  (or imu.parquet, or a
                                    device file imu.cwa / imu.bin / ...: its clock is Unix epoch
                                    seconds, so session.json's imu_offset_s is minus the video's
                                    start in epoch seconds; its "tz" reads an Axivity clock)
    <root>/<session>/imu-<site>.csv one IMU per body site instead of imu.csv (the simulator's
                                    ``--mounting head,waist``; .parquet or a device suffix too): ingest
                                    reads the one ``imu_site`` names (``ingest --imu-site waist``)
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
import re
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
PAIRED_OPTIONS = ("imu_site",)  # the paired layout's options (IngestConfig.source)

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
SITE_RE = re.compile(r"[A-Za-z0-9_]+")  # a body site in imu-<site>.csv (head, waist, wrist, ...)
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def iter_sessions(layout: str, src: PathLike, **opts: Any) -> Iterator[SessionSpec]:
    """Yield the sessions of ``src`` in the given layout, sorted by name.

    Options: ``ego4d``: ``ego4d_json``, ``imu_dir``, ``video_dir``, ``imu_offset_s``;
    ``paired``: ``imu_site``; ``gopro``: none. Options set to ``None`` are ignored.
    """
    opts = {k: v for k, v in opts.items() if v is not None}
    if layout == "paired":
        _no_opts(layout, {k: v for k, v in opts.items() if k not in PAIRED_OPTIONS})
        yield from iter_paired_sessions(src, imu_site=opts.get("imu_site"))
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

def iter_paired_sessions(root: PathLike, imu_site: Optional[str] = None) -> Iterator[SessionSpec]:
    """Sessions of the paired-folder layout (every sub-directory of ``root`` is a session).

    ``imu_site`` reads ``imu-<site>.*`` instead of ``imu.*``. Without it, a session that has no
    ``imu.*`` but per-site files is refused at once (which site to read is the user's choice); with
    it, a site that no session has is refused at once (a typo), and a session that lacks it fails
    alone, naming the missing file.
    """
    root = Path(root)
    if imu_site is not None and not SITE_RE.fullmatch(str(imu_site)):
        raise UserError(f"--imu-site must be a body-site name (letters, digits, _), got {imu_site!r}")
    if not root.is_dir():
        raise UserError(f"--src {root}: no such directory")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise UserError(f"--src {root}: no session directories (expected <root>/<session>/video.mp4 + imu.csv)")
    # A bad row of labels.csv (overlap, unknown session, ...) refuses the whole run, before any work.
    labels, label_subjects = read_labels_csv(root / "labels.csv", sessions=[d.name for d in dirs])
    imus = {d: _find_imu(d, imu_site) for d in dirs}
    if imu_site is not None and not any(p.is_file() for p in imus.values()):
        found = sorted({s for d in dirs for s in imu_sites(d)})
        raise UserError(f"--imu-site {imu_site}: no session in {root} has an imu-{imu_site} file (sites found: "
                        f"{', '.join(found) or 'none'})")
    for d in dirs:
        yield _paired_session(d, imus[d], labels.get(d.name, []), label_subjects.get(d.name), imu_site)


def _find_video(d: Path) -> Path:
    cands = sorted(p for p in d.iterdir() if p.is_file() and p.stem == "video" and p.suffix.lower() in VIDEO_SUFFIXES)
    if not cands:
        cands = sorted(p for p in d.iterdir() if p.is_file() and p.stem == "video")
    return cands[0] if cands else d / "video.mp4"


def _imu_suffixes() -> List[str]:
    return [".csv", ".parquet", *device_suffixes()]


def _find_imu(d: Path, site: Optional[str] = None) -> Path:
    """The session's IMU file: ``imu.*``, or ``imu-<site>.*`` for a site (the path of the .csv when none is
    there). Without a site, a session with per-site files only is refused: which one to read is a choice."""
    stem = "imu" if site is None else f"imu-{site}"
    for suf in _imu_suffixes():
        if (d / f"{stem}{suf}").is_file():
            return d / f"{stem}{suf}"
    sites = imu_sites(d) if site is None else []
    if sites:
        raise DataError(d, f"no imu.csv but one IMU file per body site ({', '.join(sites)}): choose one with "
                           "--imu-site SITE")
    return d / f"{stem}.csv"


def imu_sites(d: Path) -> List[str]:
    """The body sites of a session's per-site IMU files (``imu-<site>.csv`` etc.), sorted."""
    suffixes = _imu_suffixes()
    return sorted({p.name[4:-len(suf)] for p in d.iterdir() if p.is_file() and p.name.startswith("imu-")
                   for suf in suffixes if p.name.endswith(suf) and SITE_RE.fullmatch(p.name[4:-len(suf)])})


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
                     subject: str, tz: str = "UTC", sensor: Optional[str] = None,
                     site: Optional[str] = None) -> ImuRecording:
    if not imu_path.is_file():
        stem = "imu" if site is None else f"imu-{site}"
        have = imu_sites(imu_path.parent) if site is not None else []
        raise DataError(imu_path, f"missing IMU file (expected {stem}.csv, {stem}.parquet or a device file "
                                  f"{', '.join(stem + s for s in device_suffixes())})"
                                  + (f"; this session has sites {', '.join(have)}" if have else ""))
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


def _paired_session(d: Path, imu: Path, labels: List[Label], label_subject: Optional[str],
                    site: Optional[str] = None) -> SessionSpec:
    name = d.name
    video = _find_video(d)
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
    if site is not None:
        meta["imu_site"] = site
    if sj["extra"]:
        meta["session_json"] = sj["extra"]
    load = functools.partial(_load_paired_imu, imu, units, sj["imu_offset_s"], name, subject, sj["tz"], sj["sensor"],
                             site)
    return SessionSpec(name=name, subject=subject, video_path=video, load_imu=load, labels=labels, meta=meta,
                       inputs=inputs)
