"""One simulated session, start to finish: plan → trajectory → video + IMU → files (+ faults)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from crossmodal_har.config import to_dict
from crossmodal_har.io import atomic_write_json, atomic_write_text
from crossmodal_har.simulator.config import SimConfig
from crossmodal_har.simulator.imu import imu_sample_times, synthesize_imu, to_declared_units
from crossmodal_har.simulator.motion import Bout, build_trajectory, plan_bouts
from crossmodal_har.simulator.render import Renderer, make_look, make_scene
from crossmodal_har.simulator.subjects import SubjectParams
from crossmodal_har.simulator.writer import VideoWriter, format_imu_csv, truncate_file

FORMAT_VERSION = 2  # 2: a body (segments, lying); one IMU file per site
RUN_ONLY_KEYS = ("workers", "progress", "resume")  # how a run executes; never changes the files


@dataclass
class SessionTask:
    """What one worker needs to simulate one session (picklable)."""

    name: str
    subject: SubjectParams
    subject_index: int
    session_index: int
    duration_s: float
    faulted: bool
    config: SimConfig
    out_dir: str
    script: Optional[List[Bout]] = None  # fixed bouts instead of random ones (tests, demos)
    look_around: bool = True  # slow random head motion on top of the activities

    def seeds(self) -> List[np.random.SeedSequence]:
        """Independent streams: plan, motion noise, IMU noise, scene, faults, looks — so turning a
        fault on does not change the clean parts of the data."""
        root = np.random.SeedSequence([int(self.config.seed), 104729, self.subject_index, self.session_index])
        return root.spawn(6)

    def fingerprint(self) -> str:
        """Hash of everything that determines this session's files (not how the run is executed)."""
        cfg = {k: v for k, v in to_dict(self.config).items() if k not in RUN_ONLY_KEYS}
        script = None if self.script is None else [(b.label, b.start, b.end, b.params) for b in self.script]
        blob = json.dumps([FORMAT_VERSION, cfg, self.subject.to_dict(), self.name, self.subject_index,
                           self.session_index, self.duration_s, self.faulted, script, self.look_around],
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def marker(self) -> Path:
        """Written last: its presence (with a matching fingerprint) means the session is complete."""
        return Path(self.out_dir) / MARKER_DIR / f"{self.name}.json"


MARKER_DIR = ".simulator"


def imu_files(subject: SubjectParams) -> Dict[str, str]:
    """File name of each site's IMU: ``imu.csv`` for one site, ``imu-<site>.csv`` for several."""
    sites = subject.sites()
    return {sites[0]: "imu.csv"} if len(sites) == 1 else {site: f"imu-{site}.csv" for site in sites}


def completed_summary(task: SessionTask) -> Optional[Dict]:
    """The stored summary of an already finished identical session, or None."""
    try:
        done = json.loads(task.marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    d = Path(task.out_dir) / task.name
    files_ok = all((d / f).is_file() for f in ("video.mp4", "session.json", *imu_files(task.subject).values()))
    if not files_ok or not isinstance(done, dict) or done.get("fingerprint") != task.fingerprint():
        return None
    summary = done.get("summary")
    return dict(summary, cpu_s=0.0) if isinstance(summary, dict) else None


def shared_look(seed: int, index: int):
    """Look ``index`` of the pool shared by every session of a corpus (a function of the seed)."""
    return make_look(np.random.default_rng(np.random.SeedSequence([int(seed), 271828, int(index)])))


def plan_looks(rng: np.random.Generator, bouts: List[Bout], cfg: SimConfig) -> List[Tuple[float, int]]:
    """(start s, look index) pairs: a new look from the shared pool at the first bout boundary after
    each 0.5–1.5 × ``look_every_s``; index -1 means the session's own look (``looks == 0``)."""
    if cfg.looks == 0:
        return [(0.0, -1)]
    out = [(0.0, int(rng.integers(cfg.looks)))]
    next_change = float(rng.uniform(0.5, 1.5)) * cfg.look_every_s
    for b in bouts[1:]:
        if b.start >= next_change:
            choices = [k for k in range(cfg.looks) if k != out[-1][1]] or [out[-1][1]]
            out.append((float(b.start), int(choices[int(rng.integers(len(choices)))])))
            next_change = b.start + float(rng.uniform(0.5, 1.5)) * cfg.look_every_s
    return out


def _choose_dropouts(rng: np.random.Generator, duration_s: float, n: int, length: float) -> List[List[float]]:
    """Non-overlapping stretches [start, end) (s) inside the session, at least 1 s from its ends."""
    spans: List[List[float]] = []
    lo, hi = 1.0, duration_s - 1.0 - length
    if n == 0 or hi <= lo:
        return spans
    for _ in range(50 * n):
        if len(spans) == n:
            break
        s = float(rng.uniform(lo, hi))
        if all(s + length + 0.5 < a or s > b + 0.5 for a, b in spans):
            spans.append([s, s + length])
    return sorted(spans)


def run_session(task: SessionTask, resume: bool = True) -> Dict:
    """Simulate ``task`` and write ``<out_dir>/<name>/{video.mp4, imu.csv, session.json}``.

    With ``resume``, a session already completed by an identical earlier run (same fingerprint) is
    not redone: the output is deterministic, so reusing it is exact.

    Returns the session's summary (bouts, faults, counts) for ``simulation.json`` and ``labels.csv``.
    """
    if resume:
        done = completed_summary(task)
        if done is not None:
            return done
    task.marker.unlink(missing_ok=True)
    t_start = time.process_time()
    cfg = task.config
    subj = task.subject
    s_plan, s_motion, s_imu, s_scene, s_fault, s_look = (np.random.default_rng(s) for s in task.seeds())
    session_dir = Path(task.out_dir) / task.name
    session_dir.mkdir(parents=True, exist_ok=True)
    for stale in session_dir.glob(".*.tmp"):  # left by an interrupted run
        stale.unlink(missing_ok=True)

    scene = make_scene(s_scene)
    bouts = task.script if task.script is not None else plan_bouts(s_plan, task.duration_s, subj)
    traj = build_trajectory(bouts, subj, s_motion, fine_hz=cfg.fine_hz, arena=scene,
                            start_yaw=float(s_motion.uniform(-np.pi, np.pi)), look_around=task.look_around)

    # --- faults (decided up front, from their own stream) ---
    faults: Dict = {"sync_offset_s": 0.0, "dropouts_s": [], "corrupt_frames": [], "corrupt_mode": "none",
                    "truncated_bytes": None}
    n_frames = max(1, int(round(task.duration_s * cfg.fps)))
    if task.faulted:
        faults["sync_offset_s"] = float(cfg.sync_offset_s)
        faults["dropouts_s"] = _choose_dropouts(s_fault, task.duration_s, cfg.dropouts, cfg.dropout_s)
        if cfg.corrupt_video in ("zero", "noise"):
            k = min(cfg.corrupt_frames, n_frames)
            faults["corrupt_frames"] = sorted(int(i) for i in s_fault.choice(n_frames, size=k, replace=False))
        faults["corrupt_mode"] = cfg.corrupt_video

    # --- video ---
    looks = plan_looks(s_look, bouts, cfg)
    frame_t = np.arange(n_frames) / cfg.fps
    pos, R = traj.pose_at(frame_t)
    bad = set(faults["corrupt_frames"])
    writer = VideoWriter(session_dir / "video.mp4", cfg.size, cfg.fps, crf=cfg.crf)
    renderers: Dict[int, Renderer] = {}
    try:
        for i in range(n_frames):
            k = looks[int(np.searchsorted([a for a, _ in looks], frame_t[i], side="right")) - 1][1]
            if k not in renderers:
                painted = scene if k < 0 else scene.with_look(shared_look(cfg.seed, k))
                renderers[k] = Renderer(painted, size=cfg.size, hfov_deg=cfg.hfov_deg)
            img = renderers[k].render(pos[i], R[i])
            if i in bad:
                if faults["corrupt_mode"] == "zero":
                    img = np.zeros_like(img)
                else:
                    img = s_fault.integers(0, 256, img.shape, dtype=np.uint8)
            writer.write(img)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    if task.faulted and cfg.corrupt_video == "truncate":
        faults["truncated_bytes"] = truncate_file(session_dir / "video.mp4", float(s_fault.uniform(0.4, 0.8)))

    # --- IMU: one file per site, every site read from the same body at the same instants ---
    all_times = imu_sample_times(s_imu, task.duration_s, subj.imu_rate_hz)
    keep = np.ones(len(all_times), dtype=bool)
    for a, b in faults["dropouts_s"]:
        keep &= ~((all_times >= a) & (all_times < b))
    for site, fname in imu_files(subj).items():
        data = synthesize_imu(traj, subj, all_times, s_imu, site=site)
        times, data = all_times[keep], data[keep]
        written_t = times + faults["sync_offset_s"]
        vals, tcol = to_declared_units(data, written_t, subj.acc_unit, subj.gyro_unit, subj.time_unit)
        atomic_write_text(session_dir / fname, format_imu_csv(tcol, vals, subj.time_unit))

    declared_offset = -faults["sync_offset_s"] if cfg.declare_offset else 0.0
    atomic_write_json(session_dir / "session.json", {
        "imu_offset_s": declared_offset,
        "acc_unit": subj.acc_unit,
        "gyro_unit": subj.gyro_unit,
        "time_unit": subj.time_unit,
        "subject": subj.name,
        "mounting": subj.mounting,
        **({"sites": list(subj.sites())} if len(subj.sites()) > 1 else {}),
        "imu_rate_hz": subj.imu_rate_hz,
        "fps": cfg.fps,
        "simulator": {"format_version": FORMAT_VERSION, "seed": cfg.seed, "subject_index": task.subject_index,
                      "session_index": task.session_index},
    })
    summary = {
        "name": task.name,
        "subject": subj.name,
        "duration_s": task.duration_s,
        "n_frames": n_frames,
        "imu_rate_hz": subj.imu_rate_hz,
        "n_imu_samples": int(len(times)),
        "scene": scene.to_dict(),
        "looks": [[round(a, 3), k] for a, k in looks],
        "bouts": [{"label": b.label, "start": round(b.start, 3), "end": round(b.end, 3), "params": b.params}
                  for b in bouts],
        "faults": faults,
    }
    atomic_write_json(task.marker, {"fingerprint": task.fingerprint(), "summary": summary})
    return dict(summary, cpu_s=time.process_time() - t_start)
