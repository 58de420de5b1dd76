"""Ingest one session (IMU + video) into shards of a window store.

1. ``load_imu()`` → recording on the video clock; gravity check of the declared units.
2. IMU windows through the signal layer (:func:`crossmodal_har.signals.windows.recording_windows`:
   resample, median filter, window, quality). Windows with a quality reason are dropped.
3. The video is probed; a still picture or a one-frame stream fails the session (``not_a_video``);
   windows not wholly inside the video are dropped (``desync``); a session whose IMU and video
   barely overlap is an error.
4. The video is decoded once; for each window, K frames (J per slot) nearest to the slot times.
   Windows whose frames are missing are dropped (``decode_error``; ``desync`` past the video end).
5. Windows are written in chunks of ``shard_size`` as atomic shards; in embeddings mode the frames
   go through a frozen video encoder first and only the float16 embeddings are stored.

Bad data fails the session, not the run: the readers raise :class:`~crossmodal_har.errors.DataError`
naming the file, and :func:`process_session` records it in the session's summary. Any other
exception is a bug and propagates.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import pandas as pd

from crossmodal_har.errors import DataError
from crossmodal_har.io import to_jsonable
from crossmodal_har.pairs.align import (expected_windows, frame_targets, frame_tolerance_s, gravity_check, overlap_s,
                                        split_chunks, window_labels)
from crossmodal_har.pairs.ingest_config import IngestConfig, effective_shard_size
from crossmodal_har.pairs.report import empty_drops
from crossmodal_har.pairs.session import SessionSpec, session_key
from crossmodal_har.pairs.store import SHARDS_DIR, ShardData, write_shard
from crossmodal_har.pairs.video import (DecodeStats, NotAVideoError, VideoInfo, count_frames, iter_nearest_frames,
                                        probe_video)
from crossmodal_har.pairs.video_encoder import check_per_frame, create_video_encoder, embed_frames
from crossmodal_har.signals.status import DROP_DECODE_ERROR, DROP_DESYNC, DROP_TOO_SHORT, STATUS_GAP
from crossmodal_har.signals.text import short_number
from crossmodal_har.signals.types import ImuRecording
from crossmodal_har.signals.windows import recording_windows

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
EMBED_BATCH = 16  # frames of this many windows go through the encoder together


class _SessionFailed(Exception):
    """The session's data cannot be paired (``reason``: the report's ``error_reason``)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def process_session(spec: SessionSpec, cfg: IngestConfig, store_dir: PathLike, *, allow_download: bool = False,
                    threads: bool = True) -> Dict[str, Any]:
    """Ingest one session into shards of ``store_dir``. Never raises for bad data (DataError).

    Returns a JSON-serialisable summary: ``session``, ``subject``, ``status`` (``ok`` | ``error``),
    ``error``, ``error_reason``, ``windows_kept``, ``dropped`` {reason: n}, ``shards`` [{"name",
    "n", "session", "chunk"}], ``labels`` (distinct labels kept), ``gravity``, ``video``, ``meta``.
    """
    t0 = time.perf_counter()
    summary: Dict[str, Any] = {"session": spec.name, "subject": spec.subject, "status": "ok", "error": None,
                               "error_reason": None, "windows_kept": 0, "dropped": empty_drops(), "shards": [],
                               "labels": [], "gravity": None, "video": None, "meta": spec.meta}
    try:
        _process(spec, cfg, Path(store_dir), summary, allow_download=allow_download, threads=threads)
    except _SessionFailed as exc:
        summary.update(status="error", error=exc.message, error_reason=exc.reason)
    except DataError as exc:
        summary.update(status="error", error=str(exc), error_reason="data_error")
    if summary["status"] == "error":
        # Shards already written for a session that failed later are removed: it contributes nothing.
        remove_session_shards(Path(store_dir), spec.name)
        summary["shards"] = []
        summary["windows_kept"] = 0
    summary["meta"] = _jsonable(spec.meta)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


