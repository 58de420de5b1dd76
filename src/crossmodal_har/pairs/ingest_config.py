"""What decides the content of a window store: :class:`IngestConfig`, and the shard size it implies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Literal, Optional

from crossmodal_har.errors import ConfigError
from crossmodal_har.signals.types import PreprocessConfig


@dataclass
class IngestConfig:
    """Everything that decides the content of a store (saved in the ledger and ``store.json``).

    Attributes:
        layout: ``paired`` | ``ego4d`` | ``gopro``.
        video_mode: ``frames`` (uint8 frames stored), ``embeddings`` (float16 vectors from a
            frozen ``video_encoder``) or ``none`` (IMU windows only; videos are not read).
        video_encoder: registry name of the video encoder (embeddings mode).
        video_encoder_weights: local directory or hub id of pretrained weights (embeddings mode).
        embedding_layout: embeddings mode: ``pooled`` (one [D] vector per window, the encoder's
            output) or ``frames`` (per-frame features [K, D], for a trainable temporal head at
            pretraining; needs a frame encoder such as ``efficientnet-lite0``).
        frames: K frames per window (slots).
        frames_per_slot: J frames stored per slot (J > 1 lets training jitter; frames mode only).
        size: frame side in pixels after resize + centre crop.
        shard_size: most windows per shard (a session longer than this gets several shards);
            0 = automatic (about 256 MiB of frames per shard, see :func:`effective_shard_size`).
        num_shards, shard_index: this machine's share of the sessions (split by a hash of the name).
        min_imu_coverage: a session whose IMU overlaps less than this fraction of its video is an error.
        source: layout options (ego4d paths, IMU offset; the paired layout's imu_site), as given.
        preprocess: the IMU preprocessing (signal layer).
    """

    layout: Literal["paired", "ego4d", "gopro"] = "paired"
    video_mode: Literal["frames", "embeddings", "none"] = "frames"
    video_encoder: Optional[str] = None
    video_encoder_weights: Optional[str] = None
    embedding_layout: Literal["pooled", "frames"] = "pooled"
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
        if self.frames < 1 or self.frames_per_slot < 1 or self.size < 8:
            raise ConfigError("frames and frames_per_slot must be >= 1 and size >= 8")
        if self.video_mode == "embeddings":
            if not self.video_encoder:
                raise ConfigError("--video-mode embeddings needs --video-encoder NAME")
            if self.frames_per_slot != 1:
                raise ConfigError("--frames-per-slot applies to --video-mode frames only")
        elif self.video_encoder or self.video_encoder_weights:
            raise ConfigError("--video-encoder applies to --video-mode embeddings only")
        if self.embedding_layout not in ("pooled", "frames"):
            raise ConfigError(f"--embedding-layout must be pooled|frames, got {self.embedding_layout!r}")
        if self.embedding_layout != "pooled" and self.video_mode != "embeddings":
            raise ConfigError("--embedding-layout applies to --video-mode embeddings only")
        if self.shard_size < 0:
            raise ConfigError("--shard-size must be >= 1 (or 0 = automatic)")
        if not (self.num_shards >= 1 and 0 <= self.shard_index < self.num_shards):
            raise ConfigError(f"--shard-index must be in [0, {self.num_shards}), got {self.shard_index}")
        if not 0.0 <= self.min_imu_coverage <= 1.0:
            raise ConfigError("min_imu_coverage must be in [0, 1]")


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
