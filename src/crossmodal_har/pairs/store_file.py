"""``STORE/store.json``: what a window store holds (:class:`StoreFile`), written by
:func:`write_store_json` at the end of an ingest (or a merge), read by :func:`read_store_file` when a
store is opened, and withdrawn by :func:`withdraw_store_json` before an ingest changes any shard::

    {"format_version": 1, "layout": "paired", "preprocess": {...}, "video_mode": "frames",
     "video_encoder": null, "video_encoder_weights": null, "embedding_layout": null, "frames": 10,
     "frames_per_slot": 1, "size": 64, "frame_policy": "slot", "embed_dim": null,
     "channels": ["acc_x", ...], "units": {"acc": "g", ...}, "class_names": [...], "split": null,
     "shards": [{"name": "<session key>-0000", "n": 120, "session": "...", "chunk": 0}, ...],
     "num_windows": 120}

A leaf of :mod:`crossmodal_har.pairs`: the store reader, ingestion and the ledger import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from crossmodal_har.errors import ConfigError, DataError
from crossmodal_har.io import PathLike
from crossmodal_har.saved import VERSION_KEY, SavedFile, build_saved, read_saved, write_saved
from crossmodal_har.signals.types import PreprocessConfig

STORE_JSON = "store.json"
REPORT_JSON = "report.json"


@dataclass
class ShardEntry:
    """One shard of a store: its directory name under ``shards/``, its window count, and the
    session and chunk it holds (stores made outside ingest may not say)."""

    OMIT_IF_NONE = ("session", "chunk")

    name: str
    n: int
    session: Optional[str] = None
    chunk: Optional[int] = None


@dataclass
class StoreFile(SavedFile):
    """``store.json``: the settings every window of the store was made with, and its shards in
    window order (sorted by session, then chunk).

    Attributes:
        preprocess: the IMU preprocessing of the windows.
        video_mode: ``frames`` | ``embeddings`` | ``none``.
        layout: the source layout (``paired``, ``ego4d``, ``gopro``, ``synthetic``).
        video_encoder, video_encoder_weights: what made the embeddings (embeddings mode).
        embedding_layout: ``frames`` for per-frame embeddings [K, D]; None = one pooled vector.
        frames, frames_per_slot: K slots per window, J frames stored per slot.
        size: frame side (pixels).
        frame_policy: how frames are placed in a window (``slot``).
        embed_dim: D of the stored embeddings (None in frames mode or an empty store).
        channels, units: the stored IMU columns and their units.
        class_names: sorted distinct non-empty labels (a window's class index is its position).
        split: this machine's share (``num_shards``, ``shard_index``) when ingest was split.
        merged_from: the stores a merged store was made of.
        shards: every shard, in window order.
        num_windows: the total window count.
    """

    VERSION = 1
    WHAT = STORE_JSON
    OMIT_IF_NONE = ("merged_from",)

    preprocess: PreprocessConfig
    video_mode: str
    layout: Optional[str] = None
    video_encoder: Optional[str] = None
    video_encoder_weights: Optional[str] = None
    embedding_layout: Optional[str] = None
    frames: Optional[int] = None
    frames_per_slot: Optional[int] = None
    size: Optional[int] = None
    frame_policy: Optional[str] = None
    embed_dim: Optional[int] = None
    channels: Optional[List[str]] = None
    units: Optional[Dict[str, Any]] = None
    class_names: List[str] = field(default_factory=list)
    split: Optional[Dict[str, Any]] = None
    merged_from: Optional[List[str]] = None
    shards: List[ShardEntry] = field(default_factory=list)
    num_windows: int = 0

    def validate(self) -> None:
        if self.num_windows < 0:
            raise ConfigError("invalid 'num_windows' (expected an integer >= 0)")
        for i, sh in enumerate(self.shards):
            if not sh.name or sh.name.startswith(".") or "/" in sh.name or "\\" in sh.name or sh.n < 0:
                raise ConfigError(f'shards[{i}]: expected {{"name": a shard directory name, "n": an integer >= 0}}')


def write_store_json(store_dir: PathLike, meta: Mapping[str, Any], shards: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``store.json``: ``meta`` (the fields of :class:`StoreFile` as JSON data) plus the ordered
    shard list ``[{"name", "n", "session", "chunk"}]`` and their window count."""
    path = Path(store_dir) / STORE_JSON
    fields = {k: v for k, v in meta.items() if k != VERSION_KEY}
    fields["shards"] = [dict(s) for s in shards]
    fields["num_windows"] = int(sum(int(s["n"]) for s in shards))
    return write_saved(build_saved(StoreFile, fields, path), path)


def read_store_file(store_dir: PathLike) -> StoreFile:
    """The ``store.json`` of a store directory, checked (a DataError naming it otherwise)."""
    store_dir = Path(store_dir)
    path = store_dir / STORE_JSON
    if not path.is_file():
        raise DataError(store_dir, f"not a window store (no {STORE_JSON}); run `crossmodal-har ingest` first")
    return read_saved(StoreFile, path)


def withdraw_store_json(store_dir: PathLike) -> bool:
    """Remove ``store.json`` (and ``report.json``) before an ingest changes any shard, so that no reader
    ever opens a store listing old and new shards at once; ingestion writes them again at its end.
    Returns whether there was a ``store.json``."""
    store_dir = Path(store_dir)
    had = (store_dir / STORE_JSON).exists()
    (store_dir / STORE_JSON).unlink(missing_ok=True)
    (store_dir / REPORT_JSON).unlink(missing_ok=True)
    return had