def remove_session_shards(store_dir: Path, name: str) -> None:
    """Delete every shard of session ``name`` from ``store_dir`` (before redoing or after failing it)."""
    root = store_dir / SHARDS_DIR
    if not root.is_dir():
        return
    prefix = session_key(name) + "-"
    for p in root.iterdir():
        if p.name.startswith(prefix) and p.name[len(prefix):].isdigit():
            shutil.rmtree(p, ignore_errors=True)


def _jsonable(obj: Any) -> Any:
    try:
        return to_jsonable(obj)
    except (TypeError, ValueError):
        return {k: str(v) for k, v in dict(obj).items()}


def _process(spec: SessionSpec, cfg: IngestConfig, store_dir: Path, summary: Dict[str, Any], *,
             allow_download: bool, threads: bool) -> None:
    rec, grav, x, start_s, end_s = _imu_windows(spec, cfg, summary)
    if cfg.video_mode == "none":  # IMU-only store (e.g. for IMU pretraining baselines, benchmarks)
        _write_imu_only(spec, cfg, store_dir, summary, x, start_s, end_s, grav)
        return
    try:
        info = probe_video(spec.video_path)
        if info.frames == 0 and count_frames(spec.video_path, 2) == 1:  # frame count not declared
            raise NotAVideoError(spec.video_path, "not a video: its video stream has a single frame")
    except NotAVideoError as exc:
        summary["dropped"][DROP_DECODE_ERROR] += len(x)
        raise _SessionFailed("not_a_video", str(exc)) from None
    except DataError as exc:
        summary["dropped"][DROP_DECODE_ERROR] += len(x)
        raise _SessionFailed(DROP_DECODE_ERROR, str(exc)) from None
    kept = _windows_in_video(spec, cfg, summary, info, float(rec.t[0]), float(rec.t[-1]), x, start_s, end_s)
    if kept is None or len(kept[0]) == 0:
        return
    x, start_s, end_s = kept
    encoder = None
    if cfg.video_mode == "embeddings":
        encoder = create_video_encoder(cfg.video_encoder, cfg.video_encoder_weights, allow_download)
        if cfg.embedding_layout == "frames":
            check_per_frame(encoder, cfg.video_encoder)
    _pair_frames(spec, cfg, store_dir, summary, info, grav, x, start_s, end_s, encoder, threads=threads)


# ------------------------------------------------------------------------------- 1-2. the IMU

