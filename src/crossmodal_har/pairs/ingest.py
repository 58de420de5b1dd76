"""Ingestion: sessions (IMU + video) → IMU windows + frames/embeddings → the window store.

Per session (in a worker process when ``workers > 1``):

1. ``load_imu()`` → recording on the video clock; gravity check of the declared units.
2. IMU windows through the signal layer (:func:`crossmodal_har.signals.windows.recording_windows`:
   resample, median filter, window, quality). Windows with a quality reason are dropped.
3. The video is probed; windows not wholly inside the video are dropped (``desync``); a session
   whose IMU and video barely overlap is an error.
4. The video is decoded once; for each window, K frames (J per slot) nearest to the slot times.
   Windows whose frames are missing are dropped (``decode_error``; ``desync`` past the video end).
5. Windows are written in chunks of ``shard_size`` as atomic shards; in embeddings mode the frames
   go through a frozen video encoder first and only the float16 embeddings are stored.

Resumability: a ledger records the settings (``STORE/ingest_state.json``) and, per finished
session, its summary and shards (``STORE/ledger/<session>.json``, written atomically after the
session's shards). A re-run with the same settings skips them, redoes
any other session from scratch (its leftover shards are removed first) and ends with exactly the
store an uninterrupted run makes. ``store.json`` and ``report.json`` are written at the end.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.io import atomic_write_json, read_json
from crossmodal_har.signals.types import PreprocessConfig

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
LEDGER = "ingest_state.json"
LEDGER_DIR = "ledger"
REPORT = "report.json"
DROP_REASONS = ("imu_gap", "non_finite", "flat_line", "saturation", "desync", "decode_error", "too_short")
_QUALITY_MAP = {"gap": "imu_gap", "non_finite": "non_finite", "flat_line": "flat_line", "saturation": "saturation"}


@dataclass
class IngestConfig:
    """Everything that decides the content of a store (saved in the ledger and ``store.json``).

    Attributes:
        layout: ``paired`` | ``ego4d`` | ``gopro``.
        video_mode: ``frames`` (uint8 frames stored), ``embeddings`` (float16 vectors from a
            frozen ``video_encoder``) or ``none`` (IMU windows only; videos are not read).
        video_encoder: registry name of the video encoder (embeddings mode).
        video_encoder_weights: local directory or hub id of pretrained weights (embeddings mode).
        frames: K frames per window (slots).
        frames_per_slot: J frames stored per slot (J > 1 lets training jitter; frames mode only).
        size: frame side in pixels after resize + centre crop.
        shard_size: most windows per shard (a session longer than this gets several shards);
            0 = automatic (about 256 MiB of frames per shard, see :func:`effective_shard_size`).
        num_shards, shard_index: this machine's share of the sessions (split by a hash of the name).
        min_imu_coverage: a session whose IMU overlaps less than this fraction of its video is an error.
        source: layout options (ego4d paths, IMU offset), as given.
        preprocess: the IMU preprocessing (signal layer).
    """

    layout: Literal["paired", "ego4d", "gopro"] = "paired"
    video_mode: Literal["frames", "embeddings", "none"] = "frames"
    video_encoder: Optional[str] = None
    video_encoder_weights: Optional[str] = None
    frames: int = 10
    frames_per_slot: int = 1
    size: int = 64
    shard_size: int = 0
    num_shards: int = 1
    shard_index: int = 0
    min_imu_coverage: float = 0.5
    source: Dict[str, Any] = field(default_factory=dict)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def validate(self) -> None:
        from crossmodal_har.errors import ConfigError

        if self.frames < 1 or self.frames_per_slot < 1 or self.size < 8:
            raise ConfigError("frames and frames_per_slot must be >= 1 and size >= 8")
        if self.video_mode == "embeddings":
            if not self.video_encoder:
                raise ConfigError("--video-mode embeddings needs --video-encoder NAME")
            if self.frames_per_slot != 1:
                raise ConfigError("--frames-per-slot applies to --video-mode frames only")
        elif self.video_encoder or self.video_encoder_weights:
            raise ConfigError("--video-encoder applies to --video-mode embeddings only")
        if self.shard_size < 0:
            raise ConfigError("--shard-size must be >= 1 (or 0 = automatic)")
        if not (self.num_shards >= 1 and 0 <= self.shard_index < self.num_shards):
            raise ConfigError(f"--shard-index must be in [0, {self.num_shards}), got {self.shard_index}")
        if not 0.0 <= self.min_imu_coverage <= 1.0:
            raise ConfigError("min_imu_coverage must be in [0, 1]")


# ------------------------------------------------------------------------------------ helpers

def session_key(name: str) -> str:
    """Stable, file-system-safe prefix of a session's shard names."""
    from crossmodal_har.pairs.sources import safe_name

    return f"{safe_name(name)[:60]}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"


