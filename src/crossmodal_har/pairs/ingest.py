"""Ingestion: sessions (IMU + video) → IMU windows + frames/embeddings → the window store.

This module runs the whole source: it takes the store's lock, checks the ledger, hands each
session to :func:`crossmodal_har.pairs.process.process_session` (in worker processes when
``workers > 1``) and ends with ``store.json`` and the report (:mod:`crossmodal_har.pairs.report`).
The settings are :class:`crossmodal_har.pairs.ingest_config.IngestConfig`.

Resumability: a ledger records the settings (``STORE/ingest_state.json``) and, per finished
session, its summary and shards (``STORE/ledger/<session>.json``, written atomically after the
session's shards). A re-run with the same settings skips them, redoes
any other session from scratch (its leftover shards are removed first) and ends with exactly the
store an uninterrupted run makes. ``store.json`` and ``report.json`` are written at the end.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import logging
import multiprocessing as mp
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from crossmodal_har.config import to_dict
from crossmodal_har.errors import UserError
from crossmodal_har.io import atomic_write_json, read_json
from crossmodal_har.pairs.align import FRAME_POLICY
from crossmodal_har.pairs.ingest_config import IngestConfig
from crossmodal_har.pairs.process import process_session, remove_session_shards
from crossmodal_har.pairs.report import build_report
from crossmodal_har.pairs.session import SessionSpec, session_key
from crossmodal_har.pairs.sources import iter_sessions
from crossmodal_har.pairs.store import clean_temporaries, shard_path, write_store_json
from crossmodal_har.pairs.video_encoder import create_video_encoder

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
LEDGER = "ingest_state.json"
LEDGER_DIR = "ledger"
REPORT = "report.json"


def in_split(name: str, num_shards: int, shard_index: int) -> bool:
    """Whether session ``name`` belongs to machine ``shard_index`` of ``num_shards`` (hash split)."""
    if num_shards <= 1:
        return True
    h = int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:12], 16)
    return h % num_shards == shard_index


class _StoreLock:
    """An exclusive lock on STORE/.lock so two ingests never write one store."""

    def __init__(self, store_dir: Path, wait_s: float = 60.0):
        self.path = store_dir / ".lock"
        self.wait_s = wait_s
        self.fh = None

    def __enter__(self) -> "_StoreLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.fh.close()
                    raise UserError(f"{self.path.parent}: another ingest is writing this store") from None
                time.sleep(0.2)

    def __exit__(self, *exc: Any) -> None:
        fcntl.flock(self.fh.fileno(), fcntl.LOCK_UN)
        self.fh.close()


_FORK_SPECS: List[SessionSpec] = []
_FORK_ARGS: Dict[str, Any] = {}


def _worker_init() -> None:
    # Die with the parent (Linux), so a killed run leaves no worker writing into the store.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    torch.set_num_threads(1)


def _worker_run(i: int) -> Dict[str, Any]:
    return process_session(_FORK_SPECS[i], _FORK_ARGS["cfg"], _FORK_ARGS["store_dir"],
                           allow_download=_FORK_ARGS["allow_download"], threads=False)


def _settings(cfg: IngestConfig, src: Path) -> Dict[str, Any]:
    return {"src": os.fspath(src.resolve()), "config": to_dict(cfg)}


def ingest(src: PathLike, out: PathLike, cfg: IngestConfig, *, workers: int = 1, allow_download: bool = False,
           progress: Optional[bool] = None) -> Dict[str, Any]:
    """Ingest every session of ``src`` (layout ``cfg.layout``) into the store ``out``.

    Resumes a previous, interrupted run into the same ``out`` made with the same settings (a
    different setting is a UserError). Returns the report (also written to ``out/report.json``);
    ``report["partial"]`` is True when a session failed.
    """
    src, out = Path(src), Path(out)
    if (out / "store.json").exists() and not (out / LEDGER).exists():
        raise UserError(f"{out} holds a store not made by ingest (merged?); choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    with _StoreLock(out):
        settings = _settings(cfg, src)
        ledger_path = out / LEDGER
        if ledger_path.exists():
            state = read_json(ledger_path)
            if state.get("settings") != settings:
                raise UserError(f"{out} was ingested with different settings (or source); use a new --out "
                                f"or delete it. Stored: {state.get('settings')}")
        else:
            atomic_write_json(ledger_path, {"settings": settings})
        ledger = {"sessions": _read_ledger(out)}
        n_tmp = clean_temporaries(out)
        if n_tmp:
            log.info("removed %d half-written shard(s) from an interrupted run", n_tmp)

        specs = list(iter_sessions(cfg.layout, src, **cfg.source))
        names = [s.name for s in specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise UserError(f"duplicate session names in {src}: {', '.join(dup[:5])}")
        specs = sorted((s for s in specs if in_split(s.name, cfg.num_shards, cfg.shard_index)), key=lambda s: s.name)
        done = {n for n, v in ledger["sessions"].items() if v.get("status") == "ok"}
        todo = [s for s in specs if s.name not in done]
        if done:
            log.info("resuming: %d of %d session(s) already ingested", len(done & {s.name for s in specs}), len(specs))
        for s in todo:
            remove_session_shards(out, s.name)

        _run_sessions(todo, cfg, out, ledger, workers=workers, allow_download=allow_download, progress=progress)
        return finalize(out, cfg, src, specs, ledger)


def _ledger_file(out: Path, name: str) -> Path:
    return out / LEDGER_DIR / f"{session_key(name)}.json"


def _read_ledger(out: Path) -> Dict[str, Dict[str, Any]]:
    """Finished sessions' summaries, by session name."""
    d = out / LEDGER_DIR
    found: Dict[str, Dict[str, Any]] = {}
    if d.is_dir():
        for p in sorted(d.glob("*.json")):
            summary = read_json(p)
            found[summary["session"]] = summary
    return found


