"""The paired window store: IMU windows + video frames (or embeddings) on disk, memory-mapped.

Layout of a store directory::

    STORE/store.json              format version, preprocess config, video mode, frames, shard list
    STORE/report.json             what ingestion kept and dropped (see pairs/report.py)
    STORE/shards/<shard>/imu.npy          float32 [n, W, 6]   g and rad/s (resampled + median filtered)
    STORE/shards/<shard>/video.npy        uint8 [n, K*J, H, W, 3] (frames) or float16 [n, D] (embeddings;
                                          [n, K, D] per frame when store.json's embedding_layout is frames)
    STORE/shards/<shard>/frame_times.npy  float64 [n, K*J]  presentation time (s) of each stored frame
                                          (frames mode) or of the frames the encoder saw (embeddings)
    STORE/shards/<shard>/manifest.parquet one row per window (columns: MANIFEST_COLUMNS)

A shard is written into a temporary directory and moved into place with ``os.replace``: a shard
directory either exists complete or not at all. The global window index runs over the shards in the
order ``store.json`` lists them (sorted by session name, then chunk), so a store built in pieces
(resumed, or split across machines and merged) has the same order as one built in one go.

Windows are kept in physical units; normalisation happens at model input
(:func:`crossmodal_har.signals.normalize.normalize_windows`).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.pairs.store_file import StoreFile, read_store_file
from crossmodal_har.signals.types import PreprocessConfig

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

SHARDS_DIR = "shards"
MANIFEST_COLUMNS = ("session", "subject", "start_s", "end_s", "label", "flags", "shard")
SHARD_FILES = ("imu.npy", "video.npy", "frame_times.npy", "manifest.parquet")


# ----------------------------------------------------------------------------------- writing

@dataclass
class ShardData:
    """The windows of one shard, in memory, before writing.

    Attributes:
        imu: [n, W, 6] float32 (g, rad/s).
        video: [n, K*J, H, W, 3] uint8 or [n, D] float16.
        frame_times: [n, K*J] float64 seconds on the video clock.
        manifest: DataFrame with MANIFEST_COLUMNS except ``shard`` (filled on write).
    """

    imu: np.ndarray
    video: np.ndarray
    frame_times: np.ndarray
    manifest: Any  # pandas.DataFrame

    def __len__(self) -> int:
        return len(self.imu)


def shard_path(store_dir: PathLike, shard: str) -> Path:
    return Path(store_dir) / SHARDS_DIR / shard


def write_shard(store_dir: PathLike, shard: str, data: ShardData) -> Path:
    """Write one shard atomically (temp dir + ``os.replace``); an existing shard is replaced."""
    n = len(data)
    if not (len(data.video) == len(data.frame_times) == len(data.manifest) == n):
        raise ValueError("shard arrays disagree in length")
    final = shard_path(store_dir, shard)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{shard}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        np.save(tmp / "imu.npy", np.ascontiguousarray(data.imu, dtype=np.float32))
        np.save(tmp / "video.npy", np.ascontiguousarray(data.video))
        np.save(tmp / "frame_times.npy", np.ascontiguousarray(data.frame_times, dtype=np.float64))
        manifest = data.manifest.copy()
        manifest["shard"] = shard
        manifest = manifest[list(MANIFEST_COLUMNS)].reset_index(drop=True)
        manifest.to_parquet(tmp / "manifest.parquet", index=False)
        for name in SHARD_FILES:
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():  # a re-done shard (resume after a kill between shard and ledger)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def clean_temporaries(store_dir: PathLike) -> int:
    """Remove half-written shard directories left by a killed run. Returns how many."""
    root = Path(store_dir) / SHARDS_DIR
    n = 0
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)
                n += 1
    return n


def prune_shards(store_dir: PathLike, keep: Iterable[str]) -> List[str]:
    """Remove every entry of ``STORE/shards`` whose name is not in ``keep`` (shards of sessions that
    left the source or were redone, leftovers of a damaged ledger). Returns the names removed."""
    root = Path(store_dir) / SHARDS_DIR
    keep = set(keep)
    removed = []
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if p.name not in keep:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p.name)
    return removed


class ShardedArray:
    """A read-only array view over the same-named ``.npy`` file of every shard (memory-mapped).

    Supports ``len``, ``shape``, ``dtype``, integer / slice / integer-array / boolean indexing on
    the first axis (further axes are indexed per piece), and ``np.asarray``.
    """

    def __init__(self, parts: Sequence[np.ndarray]):
        self._parts = list(parts)
        lengths = [len(p) for p in self._parts]
        self._offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        if self._parts:
            self.dtype = self._parts[0].dtype
            tail = self._parts[0].shape[1:]
        else:
            self.dtype = np.dtype(np.float32)
            tail = ()
        self.shape = (int(self._offsets[-1]),) + tuple(tail)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def _locate(self, i: int):
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} windows")
        p = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return p, i - int(self._offsets[p])

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            p, j = self._locate(int(key))
            return np.asarray(self._parts[p][(j,) + rest])
        if isinstance(key, slice):
            idx = np.arange(len(self))[key]
        else:
            idx = np.asarray(key)
            if idx.dtype == bool:
                idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).ravel()
        idx = np.where(idx < 0, idx + len(self), idx)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError("index out of range")
        part = np.searchsorted(self._offsets, idx, side="right") - 1
        probe = self._parts[0][(slice(0, 0),) + rest] if self._parts else np.zeros((0,))
        out = np.empty((len(idx),) + probe.shape[1:], dtype=self.dtype)
        for p in np.unique(part):
            sel = np.flatnonzero(part == p)
            local = idx[sel] - self._offsets[p]
            out[sel] = self._parts[p][(local,) + rest]
        return out

    def __array__(self, dtype=None, copy=None):
        out = self[:] if len(self) else np.zeros(self.shape, self.dtype)
        return out if dtype is None else out.astype(dtype)


class WindowStore:
    """Read a window store (memory-mapped, random access across shards).

    Attributes:
        path: the store directory.
        meta: its ``store.json`` (:class:`~crossmodal_har.pairs.store_file.StoreFile`; also read by
            key like the JSON: ``preprocess``, ``video_mode`` (``frames`` | ``embeddings`` |
            ``none``), ``video_encoder``, ``frames`` K, ``frames_per_slot`` J, ``size``,
            ``frame_policy``, ``class_names``, ``shards``...).
        imu: [N, W, 6] float32 (g, rad/s), a :class:`ShardedArray`.
        video: [N, K*J, H, W, 3] uint8 (frames), [N, D] float16 (embeddings) or [N, 0] (``none``:
            an IMU-only store).
        frame_times: [N, K*J] float64, seconds on the video clock.
        manifest: pandas DataFrame, one row per window (``MANIFEST_COLUMNS``).
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self.meta: StoreFile = read_store_file(self.path)
        self._imu: Optional[ShardedArray] = None
        self._video: Optional[ShardedArray] = None
        self._times: Optional[ShardedArray] = None
        self._manifest = None
        self._labels: Optional[np.ndarray] = None

    # -- metadata
    @property
    def shards(self) -> List[Dict[str, Any]]:
        """``{"name", "n", "session", "chunk"}`` of every shard, in window order."""
        return self.meta["shards"]

    @property
    def video_mode(self) -> str:
        return self.meta.video_mode

    @property
    def preprocess(self) -> PreprocessConfig:
        """The :class:`PreprocessConfig` the IMU windows were made with."""
        return self.meta.preprocess

    @property
    def class_names(self) -> List[str]:
        """Sorted distinct non-empty labels; a window's class index is its position here."""
        return list(self.meta.class_names)

    def __len__(self) -> int:
        return self.meta.num_windows

    # -- arrays
    def _load(self, name: str) -> ShardedArray:
        parts = []
        for s in self.shards:
            f = shard_path(self.path, s["name"]) / name
            if not f.is_file():
                raise DataError(f, "shard file missing (store incomplete or damaged)")
            arr = np.load(f, mmap_mode="r")
            if len(arr) != int(s["n"]):
                raise DataError(f, f"has {len(arr)} windows, store.json says {s['n']}")
            parts.append(arr)
        return ShardedArray(parts)

    @property
    def imu(self) -> ShardedArray:
        if self._imu is None:
            self._imu = self._load("imu.npy")
        return self._imu

    @property
    def video(self) -> ShardedArray:
        if self._video is None:
            self._video = self._load("video.npy")
        return self._video

    @property
    def frame_times(self) -> ShardedArray:
        if self._times is None:
            self._times = self._load("frame_times.npy")
        return self._times

    @property
    def manifest(self):
        if self._manifest is None:
            import pandas as pd

            frames = [pd.read_parquet(shard_path(self.path, s["name"]) / "manifest.parquet") for s in self.shards]
            if frames:
                df = pd.concat(frames, ignore_index=True)
            else:
                df = pd.DataFrame({c: [] for c in MANIFEST_COLUMNS})
            self._manifest = df
        return self._manifest

    @property
    def labels(self) -> np.ndarray:
        """[N] int64 class index per window (-1 = unlabelled), into :attr:`class_names`."""
        if self._labels is None:
            names = {c: i for i, c in enumerate(self.class_names)}
            self._labels = np.array([names.get(v, -1) for v in self.manifest["label"].fillna("")], dtype=np.int64)
            self._labels.setflags(write=False)
        return self._labels

    def subjects(self) -> List[str]:
        """Distinct subjects, sorted."""
        return sorted(set(self.manifest["subject"].astype(str)))

    def sessions(self) -> List[str]:
        return sorted(set(self.manifest["session"].astype(str)))

    def indices_for(self, *, subjects: Optional[Iterable[str]] = None,
                    sessions: Optional[Iterable[str]] = None) -> np.ndarray:
        """Window indices whose subject (and/or session) is in the given sets (for subject splits)."""
        mask = np.ones(len(self), dtype=bool)
        if subjects is not None:
            mask &= self.manifest["subject"].astype(str).isin(set(map(str, subjects))).to_numpy()
        if sessions is not None:
            mask &= self.manifest["session"].astype(str).isin(set(map(str, sessions))).to_numpy()
        return np.flatnonzero(mask)

    def __repr__(self) -> str:
        return (f"WindowStore({str(self.path)!r}, windows={len(self)}, mode={self.meta.get('video_mode')}, "
                f"shards={len(self.shards)})")


