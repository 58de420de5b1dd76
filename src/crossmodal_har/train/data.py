"""What the pretraining engine reads: a generic paired dataset, split by subject.

The engine only needs a ``torch.utils.data.Dataset`` whose items are dicts
``{"imu": float32 [W, 6] (g, rad/s), "video": uint8 [K, H, W, 3] frames or float32 [D] embedding,
"index": int, "label": int (-1 = none), "subject": str}``. A *data source* is a small picklable
object with ``load() -> PairedData``; each DDP process calls it itself (memory-mapped stores are
opened per process instead of being pickled across).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from crossmodal_har.errors import UserError
from crossmodal_har.pairs.store import PairedWindowDataset, WindowStore
from crossmodal_har.signals.types import CHANNEL_SETS
from crossmodal_har.splits import SplitConfig, subject_split

log = logging.getLogger(__name__)


@dataclass
class PairedData:
    """Datasets of one run plus what the models need to know about them.

    Attributes:
        train, val, test: datasets (val/test may be None when there are too few subjects).
        video_kind: ``embeddings`` ([D] vectors), ``frames`` ([K, H, W, 3] uint8) or ``none``
            (an IMU-only store: only ``imu-mae`` can use it).
        video_dim: D for embeddings, else None.
        num_frames: K for frames, and for per-frame embeddings ([K, D] per window); else None.
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


@dataclass
class StoreSource:
    """Reads a window store (``crossmodal_har.pairs.store``) and splits it by subject."""

    path: str
    split: SplitConfig

    def load(self) -> PairedData:
        store = WindowStore(self.path)
        if len(store) == 0:
            raise UserError(f"{self.path}: the store has no windows")
        # pretraining needs no labels; with too few subjects val/test stay empty
        parts = subject_split(store.subjects(), self.split, allow_fewer=True).subjects
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
            video_dim=int(video_shape[-1]) if kind == "embeddings" else None,
            # K frames: a frames store, or per-frame embeddings [N, K, D] (a temporal head reads them)
            num_frames=(int(store.meta.get("frames", 0) or 0) or None if kind == "frames"
                        else int(video_shape[1]) if kind == "embeddings" and len(video_shape) == 3 else None),
            preprocess=store.preprocess, split=parts,
            meta={"store": os.fspath(Path(self.path).resolve()), "video_mode": store.video_mode,
                  "video_encoder": store.meta.get("video_encoder"), "class_names": store.class_names,
                  "num_windows": len(store), "shuffle_train_pairs": shuffled},
        )


@dataclass
class ChannelSource:
    """Another data source whose models read ``channels`` (``acc`` | ``acc+gyro``): its
    ``preprocess.channels`` is replaced, so the IMU tower is built for 3 or 6 input channels and the
    saved encoder declares them. The windows keep their 6 columns; an ``acc`` model never reads the
    gyroscope ones. A source of accelerometer-only windows (``preprocess.channels`` ``acc``: its
    gyroscope columns hold no data) cannot train an ``acc+gyro`` model."""

    source: Any
    channels: str

    def load(self) -> PairedData:
        if self.channels not in CHANNEL_SETS:
            raise UserError(f"channels must be acc or acc+gyro, got {self.channels!r}")
        data = self.source.load()
        have = data.preprocess.channels
        if have == "acc" and self.channels != "acc":
            where = data.meta.get("store") or type(self.source).__name__
            raise UserError(f"{where}: accelerometer-only windows (no gyroscope); use --channels acc")
        if have != self.channels:
            data.preprocess = dataclasses.replace(data.preprocess, channels=self.channels)
            log.info("IMU tower reads %s (%d channels)", self.channels, data.preprocess.n_channels)
        return data


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
        j = int(self.indices[i])
        v = self.video[j]
        video = torch.from_numpy(np.array(v, dtype=np.uint8 if v.dtype == np.uint8 else np.float32))
        return {"imu": torch.from_numpy(np.array(self.imu[j], dtype=np.float32)), "video": video,
                "index": j, "label": int(self.labels[j]), "subject": str(self.subjects[j])}