def _record(out: Path, ledger: Dict[str, Any], summary: Dict[str, Any]) -> None:
    ledger["sessions"][summary["session"]] = summary
    atomic_write_json(_ledger_file(out, summary["session"]), summary)
    if summary["status"] == "error":
        log.warning("session %s skipped: %s", summary["session"], summary["error"])


def _run_sessions(todo: Sequence[SessionSpec], cfg: IngestConfig, out: Path, ledger: Dict[str, Any], *,
                  workers: int, allow_download: bool, progress: Optional[bool]) -> None:
    if not todo:
        return
    bar = tqdm(total=len(todo), desc="ingest", unit="session", disable=None if progress is None else not progress)
    try:
        if workers <= 1 or len(todo) == 1:
            for spec in todo:
                _record(out, ledger, process_session(spec, cfg, out, allow_download=allow_download))
                bar.update(1)
            return
        if cfg.video_mode == "embeddings":  # load once here; forked workers share it
            create_video_encoder(cfg.video_encoder, cfg.video_encoder_weights, allow_download)

        # Fork: specs hold closures (load_imu) that cannot be pickled; children inherit them.
        _FORK_SPECS[:] = list(todo)
        _FORK_ARGS.update(cfg=cfg, store_dir=out, allow_download=allow_download)
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"),
                                     initializer=_worker_init) as pool:
                futures = [pool.submit(_worker_run, i) for i in range(len(todo))]
                for fut in as_completed(futures):
                    _record(out, ledger, fut.result())
                    bar.update(1)
        finally:
            _FORK_SPECS.clear()
            _FORK_ARGS.clear()
    finally:
        bar.close()


def finalize(out: Path, cfg: IngestConfig, src: Path, specs: Sequence[SessionSpec],
             ledger: Dict[str, Any]) -> Dict[str, Any]:
    """Write ``store.json`` and ``report.json`` from the ledger (sessions ordered by name)."""
    summaries = [ledger["sessions"][s.name] for s in specs if s.name in ledger["sessions"]]
    shards = [sh for sm in summaries if sm["status"] == "ok" for sh in sm["shards"]]
    shards.sort(key=lambda s: (s["session"], s["chunk"]))
    classes = sorted({lab for sm in summaries if sm["status"] == "ok" for lab in sm.get("labels", [])})
    meta: Dict[str, Any] = {
        "layout": cfg.layout,
        "preprocess": to_dict(cfg.preprocess),
        "video_mode": cfg.video_mode,
        "video_encoder": cfg.video_encoder,
        "video_encoder_weights": cfg.video_encoder_weights,
        "frames": cfg.frames,
        "frames_per_slot": cfg.frames_per_slot,
        "size": cfg.size,
        "frame_policy": FRAME_POLICY,
        "embed_dim": _embed_dim(out, cfg, shards),
        "channels": ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"],
        "units": {"acc": "g", "gyro": "rad/s", "time": "s"},
        "class_names": classes,
        "split": {"num_shards": cfg.num_shards, "shard_index": cfg.shard_index} if cfg.num_shards > 1 else None,
    }
    write_store_json(out, meta, shards)
    report = build_report(summaries)
    atomic_write_json(out / REPORT, report)
    return report


def _embed_dim(out: Path, cfg: IngestConfig, shards: Sequence[Dict[str, Any]]) -> Optional[int]:
    """D of the stored embeddings (from the first shard; None in frames mode or an empty store)."""
    if cfg.video_mode != "embeddings" or not shards:
        return None
    return int(np.load(shard_path(out, shards[0]["name"]) / "video.npy", mmap_mode="r").shape[1])
