"""What the pretraining engine reads: a generic paired dataset, split by subject.

The engine only needs a ``torch.utils.data.Dataset`` whose items are dicts
``{"imu": float32 [W, 6] (g, rad/s), "video": uint8 [K, H, W, 3] frames or float32 [D] embedding,
"index": int, "label": int (-1 = none), "subject": str}``. A *data source* is a small picklable
object with ``load() -> PairedData``; each DDP process calls it itself (memory-mapped stores are
opened per process instead of being pickled across).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from crossmodal_har.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class PairedData:
    """Datasets of one run plus what the models need to know about them.

    Attributes:
        train, val, test: datasets (val/test may be None when there are too few subjects).
        video_kind: ``embeddings`` ([D] vectors), ``frames`` ([K, H, W, 3] uint8) or ``none``
            (an IMU-only store: only ``imu-mae`` can use it).
        video_dim: D for embeddings, else None.
        num_frames: K for frames, else None.
        preprocess: the ``PreprocessConfig`` the IMU windows were made with.
        split: ``{"train": [...], "val": [...], "test": [...]}`` subject ids.
        meta: free-form provenance (store path, store video encoder, class names ...).
    """

    train: Any
    val: Any
    test: Any
    video_kind: str
    video_dim: Optional[int]
    num_frames: Optional[int]
    preprocess: Any
    split: Dict[str, List[str]]
    meta: Dict[str, Any] = field(default_factory=dict)


def split_subjects(subjects: Sequence[str], cfg: Any) -> Dict[str, List[str]]:
    """Subject-disjoint train/val/test split (see ``SplitConfig``); deterministic given ``cfg.seed``."""
    subjects = sorted(set(map(str, subjects)))
    unknown = (set(cfg.val_subjects) | set(cfg.test_subjects)) - set(subjects)
    if unknown:
        raise UserError(f"split: subjects not in the data: {sorted(unknown)}; available: {subjects}")
    test = [s for s in subjects if s in set(cfg.test_subjects)]
    val = [s for s in subjects if s in set(cfg.val_subjects)]
    rest = [s for s in subjects if s not in set(test) | set(val)]
    rng = np.random.default_rng(cfg.seed)
    order = [rest[i] for i in rng.permutation(len(rest))]
    n = len(subjects)
    if not cfg.test_subjects and cfg.test_fraction > 0 and n >= 3:
        k = max(1, int(math.floor(cfg.test_fraction * n + 0.5)))
        test, order = sorted(order[:k]), order[k:]
    if not cfg.val_subjects and cfg.val_fraction > 0 and n >= 2 and len(order) >= 2:
        k = max(1, int(math.floor(cfg.val_fraction * n + 0.5)))
        k = min(k, len(order) - 1)
        val, order = sorted(order[:k]), order[k:]
    train = sorted(order)
    if not train:
        raise UserError(f"split leaves no training subjects (subjects: {subjects})")
    return {"train": train, "val": val, "test": test}


@dataclass
class StoreSource:
    """Reads a window store (``crossmodal_har.pairs.store``) and splits it by subject."""

    path: str
    split: Any  # SplitConfig

    def load(self) -> PairedData:
        from crossmodal_har.pairs.store import PairedWindowDataset, WindowStore

        store = WindowStore(self.path)
        if len(store) == 0:
            raise UserError(f"{self.path}: the store has no windows")
        parts = split_subjects(store.subjects(), self.split)
        seed = int(getattr(self.split, "seed", 0))

        def ds(names: List[str], sampling: str):
            if not names:
                return None
            return PairedWindowDataset(store, store.indices_for(subjects=names), frame_sampling=sampling, seed=seed)

        kind = {"frames": "frames", "embeddings": "embeddings"}.get(store.video_mode, "none")
        video_shape = store.video.shape if kind != "none" else (len(store), 0)
        train = ds(parts["train"], "jitter")
        shuffled = bool(getattr(self.split, "shuffle_train_pairs", False))
        if shuffled:
            if kind == "none":
                raise UserError(f"{self.path}: split.shuffle_train_pairs needs a store with video")
            train = ShuffledPairs(train, seed)
            log.warning("split.shuffle_train_pairs: training videos permuted across windows (control run)")
        return PairedData(
            train=train, val=ds(parts["val"], "centre"), test=ds(parts["test"], "centre"),
            video_kind=kind,
            video_dim=int(video_shape[1]) if kind == "embeddings" else None,
            num_frames=int(store.meta.get("frames", 0) or 0) or None if kind == "frames" else None,
            preprocess=store.preprocess, split=parts,
            meta={"store": os.fspath(Path(self.path).resolve()), "video_mode": store.video_mode,
                  "video_encoder": store.meta.get("video_encoder"), "class_names": store.class_names,
                  "num_windows": len(store), "shuffle_train_pairs": shuffled},
        )


def derangement(n: int, seed: int) -> np.ndarray:
    """A random permutation of ``range(n)`` with no fixed point (Sattolo's algorithm: one n-cycle)."""
    rng = np.random.default_rng(seed)
    perm = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]
    return perm


class ShuffledPairs:
    """A paired dataset whose item ``i`` keeps its IMU window, index, label and subject but takes the
    video of item ``perm[i]`` (``derangement(len(dataset), seed)``): the control for "does the model
    learn the pairing?". Fixed for the whole run, so resuming and every DDP rank see the same pairs."""

    def __init__(self, dataset: Any, seed: int = 0):
        if len(dataset) < 2:
            raise UserError("shuffling pairs needs at least 2 training windows")
        self.dataset = dataset
        self.perm = derangement(len(dataset), seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        item = dict(self.dataset[i])
        item["video"] = self.dataset[int(self.perm[i])]["video"]
        return item


class ArrayPairs:
    """In-memory paired dataset (tests, synthetic data): same item dicts as the store's dataset."""

    def __init__(self, imu: np.ndarray, video: np.ndarray, labels: np.ndarray, subjects: np.ndarray,
                 indices: Optional[np.ndarray] = None):
        self.imu = imu
        self.video = video
        self.labels = labels
        self.subjects = subjects
        self.indices = np.arange(len(imu)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        import torch

        j = int(self.indices[i])
        v = self.video[j]
        video = torch.from_numpy(np.array(v, dtype=np.uint8 if v.dtype == np.uint8 else np.float32))
        return {"imu": torch.from_numpy(np.array(self.imu[j], dtype=np.float32)), "video": video,
                "index": j, "label": int(self.labels[j]), "subject": str(self.subjects[j])}


def as_source(data: Union["PairedData", Any]) -> Any:
    """Wrap an already-loaded PairedData as a source (single-process use)."""
    if isinstance(data, PairedData):
        return _Loaded(data)
    return data


@dataclass
class _Loaded:
    data: PairedData

    def load(self) -> PairedData:
        return self.data
