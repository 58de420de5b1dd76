"""Ingestion: sessions (IMU + video) → IMU windows + frames/embeddings → the window store.

This module runs the whole source: it takes the store's lock, checks the ledger, hands each
session to :func:`crossmodal_har.pairs.process.process_session` (in worker processes when
``workers > 1``) and ends with ``store.json`` and the report (:mod:`crossmodal_har.pairs.report`).
The settings are :class:`crossmodal_har.pairs.ingest_config.IngestConfig`.

Resumability: a ledger (:mod:`crossmodal_har.pairs.ledger`) records the settings
(``STORE/ingest_state.json``) and, per finished session, its summary, shards and a fingerprint of its
inputs (``STORE/ledger/<session>.json``, written atomically after the session's shards; see
:mod:`crossmodal_har.pairs.fingerprint`). A
re-run with the same settings skips the finished sessions whose inputs are unchanged, redoes any
other session from scratch (its ledger entry, then its shards are removed first), removes the
sessions that left the source, and ends with exactly the store a fresh run over the current inputs
makes. Before it changes anything it withdraws ``store.json`` and ``report.json``, which are
written again at the end: a reader never sees a store that lists old and new shards together.
Different settings are refused, naming the keys that differ.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import hashlib
import json
import logging
import multiprocessing as mp
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from crossmodal_har.config import build_config, load_config_file, to_dict
from crossmodal_har.errors import PartialRunError, UserError
from crossmodal_har.io import atomic_write_json
from crossmodal_har.pairs.align import FRAME_POLICY
from crossmodal_har.pairs.fingerprint import compare, fingerprint, tree_files
from crossmodal_har.pairs.ingest_config import IngestConfig
from crossmodal_har.pairs.ledger import (LEDGER, LEDGER_DIR, SessionEntry, check_weights, forget_entry, ledger_file,
                                         new_state, read_ledger, read_state, write_entry)
from crossmodal_har.pairs.process import process_session, remove_session_shards
from crossmodal_har.pairs.report import build_report
from crossmodal_har.pairs.session import SessionSpec
from crossmodal_har.pairs.sources import PAIRED_OPTIONS, iter_sessions
from crossmodal_har.pairs.store import SHARD_FILES, clean_temporaries, prune_shards, shard_path
from crossmodal_har.pairs.store_file import STORE_JSON, withdraw_store_json, write_store_json
from crossmodal_har.pairs.video_encoder import create_video_encoder, encoder_geometry
from crossmodal_har.progress import progress as progress_bar
from crossmodal_har.saved import build_saved
from crossmodal_har.signals.types import PreprocessConfig

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
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


def _worker_run(i: int) -> SessionEntry:
    return _ingest_one(_FORK_SPECS[i], _FORK_ARGS["cfg"], _FORK_ARGS["store_dir"],
                       allow_download=_FORK_ARGS["allow_download"], threads=False)


def _ingest_one(spec: SessionSpec, cfg: IngestConfig, out: Path, *, allow_download: bool,
                threads: bool = True) -> SessionEntry:
    """One session's ledger entry: its summary plus the fingerprint of its inputs, taken *before*
    they are read (an edit made while the session is processed is seen by the next run)."""
    fp = fingerprint(spec)
    summary = process_session(spec, cfg, out, allow_download=allow_download, threads=threads)
    summary["inputs"] = fp
    return build_saved(SessionEntry, summary, ledger_file(out, spec.name))


def _settings(cfg: IngestConfig, src: Path) -> Dict[str, Any]:
    return {"src": os.fspath(src.resolve()), "config": to_dict(cfg)}


def ingest(src: PathLike, out: PathLike, cfg: IngestConfig, *, workers: int = 1, allow_download: bool = False,
           progress: Optional[bool] = None) -> Dict[str, Any]:
    """Ingest every session of ``src`` (layout ``cfg.layout``) into the store ``out``.

    Resumes a previous, interrupted run into the same ``out`` made with the same settings (a
    different setting is a UserError). Returns the report (also written to ``out/report.json``);
    ``report["partial"]`` is True when a session failed.
    """
    if not src:
        raise UserError("--src is required (or --merge STORE ...)")
    src, out = Path(src), Path(out)
    if (out / STORE_JSON).exists() and not (out / LEDGER).exists():
        raise UserError(f"{out} holds a store not made by ingest (merged?); choose a new --out")
    # The source is read (and its labels checked) before anything is written: a bad labels.csv
    # leaves no half-made --out behind.
    specs = list(iter_sessions(cfg.layout, src, **cfg.source))
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"duplicate session names in {src}: {', '.join(dup[:5])}")
    specs = sorted((s for s in specs if in_split(s.name, cfg.num_shards, cfg.shard_index)), key=lambda s: s.name)
    out.mkdir(parents=True, exist_ok=True)
    with _StoreLock(out):
        settings = _settings(cfg, src)
        weights = _local_weights(cfg)
        state = read_state(out)
        if state is not None:
            if state.settings != settings:
                diffs = _diff(state.settings, settings)
                raise UserError(f"{out} was ingested with other settings ({'; '.join(diffs[:8])}"
                                f"{'; ...' if len(diffs) > 8 else ''}); use a new --out, delete it, or re-run "
                                f"with the stored values")
            check_weights(out / LEDGER, state, weights, cfg.video_encoder_weights)
        else:
            new_state(out, settings, weights)

        ledger = {"sessions": read_ledger(out), "settings_key": _settings_key(settings)}
        todo, changed, gone, refreshed = _plan(out, specs, ledger)
        done = len(specs) - len(todo)
        if todo or gone:
            # Nothing may change while a store.json lists the old shards (written again at the end).
            withdraw_store_json(out)
        n_tmp = clean_temporaries(out) + _clean_atomic_leftovers(out)
        if n_tmp:
            log.info("removed %d half-written file(s) or shard(s) from an interrupted run", n_tmp)
        for name in gone:
            log.warning("session %s is no longer in %s: removed from the store", name, src)
            _forget(out, ledger, name)
        for name, why in changed:
            log.warning("session %s changed since it was ingested (%s): re-ingesting it", name, why)
        for s in todo:
            _forget(out, ledger, s.name)  # ledger entry first, then shards: a kill in between redoes it
        for summary in refreshed:
            _record(out, ledger, summary)
        if done:
            log.info("resuming: %d of %d session(s) already ingested and unchanged", done, len(specs))

        _run_sessions(todo, cfg, out, ledger, workers=workers, allow_download=allow_download, progress=progress)
        report = finalize(out, cfg, src, specs, ledger)
    drops = ", ".join(f"{k} {v}" for k, v in report["windows_dropped"].items() if v) or "none"
    log.info("%s: %d windows kept from %d session(s); dropped: %s", out, report["windows_kept"],
             report["sessions_ok"], drops)
    return report


def partial_error(report: Mapping[str, Any], out: PathLike) -> PartialRunError:
    """The one line (exit status 3) for a run in which some sessions failed: how many, and the first error."""
    return PartialRunError(f"{report['sessions_failed']} of {report['sessions_total']} session(s) failed; "
                           f"see {out}/report.json (first: {report['errors'][0]['error']})")


def build_ingest_config(flags: Mapping[str, Any], *, preprocess: Optional[Mapping[str, Any]] = None,
                        preprocess_file: Optional[PathLike] = None, overrides: Iterable[str] = (),
                        allow_download: bool = False) -> IngestConfig:
    """The store's :class:`IngestConfig` from a command's flags (dotted key -> value, None = not given;
    ``config.build_config``'s precedence).

    Args:
        flags: IngestConfig keys. ``source.*``: the ego4d layout's paths and IMU offset apply to
            ``layout: ego4d`` only, ``source.imu_site`` (which ``imu-<site>.csv``) to ``paired`` only. In embeddings mode ``frames`` and ``size`` are the video
            encoder's (a contradicting value is refused); otherwise 10 frames of 64 px unless given.
        preprocess: PreprocessConfig keys (or ``preprocess_file``, a ``--preprocess`` YAML/JSON file), then
            ``overrides`` (``KEY=VALUE``).
        allow_download: the video encoder's weights may be fetched (to read its geometry).
    """
    flags = dict(flags)
    if preprocess_file is not None:
        preprocess = load_config_file(preprocess_file)
    flags["preprocess"] = build_config(PreprocessConfig, preprocess, overrides=overrides, where="preprocess")
    layout = flags.get("layout") or "paired"
    for key in (k.split(".", 1)[1] for k, v in flags.items() if k.startswith("source.") and v is not None):
        wanted = "paired" if key in PAIRED_OPTIONS else "ego4d"
        if layout != wanted:
            raise UserError(f"--{key.replace('_', '-')} applies to --layout {wanted} only")
    if flags.get("video_mode") == "embeddings":
        name = flags.get("video_encoder")
        if not name:
            raise UserError("--video-mode embeddings needs --video-encoder NAME")
        geo = encoder_geometry(name, flags.get("video_encoder_weights"), allow_download)
        for key in ("frames", "size"):
            if flags.get(key) is not None and flags[key] != geo[key]:
                raise UserError(f"--{key} {flags[key]} does not match encoder {name!r} ({geo[key]})")
            flags[key] = geo[key]
    return build_config(IngestConfig, flags=flags, where="ingest")


def _local_weights(cfg: IngestConfig) -> List[Path]:
    """The files of a local ``--video-encoder-weights`` directory (or file); [] for none or a hub id."""
    w = cfg.video_encoder_weights
    if cfg.video_mode != "embeddings" or not w or not Path(w).exists():
        return []
    return tree_files(Path(w))


def _diff(stored: Any, now: Any, key: str = "") -> List[str]:
    """``["config.shard_size: 1 -> 2", ...]``: the settings that differ, by dotted key."""
    if isinstance(stored, dict) and isinstance(now, dict):
        out: List[str] = []
        for k in sorted(set(stored) | set(now), key=str):
            sub = f"{key}.{k}" if key else str(k)
            if k not in stored:
                out.append(f"{sub}: (absent) -> {now[k]!r}")
            elif k not in now:
                out.append(f"{sub}: {stored[k]!r} -> (absent)")
            else:
                out.extend(_diff(stored[k], now[k], sub))
        return out
    if stored == now:
        return []
    return [f"{key or 'settings'}: {stored!r} -> {now!r}"]


def _plan(out: Path, specs: Sequence[SessionSpec], ledger: Dict[str, Any]):
    """Which sessions to (re)do and why, which left the source, which ledger entries to refresh.

    A session is done when its ledger entry says ``ok``, every shard it lists is on disk and its
    inputs match the recorded fingerprint. Failed sessions are always retried (as before).
    """
    current = {s.name for s in specs}
    gone = sorted(n for n in ledger["sessions"] if n not in current)
    todo: List[SessionSpec] = []
    changed: List[tuple] = []
    refreshed: List[SessionEntry] = []
    for s in specs:
        entry = ledger["sessions"].get(s.name)
        if entry is None or entry.status != "ok":
            todo.append(s)
            continue
        inputs = entry.inputs
        if not all((shard_path(out, sh.name) / f).is_file() for sh in entry.shards for f in SHARD_FILES):
            why, new = "shard files missing", None
        elif isinstance(inputs, dict) and "version" in inputs and inputs.get("settings") != ledger["settings_key"]:
            why, new = "it was ingested with other settings", None  # e.g. ingest_state.json was replaced
        else:
            why, new = compare(s, inputs)
        if why is not None:
            changed.append((s.name, why))
            todo.append(s)
        elif new is not None:
            refreshed.append(dataclasses.replace(entry, inputs=new))
    return todo, changed, gone, refreshed


def _clean_atomic_leftovers(out: Path) -> int:
    """Remove the temporary files (``.<name>.json.XXXX.tmp``) of JSON writes a kill interrupted."""
    n = 0
    for d in (out, out / LEDGER_DIR):
        if d.is_dir():
            for p in d.glob(".*.json.*.tmp"):
                if p.is_file():
                    p.unlink(missing_ok=True)
                    n += 1
    return n


def _forget(out: Path, ledger: Dict[str, Any], name: str) -> None:
    """Drop session ``name`` from the store: its ledger entry, then its shards."""
    ledger["sessions"].pop(name, None)
    forget_entry(out, name)
    remove_session_shards(out, name)


def _settings_key(settings: Dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _record(out: Path, ledger: Dict[str, Any], entry: SessionEntry) -> None:
    if isinstance(entry.inputs, dict):  # what the session was ingested with
        entry = dataclasses.replace(entry, inputs={**entry.inputs, "settings": ledger["settings_key"]})
    ledger["sessions"][entry.session] = entry
    write_entry(out, entry)
    if entry.status == "error":
        log.warning("session %s skipped: %s", entry.session, entry.error)


def _run_sessions(todo: Sequence[SessionSpec], cfg: IngestConfig, out: Path, ledger: Dict[str, Any], *,
                  workers: int, allow_download: bool, progress: Optional[bool]) -> None:
    if not todo:
        return
    bar = progress_bar(total=len(todo), desc="ingest", unit="session", enabled=progress)
    try:
        if workers <= 1 or len(todo) == 1:
            for spec in todo:
                _record(out, ledger, _ingest_one(spec, cfg, out, allow_download=allow_download))
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
    shards = [sh for sm in summaries if sm.status == "ok" for sh in sm["shards"]]
    shards.sort(key=lambda s: (s["session"], s["chunk"]))
    classes = sorted({lab for sm in summaries if sm.status == "ok" for lab in sm.labels})
    meta: Dict[str, Any] = {
        "layout": cfg.layout,
        "preprocess": to_dict(cfg.preprocess),
        "video_mode": cfg.video_mode,
        "video_encoder": cfg.video_encoder,
        "video_encoder_weights": cfg.video_encoder_weights,
        # None = one pooled vector per window (stores made before per-frame layouts say nothing)
        "embedding_layout": "frames" if cfg.video_mode == "embeddings" and cfg.embedding_layout == "frames" else None,
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
    stale = prune_shards(out, {sh["name"] for sh in shards})
    if stale:
        log.info("removed %d shard(s) no session of the store lists", len(stale))
    write_store_json(out, meta, shards)
    report = build_report(summaries)
    atomic_write_json(out / REPORT, report)
    return report


def _embed_dim(out: Path, cfg: IngestConfig, shards: Sequence[Dict[str, Any]]) -> Optional[int]:
    """D of the stored embeddings (from the first shard; None in frames mode or an empty store)."""
    if cfg.video_mode != "embeddings" or not shards:
        return None
    return int(np.load(shard_path(out, shards[0]["name"]) / "video.npy", mmap_mode="r").shape[-1])