def _dataset_class():
    """Build :class:`PairedWindowDataset` on first use, so that importing the store (e.g. in ingest
    workers) does not import torch."""
    global _DATASET_CLASS
    if _DATASET_CLASS is not None:
        return _DATASET_CLASS
    import torch
    import torch.utils.data

    class PairedWindowDataset(torch.utils.data.Dataset):
        """PyTorch Dataset over a :class:`WindowStore` (or a store path).

        Items are dicts: ``imu`` float32 tensor [W, 6] (g, rad/s; normalise at model input), ``video``
        uint8 tensor [K, H, W, 3] (frames mode) or float32 tensor [D] (embeddings mode, stored float16;
        [K, D] with the per-frame embedding layout),
        ``index`` int (store index), ``label`` int (-1 if unlabelled), ``subject`` str.

        Args:
            store: a WindowStore or a path to one.
            indices: store indices this dataset covers (default: all).
            frame_sampling: ``centre`` (default; evaluation) takes, for each of the K slots, the stored
                frame nearest the slot centre; ``jitter`` (training) takes a random one of the J frames
                stored per slot (needs a store ingested with ``--frames-per-slot J`` > 1 to vary).
            seed: base seed for ``jitter`` (each item draws from ``seed``, epoch and index, see
                :meth:`set_epoch`), so runs are reproducible across worker counts.
        """

        def __init__(self, store: Union[WindowStore, PathLike], indices: Optional[Sequence[int]] = None,
                     *, frame_sampling: str = "centre", seed: int = 0):
            self.store = store if isinstance(store, WindowStore) else WindowStore(store)
            n = len(self.store)
            self.indices = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
            if frame_sampling not in ("centre", "jitter"):
                raise UserError(f"frame_sampling must be centre|jitter, got {frame_sampling!r}")
            self.frame_sampling = frame_sampling
            self.seed = int(seed)
            self.epoch = 0
            self.k = int(self.store.meta.get("frames", 0) or 0)
            self.j = int(self.store.meta.get("frames_per_slot", 1) or 1)
            self._labels = self.store.labels
            self._subjects = self.store.manifest["subject"].astype(str).to_numpy()

        def set_epoch(self, epoch: int) -> None:
            """Change the jitter draw per epoch (call from the training loop)."""
            self.epoch = int(epoch)

        def __len__(self) -> int:
            return len(self.indices)

        def _frame_choice(self, index: int) -> np.ndarray:
            """Which of the K*J stored frames to return: one per slot."""
            base = np.arange(self.k) * self.j
            if self.j == 1:
                return base
            if self.frame_sampling == "centre":
                return base + self.j // 2
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            return base + rng.integers(0, self.j, size=self.k)

        def __getitem__(self, i: int) -> Dict[str, Any]:
            index = int(self.indices[i])
            imu = torch.from_numpy(np.array(self.store.imu[index], dtype=np.float32))
            if self.store.video_mode == "frames":
                frames = self.store.video[index]
                if self.j > 1:
                    frames = frames[self._frame_choice(index)]
                video = torch.from_numpy(np.array(frames, copy=True))
            elif self.store.video_mode == "embeddings":
                video = torch.from_numpy(np.array(self.store.video[index], dtype=np.float32))
            else:  # "none": an IMU-only store
                video = torch.zeros(0)
            return {"imu": imu, "video": video, "index": index, "label": int(self._labels[index]),
                    "subject": str(self._subjects[index])}

    PairedWindowDataset.__qualname__ = "PairedWindowDataset"  # picklable as store.PairedWindowDataset
    _DATASET_CLASS = PairedWindowDataset
    return PairedWindowDataset


_DATASET_CLASS = None


def __getattr__(name: str):
    if name == "PairedWindowDataset":
        return _dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