def _imu_windows(spec: SessionSpec, cfg: IngestConfig, summary: Dict[str, Any]
                 ) -> Tuple[ImuRecording, Dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """Load the IMU, check gravity, cut windows; drop (and count) those with a quality reason.

    Returns ``(recording, gravity verdict, x [n, W, 6], start_s [n], end_s [n])``.
    """
    pre = cfg.preprocess
    drops = summary["dropped"]
    rec = spec.load_imu()
    if len(rec.t) < 2:
        raise DataError(getattr(rec, "source", None), "IMU recording has fewer than 2 samples")
    declared = (spec.meta.get("units") or {}).get("acc_unit") if isinstance(spec.meta, dict) else None
    grav = gravity_check(rec, declared)
    summary["gravity"] = grav
    if grav["verdict"] == "suspect":
        log.warning("session %s: %s", spec.name, grav["message"])

    x, start_s, end_s, reasons = recording_windows(rec, pre)
    imu_t0, imu_t1 = float(rec.t[0]), float(rec.t[-1])
    n_gap = max(0, expected_windows(imu_t1 - imu_t0, pre) - len(x))
    drops[STATUS_GAP] += n_gap
    for r in np.unique(reasons[reasons != ""]) if len(reasons) else []:
        drops[r] = drops.get(r, 0) + int((reasons == r).sum())
    ok = reasons == "" if len(reasons) else np.zeros(0, bool)
    return rec, grav, x[ok], start_s[ok], end_s[ok]


# -------------------------------------------------------------------------- 3. the video span

def _windows_in_video(spec: SessionSpec, cfg: IngestConfig, summary: Dict[str, Any], info: VideoInfo,
                      imu_t0: float, imu_t1: float, x: np.ndarray, start_s: np.ndarray,
                      end_s: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The windows that lie inside the video, or None when the video is shorter than one window.

    Raises _SessionFailed (``desync``) when the IMU covers too little of the video.
    """
    pre = cfg.preprocess
    drops = summary["dropped"]
    window_s = pre.window_samples / pre.rate_hz
    summary["video"] = {"duration_s": info.duration_s, "fps": info.fps, "width": info.width, "height": info.height}
    if info.duration_s is not None:
        dur = info.duration_s
        ov = overlap_s(imu_t0, imu_t1, 0.0, dur)
        summary["imu_coverage"] = round(ov / dur, 4) if dur > 0 else 0.0
        if dur < window_s:  # nothing to pair, not an error
            drops[DROP_TOO_SHORT] += 1
            summary["too_short"] = True
            log.info("session %s: video (%.3g s) shorter than one %.3g s window", spec.name, dur, window_s)
            return None
        if ov < window_s or (dur > 0 and ov / dur < cfg.min_imu_coverage):
            drops[DROP_DESYNC] += len(x)
            raise _SessionFailed(
                DROP_DESYNC, f"{spec.name}: IMU [{_secs(imu_t0)}, {_secs(imu_t1)}] s covers {_secs(ov)} s of the "
                f"video's [0, {_secs(dur)}] s ({ov / dur if dur else 0:.0%}; need >= {cfg.min_imu_coverage:.0%} "
                f"and one {window_s:g} s window): IMU shorter than the video, not overlapping it, or a wrong imu_offset_s")
        # The container's duration is approximate (last frame's length); frames within the frame
        # tolerance of the window edges are good enough, as for every other slot.
        tol = frame_tolerance_s(window_s, cfg.frames)
        inside = (start_s >= -tol) & (end_s <= dur + tol)
        drops[DROP_DESYNC] += int((~inside).sum())
        return x[inside], start_s[inside], end_s[inside]
    if len(x) == 0 and imu_t1 - imu_t0 < window_s:
        drops[DROP_TOO_SHORT] += 1
        summary["too_short"] = True
        return None
    return x, start_s, end_s


def _secs(value: float) -> str:
    """Seconds for a message: 3 decimals, or the short form when that would be a huge number."""
    return f"{value:.3f}" if abs(value) < 1e9 else short_number(value)


# ------------------------------------------------------------------- 4-5. frames and shards

@dataclass
class _Pairing:
    """The state of one decoding pass: which windows still wait for frames, and what each shard
    (chunk) has collected so far.

    Windows complete in index order as decoding advances (their last targets increase). Frames are
    held per window only while it is incomplete; a complete window is judged, then kept for its
    shard (frames mode) or embedded in small batches (embeddings mode), so memory stays bounded.
    """

    spec: SessionSpec
    store_dir: Path
    summary: Dict[str, Any]
    info: VideoInfo
    suspect: bool  # the gravity check found the declared units suspect
    x: np.ndarray  # [n, W, 6]
    start_s: np.ndarray
    end_s: np.ndarray
    labels: np.ndarray  # [n] str
    targets: np.ndarray  # [n, KJ] slot target times (s)
    tol: float  # frame tolerance (s)
    encoder: Any  # None in frames mode
    per_frame: bool  # embeddings mode: store [K, D] per window (embedding_layout frames)
    chunk_of: np.ndarray  # [n] the chunk (shard) of each window
    chunk_left: np.ndarray  # [chunks] windows not yet judged
    win_left: np.ndarray  # [n] slots not yet filled
    win_times: np.ndarray  # [n, KJ] time of the frame in each slot (NaN = none)
    stats: DecodeStats = field(default_factory=DecodeStats)
    win_frames: Dict[int, np.ndarray] = field(default_factory=dict)
    kept: Dict[int, List[int]] = field(default_factory=dict)  # chunk -> good window indices
    video_out: Dict[int, List[np.ndarray]] = field(default_factory=dict)  # chunk -> frames or embeddings
    pending: List[Tuple[int, int, np.ndarray]] = field(default_factory=list)  # (chunk, window, frames) to embed
    # per-frame layout: features of frames already embedded, by presentation time; overlapping windows
    # share frames (5 s windows every 2.5 s: each frame is in two), so each is embedded once
    frame_cache: Dict[float, np.ndarray] = field(default_factory=dict)


def _pair_frames(spec: SessionSpec, cfg: IngestConfig, store_dir: Path, summary: Dict[str, Any], info: VideoInfo,
                 grav: Dict[str, Any], x: np.ndarray, start_s: np.ndarray, end_s: np.ndarray, encoder: Any, *,
                 threads: bool) -> None:
    """Decode the video once, give every window its K×J frames and write the shards."""
    pre = cfg.preprocess
    window_s = pre.window_samples / pre.rate_hz
    k, j = cfg.frames, cfg.frames_per_slot
    n, kj = len(x), k * j
    labels = window_labels(start_s, end_s, spec.labels)
    targets = frame_targets(start_s, end_s, k, j)  # [n, KJ]
    flat = targets.ravel()
    order = np.argsort(flat, kind="stable")
    chunks = split_chunks(n, effective_shard_size(cfg))
    st = _Pairing(spec=spec, store_dir=store_dir, summary=summary, info=info, suspect=grav["verdict"] == "suspect",
                  x=x, start_s=start_s, end_s=end_s, labels=labels, targets=targets,
                  tol=frame_tolerance_s(window_s, k), encoder=encoder,
                  per_frame=cfg.embedding_layout == "frames",
                  chunk_of=np.repeat(np.arange(len(chunks)), [b - a for a, b in chunks]),
                  chunk_left=np.array([b - a for a, b in chunks], dtype=np.int64),
                  win_left=np.full(n, kj, dtype=np.int64), win_times=np.full((n, kj), np.nan))
    size = cfg.size
    for ti, img, ft in iter_nearest_frames(spec.video_path, flat[order], size, stats=st.stats, threads=threads):
        w, slot = divmod(int(order[ti]), kj)
        frames = st.win_frames.get(w)
        if frames is None:
            frames = st.win_frames[w] = np.zeros((kj, size, size, 3), np.uint8)
        if img is not None:
            frames[slot] = img
            st.win_times[w, slot] = ft
        st.win_left[w] -= 1
        if st.win_left[w] == 0:
            _window_done(st, w)
    stats = st.stats
    summary["video"].update(frames_decoded=stats.frames_decoded, frames_converted=stats.frames_converted,
                            bad_packets=stats.bad_packets, stopped_early=stats.stopped_early,
                            first_frame_s=stats.first_time_s, last_frame_s=stats.last_time_s, **stats.extra)
    if stats.frames_decoded == 0:
        raise _SessionFailed(DROP_DECODE_ERROR, f"{spec.video_path}: no video frame could be decoded"
                             + (f" ({stats.stopped_early})" if stats.stopped_early else ""))
    if stats.bad_packets or stats.stopped_early:
        log.warning("session %s: video damaged (%d bad packets%s); windows without frames were dropped",
                    spec.name, stats.bad_packets, f", stopped: {stats.stopped_early}" if stats.stopped_early else "")
    summary["labels"] = sorted(set(labels[labels != ""].astype(str))) if len(labels) else []


def _window_done(st: _Pairing, w: int) -> None:
    """Window ``w`` has all its slots: keep it (frames within tolerance) or count why it is dropped."""
    drops = st.summary["dropped"]
    c = int(st.chunk_of[w])
    frames = st.win_frames.pop(w)
    err = np.abs(st.win_times[w] - st.targets[w])
    if np.isfinite(err).all() and (err <= st.tol + 1e-9).all():
        st.kept.setdefault(c, []).append(w)
        if st.encoder is None:
            st.video_out.setdefault(c, []).append(frames)
        else:
            st.pending.append((c, w, frames))
            if len(st.pending) >= EMBED_BATCH:
                _flush_embeddings(st)
    elif (st.info.duration_s is None and st.stats.frames_decoded
          and st.targets[w].max() > (st.stats.last_time_s or 0.0) + st.tol):
        drops[DROP_DESYNC] += 1  # the video (of unknown declared length) ends before this window does
    else:
        drops[DROP_DECODE_ERROR] += 1
    st.chunk_left[c] -= 1
    if st.chunk_left[c] == 0:
        _finish_chunk(st, c)


def _flush_embeddings(st: _Pairing) -> None:
    """Embed the frames of the windows waiting for the encoder, in one batch."""
    if not st.pending:
        return
    if st.per_frame:
        _flush_frame_embeddings(st)
        return
    emb = embed_frames(st.encoder, np.stack([f for _, _, f in st.pending]), batch_size=EMBED_BATCH)
    for (c, _, _), e in zip(st.pending, emb):
        st.video_out.setdefault(c, []).append(e)
    st.pending.clear()


def _flush_frame_embeddings(st: _Pairing) -> None:
    """Per-frame layout: embed each distinct frame of the waiting windows once (frames are told apart
    by presentation time; the encoder sees every frame on its own, so sharing is exact), then give
    every window its [K, D]. Features of frames the next windows may share are kept."""
    new: Dict[float, np.ndarray] = {}
    for _, w, frames in st.pending:
        for tk, f in zip(st.win_times[w].tolist(), frames):
            if tk not in st.frame_cache and tk not in new:
                new[tk] = f
    if new:
        keys = list(new)
        emb = embed_frames(st.encoder, np.stack([new[k] for k in keys])[:, None], batch_size=EMBED_BATCH * 4,
                           per_frame=True)[:, 0]
        st.frame_cache.update(zip(keys, emb))
    for c, w, _ in st.pending:
        st.video_out.setdefault(c, []).append(np.stack([st.frame_cache[tk] for tk in st.win_times[w].tolist()]))
    # windows complete in time order: frames before the last waiting window's first frame are done
    oldest = float(np.min(st.win_times[st.pending[-1][1]]))
    for tk in [k for k in st.frame_cache if k < oldest]:
        del st.frame_cache[tk]
    st.pending.clear()


def _finish_chunk(st: _Pairing, c: int) -> None:
    """Every window of chunk ``c`` is judged: write its kept windows as one shard."""
    if st.encoder is not None:
        _flush_embeddings(st)
    idx = np.asarray(st.kept.pop(c, []), dtype=np.int64)
    parts = st.video_out.pop(c, [])
    if not len(idx):
        return
    video = np.stack(parts)
    ftimes = st.win_times[idx]
    kj = st.win_times.shape[1]
    dup = np.array([len(np.unique(ft)) < kj for ft in ftimes], dtype=bool)
    flags = np.where(dup, "repeated_frames", "").astype(object)
    if st.suspect:
        flags = np.array([(f + ";" if f else "") + "units_suspect" for f in flags], dtype=object)
    spec = st.spec
    manifest = pd.DataFrame({
        "session": spec.name, "subject": spec.subject, "start_s": st.start_s[idx], "end_s": st.end_s[idx],
        "label": st.labels[idx].astype(str), "flags": flags.astype(str),
    })
    name = f"{session_key(spec.name)}-{c:04d}"
    write_shard(st.store_dir, name, ShardData(imu=st.x[idx], video=video, frame_times=ftimes, manifest=manifest))
    st.summary["shards"].append({"name": name, "n": int(len(idx)), "session": spec.name, "chunk": int(c)})
    st.summary["windows_kept"] += int(len(idx))


def _write_imu_only(spec: SessionSpec, cfg: IngestConfig, store_dir: Path, summary: Dict[str, Any], x: np.ndarray,
                    start_s: np.ndarray, end_s: np.ndarray, grav: Dict[str, Any]) -> None:
    """``--video-mode none``: the IMU windows alone, in shards of ``shard_size``."""
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
