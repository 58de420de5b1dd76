"""Physically consistent egomotion simulator: paired head-camera video and IMU.

A camera with a rigidly attached IMU moves through a procedural 3-D arena. Each session is a
sequence of activity bouts (walk, run, stand, sit_down, sit, stand_up, turn, stairs_up, stairs_down,
fall); one smooth trajectory places the camera for every video frame and gives the IMU its
specific force and angular rate, so the two modalities describe the same motion.

Output is the paired-folder layout read by ``crossmodal-har ingest --layout paired``::

    <out>/<session>/video.mp4  imu.csv  session.json
    <out>/labels.csv           session,start,end,label,subject
    <out>/simulation.json      parameters, seed, per-session bouts and injected faults

Usage::

    from crossmodal_har.simulator import simulate
    summary = simulate("sim", subjects=4, minutes=10, seed=0)
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Dict, List, Union

import numpy as np

from crossmodal_har.config import from_dict, to_dict
from crossmodal_har.errors import UserError
from crossmodal_har.io import atomic_write_json, atomic_write_text
from crossmodal_har.progress import progress as progress_bar
from crossmodal_har.simulator.config import ACTIVITIES, SimConfig
from crossmodal_har.simulator.session import FORMAT_VERSION, MARKER_DIR, RUN_ONLY_KEYS, SessionTask, run_session
from crossmodal_har.simulator.subjects import sample_subject
from crossmodal_har.simulator.writer import labels_csv

log = logging.getLogger(__name__)

__all__ = ["SimConfig", "simulate", "ACTIVITIES"]


def _plan_tasks(cfg: SimConfig, out_dir: Path) -> List[SessionTask]:
    per_subject = cfg.minutes * 60.0 / cfg.subjects
    n_sessions = max(1, int(math.ceil(per_subject / (cfg.session_minutes * 60.0) - 1e-9)))
    dur = per_subject / n_sessions
    total = cfg.subjects * n_sessions
    faulted = set()
    if cfg.has_faults:
        rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 31337]))
        k = max(1, int(round(cfg.fault_fraction * total)))
        faulted = set(int(i) for i in rng.choice(total, size=k, replace=False))
    tasks = []
    for si in range(cfg.subjects):
        subj = sample_subject(si, cfg.seed, cfg.mounting)
        for k in range(n_sessions):
            idx = si * n_sessions + k
            tasks.append(SessionTask(name=f"{subj.name}_s{k + 1:02d}", subject=subj, subject_index=si,
                                     session_index=k, duration_s=round(dur, 3), faulted=idx in faulted,
                                     config=cfg, out_dir=os.fspath(out_dir)))
    return tasks


def _remove_stale_sessions(out: Path, keep: set) -> None:
    """Delete session folders an earlier simulation wrote here that this one will not rewrite
    (e.g. a rerun with fewer subjects), so that ingestion does not pick up leftovers. Only folders
    whose session.json carries the simulator's own block are touched."""
    for d in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if d.name in keep:
            continue
        try:
            meta = json.loads((d / "session.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("simulator"), dict):
            log.warning("removing %s: left by an earlier simulation, not part of this one", d)
            shutil.rmtree(d)
            (out / MARKER_DIR / f"{d.name}.json").unlink(missing_ok=True)


def simulate(out_dir: Union[str, "os.PathLike[str]"], subjects: int = 4, minutes: float = 10.0, seed: int = 0,
             **options: Any) -> Dict[str, Any]:
    """Simulate a paired IMU+video corpus into ``out_dir``.

    Args:
        out_dir: output root (created; existing session folders of the same names are overwritten).
        subjects: number of people; ``minutes`` is the TOTAL across all of them.
        seed: the output is a pure function of the arguments (same seed → identical files).
        **options: any other :class:`SimConfig` field (``size``, ``fps``, ``workers``, fault options...);
            unknown names raise ``ConfigError``.

    Returns:
        The summary that is also written to ``<out_dir>/simulation.json``.
    """
    cfg = from_dict(SimConfig, {"subjects": subjects, "minutes": minutes, "seed": seed, **options},
                    where="simulate")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    tasks = _plan_tasks(cfg, out)
    _remove_stale_sessions(out, {t.name for t in tasks})
    wall0, cpu0 = time.perf_counter(), time.process_time()
    results: Dict[str, Dict] = {}
    bar = progress_bar(total=len(tasks), desc="simulate", unit="session", enabled=cfg.progress)
    if cfg.workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=min(cfg.workers, len(tasks))) as pool:
            futs = {pool.submit(run_session, t, cfg.resume): t.name for t in tasks}
            for fut in as_completed(futs):
                results[futs[fut]] = fut.result()
                bar.update(1)
    else:
        for t in tasks:
            bar.set_postfix_str(t.name)
            results[t.name] = run_session(t, cfg.resume)
            bar.update(1)
    bar.close()
    sessions = [results[t.name] for t in tasks]
    rows = [(s["name"], b["start"], b["end"], b["label"], s["subject"]) for s in sessions for b in s["bouts"]]
    atomic_write_text(out / "labels.csv", labels_csv(rows))
    cpu_s = sum(s["cpu_s"] for s in sessions)
    subjects_info = {}
    for t in tasks:
        subjects_info.setdefault(t.subject.name, t.subject.to_dict())
    summary = {
        "format_version": FORMAT_VERSION,
        "config": to_dict(cfg),
        "seed": cfg.seed,
        "conventions": {
            "world": "z up, gravity (0, 0, -9.80665) m/s^2",
            "camera": "body x forward, y left, z up; ZYX Euler yaw/pitch/roll, positive pitch looks down",
            "sync_offset": "imu.csv time = true video time + sync_offset_s; the correction a user "
                           "declares is imu_offset_s = -sync_offset_s (video time = csv time + imu_offset_s)",
        },
        "subjects": subjects_info,
        "sessions": sessions,
        "totals": {
            "sessions": len(sessions),
            "minutes": sum(s["duration_s"] for s in sessions) / 60.0,
            "frames": sum(s["n_frames"] for s in sessions),
            "imu_samples": sum(s["n_imu_samples"] for s in sessions),
            "session_cpu_s": cpu_s,
        },
    }
    # Timing is informative only and kept out of the deterministic files' content.
    summary_for_file = dict(summary)
    # how the work was run (processes, progress bar) does not change the data
    summary_for_file["config"] = {k: v for k, v in summary["config"].items() if k not in RUN_ONLY_KEYS}
    summary_for_file["sessions"] = [{k: v for k, v in s.items() if k != "cpu_s"} for s in sessions]
    summary_for_file["totals"] = {k: v for k, v in summary["totals"].items() if k != "session_cpu_s"}
    atomic_write_json(out / "simulation.json", summary_for_file)
    wall = time.perf_counter() - wall0
    summary["totals"]["wall_s"] = wall
    # CPU of this process, plus the workers' when sessions ran in other processes
    own = time.process_time() - cpu0
    summary["totals"]["cpu_s"] = own + (cpu_s if cfg.workers > 1 and len(tasks) > 1 else 0.0)
    log.info("simulated %d sessions, %.1f min, in %.1f s wall (%.1f s session CPU)",
             len(sessions), summary["totals"]["minutes"], wall, cpu_s)
    return summary