def in_split(name: str, num_shards: int, shard_index: int) -> bool:
    """Whether session ``name`` belongs to machine ``shard_index`` of ``num_shards`` (hash split)."""
    if num_shards <= 1:
        return True
    h = int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:12], 16)
    return h % num_shards == shard_index


def _empty_drops() -> Dict[str, int]:
    return {r: 0 for r in DROP_REASONS}


SHARD_BYTES = 256 * 2 ** 20


def effective_shard_size(cfg: IngestConfig) -> int:
    """Windows per shard: ``cfg.shard_size``, or when 0, as many as fit in ~256 MiB (a shard's
    frames are held in memory until it is written), between 16 and 4096."""
    if cfg.shard_size:
        return cfg.shard_size
    per_window = cfg.preprocess.window_samples * 6 * 4
    if cfg.video_mode == "frames":
        per_window += cfg.frames * cfg.frames_per_slot * cfg.size * cfg.size * 3
    return int(min(4096, max(16, SHARD_BYTES // per_window)))


# Created once per process (worker), reused for every session.
_ENCODER_CACHE: Dict[Tuple[str, Optional[str], bool], Any] = {}


def create_video_encoder(name: str, weights: Optional[str] = None, allow_download: bool = False):
    """A frozen video encoder from the model registry, in eval mode, gradients off."""
    key = (name, weights, allow_download)
    if key not in _ENCODER_CACHE:
        import torch

        from crossmodal_har.models.registry import create_model

        if weights is None:
            log.warning("video encoder %r has no pretrained weights (--video-encoder-weights): its embeddings "
                        "are random features, useful for tests only", name)
        # Seeded so that randomly initialised parts are the same in every process and every resumed
        # run (a resumed store must equal an uninterrupted one).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_model(name, pretrained=weights, allow_download=allow_download)
        if getattr(model, "kind", "video") != "video":
            raise UserError(f"--video-encoder {name!r} is not a video encoder (kind {model.kind!r})")
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        _ENCODER_CACHE[key] = model
    return _ENCODER_CACHE[key]


def encoder_geometry(name: str, weights: Optional[str] = None, allow_download: bool = False) -> Dict[str, int]:
    """``{"frames": K, "size": H, "embed_dim": D}`` of a registry video encoder."""
    enc = create_video_encoder(name, weights, allow_download)
    return {"frames": int(enc.num_frames), "size": int(enc.input_size), "embed_dim": int(enc.embed_dim)}


def embed_frames(encoder, frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """[n, K, H, W, 3] uint8 → [n, D] float16 with a frozen encoder."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(frames), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[i:i + batch_size]))
            out.append(encoder(x).float().cpu().numpy().astype(np.float16))
    if not out:
        return np.zeros((0, int(encoder.embed_dim)), np.float16)
    return np.concatenate(out)


# ------------------------------------------------------------------------------ one session

class _SessionFailed(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def process_session(spec, cfg: IngestConfig, store_dir: PathLike, *, allow_download: bool = False,
                    threads: bool = True) -> Dict[str, Any]:
    """Ingest one session into shards of ``store_dir``. Never raises for bad data.

    Returns a JSON-serialisable summary: ``session``, ``subject``, ``status`` (``ok`` | ``error``),
    ``error``, ``error_reason``, ``windows_kept``, ``dropped`` {reason: n}, ``shards`` [{"name",
    "n", "session", "chunk"}], ``labels`` (distinct labels kept), ``gravity``, ``video``, ``meta``.
    """
    t0 = time.perf_counter()
    summary: Dict[str, Any] = {"session": spec.name, "subject": spec.subject, "status": "ok", "error": None,
                               "error_reason": None, "windows_kept": 0, "dropped": _empty_drops(), "shards": [],
                               "labels": [], "gravity": None, "video": None, "meta": spec.meta}
    try:
        _process(spec, cfg, Path(store_dir), summary, allow_download=allow_download, threads=threads)
    except _SessionFailed as exc:
        summary.update(status="error", error=exc.message, error_reason=exc.reason)
    except DataError as exc:
        summary.update(status="error", error=str(exc), error_reason="data_error")
    except (OSError, ValueError, RuntimeError, EOFError, _ffmpeg_error()) as exc:  # unreadable file, codec...
        log.debug("session %s failed", spec.name, exc_info=True)
        summary.update(status="error", error=f"{type(exc).__name__}: {exc}", error_reason="data_error")
    if summary["status"] == "error":
        # Shards already written for a session that failed later are removed: it contributes nothing.
        _remove_session_shards(Path(store_dir), spec.name)
        summary["shards"] = []
        summary["windows_kept"] = 0
    summary["meta"] = _jsonable(spec.meta)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


def _ffmpeg_error() -> type:
    import av

    return av.error.FFmpegError


def _jsonable(obj: Any) -> Any:
    import json

    from crossmodal_har.io import _json_default

    try:
        return json.loads(json.dumps(obj, default=_json_default))
    except (TypeError, ValueError):
        return {k: str(v) for k, v in dict(obj).items()}


def _process(spec, cfg: IngestConfig, store_dir: Path, summary: Dict[str, Any], *, allow_download: bool,
             threads: bool) -> None:
    import pandas as pd

    from crossmodal_har.pairs.align import (expected_windows, frame_targets, frame_tolerance_s, gravity_check,
                                            overlap_s, split_chunks, window_labels)
    from crossmodal_har.pairs.store import ShardData, write_shard
    from crossmodal_har.pairs.video import DecodeStats, iter_nearest_frames, probe_video
    from crossmodal_har.signals.windows import recording_windows

    pre = cfg.preprocess
    drops = summary["dropped"]
    window_s = pre.window_samples / pre.rate_hz

    # 1. IMU
    rec = spec.load_imu()
    if len(rec.t) < 2:
        raise DataError(getattr(rec, "source", None), "IMU recording has fewer than 2 samples")
    declared = (spec.meta.get("units") or {}).get("acc_unit") if isinstance(spec.meta, dict) else None
    grav = gravity_check(rec, declared)
    summary["gravity"] = grav
    if grav["verdict"] == "suspect":
        log.warning("session %s: %s", spec.name, grav["message"])

    # 2. IMU windows (signal layer)
    x, start_s, end_s, reasons = recording_windows(rec, pre)
    imu_t0, imu_t1 = float(rec.t[0]), float(rec.t[-1])
    n_gap = max(0, expected_windows(imu_t1 - imu_t0, pre) - len(x))
    drops["imu_gap"] += n_gap
    for r in np.unique(reasons[reasons != ""]) if len(reasons) else []:
        drops[_QUALITY_MAP.get(r, r)] = drops.get(_QUALITY_MAP.get(r, r), 0) + int((reasons == r).sum())
    ok = reasons == "" if len(reasons) else np.zeros(0, bool)
    x, start_s, end_s = x[ok], start_s[ok], end_s[ok]

    if cfg.video_mode == "none":  # IMU-only store (e.g. for IMU pretraining baselines, benchmarks)
        _write_imu_only(spec, cfg, store_dir, summary, x, start_s, end_s, grav)
        return

    # 3. Video span
    try:
        info = probe_video(spec.video_path)
    except DataError as exc:
        drops["decode_error"] += len(x)
        raise _SessionFailed("decode_error", str(exc)) from None
    summary["video"] = {"duration_s": info.duration_s, "fps": info.fps, "width": info.width, "height": info.height}
    k, j = cfg.frames, cfg.frames_per_slot
    tol = frame_tolerance_s(window_s, k)
    if info.duration_s is not None:
        dur = info.duration_s
        ov = overlap_s(imu_t0, imu_t1, 0.0, dur)
        summary["imu_coverage"] = round(ov / dur, 4) if dur > 0 else 0.0
        if dur < window_s:  # nothing to pair, not an error
            drops["too_short"] += 1
            summary["too_short"] = True
            log.info("session %s: video (%.3g s) shorter than one %.3g s window", spec.name, dur, window_s)
            return
        if ov < window_s or (dur > 0 and ov / dur < cfg.min_imu_coverage):
            drops["desync"] += len(x)
            raise _SessionFailed(
                "desync", f"{spec.name}: IMU [{imu_t0:.3f}, {imu_t1:.3f}] s covers {ov:.3f} s of the video's "
                f"[0, {dur:.3f}] s ({ov / dur if dur else 0:.0%}; need >= {cfg.min_imu_coverage:.0%} and one "
                f"{window_s:g} s window): IMU shorter than the video, not overlapping it, or a wrong imu_offset_s")
        # The container's duration is approximate (last frame's length); frames within the frame
        # tolerance of the window edges are good enough, as for every other slot.
        inside = (start_s >= -tol) & (end_s <= dur + tol)
        drops["desync"] += int((~inside).sum())
        x, start_s, end_s = x[inside], start_s[inside], end_s[inside]
    elif len(x) == 0 and imu_t1 - imu_t0 < window_s:
        drops["too_short"] += 1
        summary["too_short"] = True
        return

    n = len(x)
    if n == 0:
        return
    labels = window_labels(start_s, end_s, spec.labels)
    targets = frame_targets(start_s, end_s, k, j)  # [n, KJ]
    kj = k * j
    flat = targets.ravel()
    order = np.argsort(flat, kind="stable")

    encoder = None
    if cfg.video_mode == "embeddings":
        encoder = create_video_encoder(cfg.video_encoder, cfg.video_encoder_weights, allow_download)

    # Windows complete in index order as decoding advances (their last targets increase). Frames are
    # held per window only while it is incomplete; a complete window is judged, then kept for its
    # shard (frames mode) or embedded in small batches (embeddings mode), so memory stays bounded.
    chunks = split_chunks(n, effective_shard_size(cfg))
    chunk_of = np.repeat(np.arange(len(chunks)), [b - a for a, b in chunks])
    chunk_left = np.array([b - a for a, b in chunks], dtype=np.int64)
    win_left = np.full(n, kj, dtype=np.int64)
    win_frames: Dict[int, np.ndarray] = {}
    win_times = np.full((n, kj), np.nan)
    kept: Dict[int, List[int]] = {}  # chunk -> good window indices
    video_out: Dict[int, List[np.ndarray]] = {}  # chunk -> frames [KJ,S,S,3] or embedding batches
    pending: List[Tuple[int, np.ndarray]] = []  # (chunk, frames) waiting for the encoder
    stats = DecodeStats()
    key = session_key(spec.name)
    size = cfg.size
    batch = 16

    def flush_embeddings() -> None:
        if not pending:
            return
        emb = embed_frames(encoder, np.stack([f for _, f in pending]), batch_size=batch)
        for (c, _), e in zip(pending, emb):
            video_out.setdefault(c, []).append(e)
        pending.clear()

    def window_done(w: int) -> None:
        c = int(chunk_of[w])
        frames = win_frames.pop(w)
        err = np.abs(win_times[w] - targets[w])
        if np.isfinite(err).all() and (err <= tol + 1e-9).all():
            kept.setdefault(c, []).append(w)
            if encoder is None:
                video_out.setdefault(c, []).append(frames)
            else:
                pending.append((c, frames))
                if len(pending) >= batch:
                    flush_embeddings()
        elif (info.duration_s is None and stats.frames_decoded
              and targets[w].max() > (stats.last_time_s or 0.0) + tol):
            drops["desync"] += 1  # the video (of unknown declared length) ends before this window does
        else:
            drops["decode_error"] += 1
        chunk_left[c] -= 1
        if chunk_left[c] == 0:
            finish_chunk(c)

    def finish_chunk(c: int) -> None:
        if encoder is not None:
            flush_embeddings()
        idx = np.asarray(kept.pop(c, []), dtype=np.int64)
        parts = video_out.pop(c, [])
        if not len(idx):
            return
        video = np.stack(parts)
        ftimes = win_times[idx]
        dup = np.array([len(np.unique(ft)) < kj for ft in ftimes], dtype=bool)
        flags = np.where(dup, "repeated_frames", "").astype(object)
        if grav["verdict"] == "suspect":
            flags = np.array([(f + ";" if f else "") + "units_suspect" for f in flags], dtype=object)
        manifest = pd.DataFrame({
            "session": spec.name, "subject": spec.subject, "start_s": start_s[idx], "end_s": end_s[idx],
            "label": labels[idx].astype(str), "flags": flags.astype(str),
        })
        name = f"{key}-{c:04d}"
        write_shard(store_dir, name, ShardData(imu=x[idx], video=video, frame_times=ftimes, manifest=manifest))
        summary["shards"].append({"name": name, "n": int(len(idx)), "session": spec.name, "chunk": int(c)})
        summary["windows_kept"] += int(len(idx))

    for ti, img, ft in iter_nearest_frames(spec.video_path, flat[order], size, stats=stats, threads=threads):
        w, slot = divmod(int(order[ti]), kj)
        frames = win_frames.get(w)
        if frames is None:
            frames = win_frames[w] = np.zeros((kj, size, size, 3), np.uint8)
        if img is not None:
            frames[slot] = img
            win_times[w, slot] = ft
        win_left[w] -= 1
        if win_left[w] == 0:
            window_done(w)
    summary["video"].update(frames_decoded=stats.frames_decoded, frames_converted=stats.frames_converted,
                            bad_packets=stats.bad_packets, stopped_early=stats.stopped_early,
                            first_frame_s=stats.first_time_s, last_frame_s=stats.last_time_s, **stats.extra)
    if stats.frames_decoded == 0:
        raise _SessionFailed("decode_error", f"{spec.video_path}: no video frame could be decoded"
                             + (f" ({stats.stopped_early})" if stats.stopped_early else ""))
    if stats.bad_packets or stats.stopped_early:
        log.warning("session %s: video damaged (%d bad packets%s); windows without frames were dropped",
                    spec.name, stats.bad_packets, f", stopped: {stats.stopped_early}" if stats.stopped_early else "")
    summary["labels"] = sorted(set(labels[labels != ""].astype(str))) if len(labels) else []


def _write_imu_only(spec, cfg: IngestConfig, store_dir: Path, summary: Dict[str, Any], x: np.ndarray,
                    start_s: np.ndarray, end_s: np.ndarray, grav: Dict[str, Any]) -> None:
    import pandas as pd

    from crossmodal_har.pairs.align import split_chunks, window_labels
    from crossmodal_har.pairs.store import ShardData, write_shard

    labels = window_labels(start_s, end_s, spec.labels)
    flag = "units_suspect" if grav["verdict"] == "suspect" else ""
    key = session_key(spec.name)
    for c, (a, b) in enumerate(split_chunks(len(x), effective_shard_size(cfg))):
        manifest = pd.DataFrame({"session": spec.name, "subject": spec.subject, "start_s": start_s[a:b],
                                 "end_s": end_s[a:b], "label": labels[a:b].astype(str), "flags": flag})
        name = f"{key}-{c:04d}"
        write_shard(store_dir, name, ShardData(imu=x[a:b], video=np.zeros((b - a, 0), np.uint8),
                                               frame_times=np.zeros((b - a, 0)), manifest=manifest))
        summary["shards"].append({"name": name, "n": int(b - a), "session": spec.name, "chunk": int(c)})
        summary["windows_kept"] += int(b - a)
    summary["labels"] = sorted(set(labels[labels != ""].astype(str))) if len(labels) else []


def _remove_session_shards(store_dir: Path, name: str) -> None:
    from crossmodal_har.pairs.store import SHARDS_DIR

    root = store_dir / SHARDS_DIR
    if not root.is_dir():
        return
    prefix = session_key(name) + "-"
    for p in root.iterdir():
        if p.name.startswith(prefix) and p.name[len(prefix):].isdigit():
            shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------------- the run

class _StoreLock:
    """An exclusive lock on STORE/.lock so two ingests never write one store."""

    def __init__(self, store_dir: Path, wait_s: float = 60.0):
        self.path = store_dir / ".lock"
        self.wait_s = wait_s
        self.fh = None

    def __enter__(self):
        import fcntl

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

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fh.fileno(), fcntl.LOCK_UN)
        self.fh.close()


_FORK_SPECS: List[Any] = []
_FORK_ARGS: Dict[str, Any] = {}


def _worker_init() -> None:
    # Die with the parent (Linux), so a killed run leaves no worker writing into the store.
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _worker_run(i: int) -> Dict[str, Any]:
    return process_session(_FORK_SPECS[i], _FORK_ARGS["cfg"], _FORK_ARGS["store_dir"],
                           allow_download=_FORK_ARGS["allow_download"], threads=False)


def _settings(cfg: IngestConfig, src: Path) -> Dict[str, Any]:
    from crossmodal_har.config import to_dict

    return {"src": os.fspath(src.resolve()), "config": to_dict(cfg)}


def ingest(src: PathLike, out: PathLike, cfg: IngestConfig, *, workers: int = 1, allow_download: bool = False,
           progress: Optional[bool] = None) -> Dict[str, Any]:
    """Ingest every session of ``src`` (layout ``cfg.layout``) into the store ``out``.

    Resumes a previous, interrupted run into the same ``out`` made with the same settings (a
    different setting is a UserError). Returns the report (also written to ``out/report.json``);
    ``report["partial"]`` is True when a session failed.
    """
    from crossmodal_har.pairs.sources import iter_sessions
    from crossmodal_har.pairs.store import clean_temporaries

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
            _remove_session_shards(out, s.name)

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


def _run_sessions(todo: Sequence[Any], cfg: IngestConfig, out: Path, ledger: Dict[str, Any], *, workers: int,
                  allow_download: bool, progress: Optional[bool]) -> None:
    from tqdm import tqdm

    if not todo:
        return
    bar = tqdm(total=len(todo), desc="ingest", unit="session", disable=None if progress is None else not progress)
    try:
        if workers <= 1 or len(todo) == 1:
            for spec in todo:
                _record(out, ledger, process_session(spec, cfg, out, allow_download=allow_download))
                bar.update(1)
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

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


def finalize(out: Path, cfg: IngestConfig, src: Path, specs: Sequence[Any], ledger: Dict[str, Any]) -> Dict[str, Any]:
    """Write ``store.json`` and ``report.json`` from the ledger (sessions ordered by name)."""
    from crossmodal_har.config import to_dict
    from crossmodal_har.pairs.align import FRAME_POLICY
    from crossmodal_har.pairs.store import write_store_json

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
    report = build_report(summaries, cfg)
    atomic_write_json(out / REPORT, report)
    return report


def _embed_dim(out: Path, cfg: IngestConfig, shards: Sequence[Dict[str, Any]]) -> Optional[int]:
    """D of the stored embeddings (from the first shard; None in frames mode or an empty store)."""
    from crossmodal_har.pairs.store import shard_path

    if cfg.video_mode != "embeddings" or not shards:
        return None
    return int(np.load(shard_path(out, shards[0]["name"]) / "video.npy", mmap_mode="r").shape[1])


def build_report(summaries: Sequence[Dict[str, Any]], cfg: Optional[IngestConfig] = None) -> Dict[str, Any]:
    """The run report from per-session summaries."""
    dropped = _empty_drops()
    for sm in summaries:
        for r, v in sm["dropped"].items():
            dropped[r] = dropped.get(r, 0) + int(v)
    errors = [{"session": sm["session"], "error": sm["error"], "reason": sm["error_reason"]}
              for sm in summaries if sm["status"] == "error"]
    sessions = []
    for sm in summaries:
        row = {k: sm.get(k) for k in ("session", "subject", "status", "windows_kept", "dropped", "gravity",
                                      "video", "imu_coverage", "too_short", "seconds")}
        fixes = (sm.get("meta") or {}).get("imu_fixes")
        if fixes:
            row["imu_fixes"] = fixes
        sessions.append(row)
    imu_fixes = {}
    for sm in summaries:
        for k, v in ((sm.get("meta") or {}).get("imu_fixes") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                imu_fixes[k] = imu_fixes.get(k, 0) + v
    return {
        "sessions_total": len(summaries),
        "sessions_ok": sum(sm["status"] == "ok" for sm in summaries),
        "sessions_failed": len(errors),
        "windows_kept": int(sum(sm["windows_kept"] for sm in summaries)),
        "windows_dropped": dropped,
        "imu_fixes": imu_fixes,
        "units_suspect": sorted(sm["session"] for sm in summaries
                                if (sm.get("gravity") or {}).get("verdict") == "suspect"),
        "errors": errors,
        "partial": bool(errors),
        "sessions": sessions,
    }


def merge_reports(reports: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Sum several runs' reports (for merged stores)."""
    sessions = sorted((s for r in reports for s in r.get("sessions", [])), key=lambda s: s["session"])
    dropped = _empty_drops()
    imu_fixes: Dict[str, Any] = {}
    for r in reports:
        for k, v in r.get("windows_dropped", {}).items():
            dropped[k] = dropped.get(k, 0) + int(v)
        for k, v in r.get("imu_fixes", {}).items():
            imu_fixes[k] = imu_fixes.get(k, 0) + v
    errors = sorted((e for r in reports for e in r.get("errors", [])), key=lambda e: e["session"])
    return {
        "sessions_total": sum(int(r.get("sessions_total", 0)) for r in reports),
        "sessions_ok": sum(int(r.get("sessions_ok", 0)) for r in reports),
        "sessions_failed": len(errors),
        "windows_kept": sum(int(r.get("windows_kept", 0)) for r in reports),
        "windows_dropped": dropped,
        "imu_fixes": imu_fixes,
        "units_suspect": sorted(s for r in reports for s in r.get("units_suspect", [])),
        "errors": errors,
        "partial": bool(errors),
        "sessions": sessions,
    }
