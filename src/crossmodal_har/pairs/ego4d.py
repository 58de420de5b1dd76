"""Ego4D source: videos with head-mounted IMU.

Inputs (every path from the command line; defaults are conventional sub-directories of ``--src``):

* metadata ``ego4d.json`` (``--ego4d-json``): its ``videos`` list; per video ``video_uid``,
  ``has_imu`` and ``video_metadata.video_duration_sec`` are used. Videos without IMU are skipped.
  A ``video_uid`` must be a plain file name (no path separator, no leading dot): a file cannot
  point reads outside ``--imu-dir`` / ``--video-dir``.
* IMU CSVs ``<imu_dir>/<video_uid>.csv`` (``--imu-dir``; default ``SRC/imu`` or ``SRC/v2/imu`` or
  ``SRC/v1/imu``) with columns ``canonical_timestamp_ms``, ``accl_x/y/z`` (m/s^2) and
  ``gyro_x/y/z`` (rad/s); other columns are ignored.
* videos ``<video_dir>/<video_uid>.mp4`` (``--video-dir``; default ``SRC/full_scale``,
  ``SRC/v2/full_scale`` or ``SRC/v1/full_scale``).

Ego4D's IMU timestamps are known to go backwards and repeat. Here they are sorted (stable) and
exact duplicates dropped (first kept); the counts go to ``meta["imu_fixes"]`` and the run report
instead of failing the session. Known 0.5-1 s offsets between IMU and video are not estimated; pass
``--imu-offset-s`` to shift every IMU clock (seconds added to IMU time).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

import numpy as np
import pandas as pd

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.io import read_json
from crossmodal_har.pairs.session import SessionSpec
from crossmodal_har.signals.text import quote
from crossmodal_har.signals.types import ImuRecording
from crossmodal_har.signals.units import Units, to_canonical

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
TIME_COL = "canonical_timestamp_ms"
ACC_COLS = ("accl_x", "accl_y", "accl_z")
GYRO_COLS = ("gyro_x", "gyro_y", "gyro_z")


def _first_dir(root: Path, cands) -> Path:
    for c in cands:
        if (root / c).is_dir():
            return root / c
    return root / cands[0]


def _uid_problem(uid: str) -> str:
    """Why ``uid`` cannot name a file inside the IMU and video directories ('' when it can)."""
    if not uid.strip():
        return "is empty"
    if len(uid) > 200:
        return "is too long"
    if any(c in uid for c in "/\\\x00") or uid in (".", "..") or uid.startswith("."):
        return "is not a plain file name (no path separators, no leading dot)"
    return ""


def iter_ego4d_sessions(src: PathLike, *, ego4d_json: Optional[PathLike] = None, imu_dir: Optional[PathLike] = None,
                        video_dir: Optional[PathLike] = None, imu_offset_s: float = 0.0) -> Iterator[SessionSpec]:
    """One SessionSpec per Ego4D video that has IMU, sorted by ``video_uid``."""
    root = Path(src)
    meta_path = Path(ego4d_json) if ego4d_json else root / "ego4d.json"
    imu_root = Path(imu_dir) if imu_dir else _first_dir(root, ("imu", "v2/imu", "v1/imu"))
    video_root = Path(video_dir) if video_dir else _first_dir(root, ("full_scale", "v2/full_scale", "v1/full_scale"))
    if not meta_path.is_file():
        raise UserError(f"Ego4D metadata {meta_path} not found (pass --ego4d-json)")
    data = read_json(meta_path)
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, list):
        raise DataError(meta_path, "expected an object with a 'videos' list")
    skipped = 0
    seen = set()
    entries = []
    for i, v in enumerate(videos):
        if not isinstance(v, dict) or not isinstance(v.get("video_uid"), str):
            raise DataError(meta_path, f"videos[{i}] has no video_uid string")
        if not v.get("has_imu"):
            skipped += 1
            continue
        uid = v["video_uid"]
        problem = _uid_problem(uid)
        if problem:
            raise DataError(meta_path, f"videos[{i}].video_uid {quote(uid)} {problem}: it names the files "
                                       "<video_uid>.csv in --imu-dir and <video_uid>.mp4 in --video-dir")
        if uid in seen:
            continue
        seen.add(uid)
        entries.append(v)
    if skipped:
        log.info("%s: %d video(s) without IMU skipped", meta_path, skipped)
    if not entries:
        raise UserError(f"{meta_path}: no video with has_imu")
    for v in sorted(entries, key=lambda v: v["video_uid"]):
        uid = v["video_uid"]
        vm = v.get("video_metadata") or {}
        meta: Dict[str, Any] = {"layout": "ego4d", "units": {"acc_unit": "m/s^2", "gyro_unit": "rad/s", "time_unit": "ms"},
                                "declared_duration_s": vm.get("video_duration_sec"), "imu_offset_s": float(imu_offset_s)}
        load = functools.partial(load_ego4d_imu, imu_root / f"{uid}.csv", uid, float(imu_offset_s), meta)
        yield SessionSpec(name=uid, subject=uid, video_path=video_root / f"{uid}.mp4", load_imu=load,
                          labels=[], meta=meta, inputs=[imu_root / f"{uid}.csv", video_root / f"{uid}.mp4"])


def load_ego4d_imu(path: Path, name: str, offset_s: float = 0.0, meta: Optional[Dict[str, Any]] = None) -> ImuRecording:
    """Read one Ego4D IMU CSV → ImuRecording (g, rad/s, s on the video clock), sorted and de-duplicated.

    Records ``{"rows", "non_monotonic_steps", "duplicates_removed", "nan_time_rows"}`` in
    ``meta["imu_fixes"]``.
    """
    if not path.is_file():
        raise DataError(path, "IMU file not found")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(path, f"unreadable CSV: {exc}") from None
    need = (TIME_COL,) + ACC_COLS + GYRO_COLS
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}", line=1)
    try:
        vals = df[list(need)].apply(pd.to_numeric, errors="raise").to_numpy(np.float64)
    except (ValueError, TypeError) as exc:
        raise DataError(path, f"non-numeric value: {exc}") from None
    rows = len(vals)
    nan_t = ~np.isfinite(vals[:, 0])
    vals = vals[~nan_t]
    t_ms = vals[:, 0]
    back = int((np.diff(t_ms) < 0).sum())
    order = np.argsort(t_ms, kind="stable")
    vals = vals[order]
    keep = np.concatenate([[True], np.diff(vals[:, 0]) > 0]) if len(vals) else np.zeros(0, bool)
    dups = int((~keep).sum())
    vals = vals[keep]
    fixes = {"rows": rows, "non_monotonic_steps": back, "duplicates_removed": dups, "nan_time_rows": int(nan_t.sum())}
    if meta is not None:
        meta["imu_fixes"] = fixes
    if back or dups:
        log.info("%s: %d backward timestamp step(s) sorted, %d duplicate(s) removed", path, back, dups)
    if len(vals) < 2:
        raise DataError(path, "fewer than 2 IMU samples with valid timestamps")
    units = Units(acc_unit="m/s^2", gyro_unit="rad/s", time_unit="ms")
    t, data = to_canonical(vals[:, 0], vals[:, 1:4], vals[:, 4:7], units)
    return ImuRecording(name=name, t=t + offset_s, data=data, subject=name, source=path)
