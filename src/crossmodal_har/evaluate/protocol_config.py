"""Hyper-parameters of the evaluation protocols (:mod:`crossmodal_har.evaluate.protocols`).

:class:`FinetuneConfig` (end-to-end training: ``supervised`` and ``finetune``), :class:`ProbeConfig`
(``linear-probe``), :class:`KnnConfig` (``knn``), and :class:`FitConfig`, which holds one of each
plus the device. Saved in ``results.json`` / ``bundle.json`` as plain dicts (field names only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from crossmodal_har.errors import ConfigError


@dataclass
class FinetuneConfig:
    """End-to-end training (``supervised`` and ``finetune``).

    Attributes:
        epochs: maximum epochs; an epoch is one pass over the training windows, but at least
            ``min_steps_per_epoch`` optimiser steps (few-shot sets are tiny).
        batch_size: windows per step (capped at the training-set size).
        lr: learning rate of the head (and of the whole model for ``supervised``).
        backbone_lr: encoder learning rate for ``finetune`` (``None`` = lr / 10).
        weight_decay: AdamW weight decay.
        patience: stop after this many epochs without a better validation score.
        warmup_epochs: linear learning-rate warm-up, then cosine decay to 0 at ``epochs``.
        class_weighted: weight the loss by inverse class frequency (balanced accuracy is the target).
        augment: light augmentation in physical units: per-window gain per sensor (1 ± scale_range)
            and Gaussian jitter of ``jitter`` × the window's per-channel std.
        label_smoothing: cross-entropy label smoothing.
        grad_clip: max gradient norm (0 = off).
        init_head_from_probe: ``finetune`` only: initialise the head from a linear probe on the
            frozen starting encoder (LP-FT) instead of at random.
    """

    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    backbone_lr: Optional[float] = None
    weight_decay: float = 1e-2
    patience: int = 5
    warmup_epochs: int = 1
    min_steps_per_epoch: int = 10
    class_weighted: bool = True
    augment: bool = True
    scale_range: float = 0.1
    jitter: float = 0.05
    label_smoothing: float = 0.0
    grad_clip: float = 1.0
    init_head_from_probe: bool = True

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1 or self.min_steps_per_epoch < 1:
            raise ConfigError("epochs, batch_size, patience and min_steps_per_epoch must be >= 1")
        if not self.lr > 0 or (self.backbone_lr is not None and not self.backbone_lr >= 0):
            raise ConfigError("learning rates must be > 0")
        if self.warmup_epochs < 0 or self.weight_decay < 0 or self.scale_range < 0 or self.jitter < 0:
            raise ConfigError("warmup_epochs, weight_decay, scale_range and jitter must be >= 0")


@dataclass
class ProbeConfig:
    """Linear head on frozen, standardised embeddings (multinomial logistic regression by AdamW).

    Attributes:
        steps: maximum full-batch optimiser steps.
        lr: learning rate.
        weight_decay: L2 penalty (AdamW decoupled weight decay).
        eval_every: steps between validation checks.
        patience: checks without improvement before stopping.
        class_weighted: inverse-frequency class weights in the loss.
    """

    steps: int = 500
    lr: float = 1e-2
    weight_decay: float = 1e-3
    eval_every: int = 10
    patience: int = 10
    class_weighted: bool = True

    def validate(self) -> None:
        if self.steps < 1 or self.eval_every < 1 or self.patience < 1 or not self.lr > 0:
            raise ConfigError("linear_probe: steps, eval_every, patience >= 1 and lr > 0 required")


@dataclass
class KnnConfig:
    """Cosine kNN: ``k`` neighbours (capped at the training-set size), votes weighted by
    ``exp(similarity / temperature)``."""

    k: int = 10
    temperature: float = 0.1

    def validate(self) -> None:
        if self.k < 1 or not self.temperature > 0:
            raise ConfigError("knn: k >= 1 and temperature > 0 required")


@dataclass
class FitConfig:
    """Everything :func:`fit_protocol` needs besides data. ``device``: ``cpu``, ``cuda`` or ``auto``."""

    supervised: FinetuneConfig = field(default_factory=FinetuneConfig)
    # backbone_lr None = lr / 10 (1e-4 at the default lr): a partial ``fit.finetune`` section or
    # ``--lr`` keeps that rule (config.from_dict fills missing keys from this default)
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(lr=1e-3))
    linear_probe: ProbeConfig = field(default_factory=ProbeConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    device: str = "cpu"
    eval_batch_size: int = 256

    def validate(self) -> None:
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")
        if self.eval_batch_size < 1:
            raise ConfigError("eval_batch_size must be >= 1")
