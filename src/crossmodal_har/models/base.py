"""What every encoder in the registry shares: identity (registry name + resolved config) and freezing."""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Sequence, Tuple, Union

import torch
from torch import nn

from crossmodal_har.errors import ConfigError
from crossmodal_har.signals.text import short_number

log = logging.getLogger(__name__)


class Encoder(nn.Module):
    """Base class of registry encoders.

    Subclasses set ``kind`` ("imu" or "video"), ``embed_dim`` and ``model_cfg`` (the resolved config as
    a plain dict); :func:`crossmodal_har.models.registry.create_model` sets ``model_name``. Together they
    are everything :func:`crossmodal_har.models.encoder_file.save_encoder` needs to rebuild the module.
    """

    kind: str = ""
    embed_dim: int = 0
    # IMU encoders: how many leading canonical columns (acc x,y,z then gyro x,y,z) they read:
    # 6 = accelerometer + gyroscope, 3 = accelerometer only (see select_input_channels)
    input_channels: int = 0

    def __init__(self) -> None:
        super().__init__()
        self.model_name: str = ""
        self.model_cfg: Dict[str, Any] = {}
        self._frozen = False

    @property
    def frozen(self) -> bool:
        return self._frozen

    def freeze(self) -> "Encoder":
        """Freeze for good: no gradients, eval mode, and ``train()`` can no longer leave eval mode.

        A frozen tower must also be left out of the optimiser; ``trainable_parameters`` helps callers.
        """
        for p in self.parameters():
            p.requires_grad_(False)
        self._frozen = True
        super().train(False)
        return self

    def train(self, mode: bool = True) -> "Encoder":
        # A frozen encoder stays in eval mode whatever the training loop asks (dropout off, batch-norm
        # statistics fixed): the anti-pattern is a "frozen" tower reset to train mode every epoch.
        return super().train(False if self._frozen else mode)

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def extra_repr(self) -> str:
        return f"name={self.model_name!r}, kind={self.kind!r}, embed_dim={self.embed_dim}, frozen={self._frozen}"


def select_input_channels(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The leading columns of canonical windows ``x`` [B, W, 6] that ``encoder`` reads.

    Windows keep the 6-column layout (acc in g, gyro in rad/s) everywhere; an accelerometer-only
    encoder (``input_channels`` 3) reads ``x[..., :3]``. Every model-input path calls this
    (:func:`crossmodal_har.models.classifier.encode_windows`, the masked autoencoder), so training,
    evaluation, ONNX export (the slice is in the graph) and prediction agree. A module without
    ``input_channels`` (0) gets ``x`` unchanged.
    """
    n = int(getattr(encoder, "input_channels", 0) or 0)
    if n and x.shape[-1] != n:
        if x.shape[-1] < n:
            raise ValueError(f"{type(encoder).__name__} reads {n} channels, got windows with {x.shape[-1]}")
        x = x[..., :n]
    return x


def check_imu_input(x: torch.Tensor, window: int, channels: int, who: str) -> None:
    """Raise ValueError with a readable message if ``x`` is not [B, window, channels] floating."""
    if x.dim() != 3 or x.shape[1] != window or x.shape[2] != channels:
        raise ValueError(f"{who}: expected IMU windows of shape [B, {window}, {channels}], got {list(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{who}: expected a floating-point tensor, got {x.dtype}")


# Bounds every architecture config obeys (checked in its ``validate``, so before anything is built,
# whether the config comes from code, the command line or a file): far above any model this package
# trains (the paper's largest encoder has ~90 M parameters), far below what would exhaust memory.
MAX_PARAMETERS = 2_000_000_000        # 8 GB of float32 weights
MAX_ACTIVATION_ELEMENTS = 1 << 28     # per input sample of the largest intermediate (1 GiB float32)


def check_sizes(who: str, cfg: Any, limits: Mapping[str, Tuple[int, int]]) -> None:
    """ConfigError unless every field in ``limits`` (an int, or a list of ints) lies in [lo, hi]."""
    for name, (lo, hi) in limits.items():
        value = getattr(cfg, name)
        values: Sequence[Union[int, float]] = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"{who}: {name} = {short_number(v)} is out of range [{lo}, {hi}]")


def check_budget(who: str, parameters: int, activations: int) -> None:
    """ConfigError when an architecture's (approximate, lower-bound) parameter count or largest
    per-sample intermediate exceeds :data:`MAX_PARAMETERS` / :data:`MAX_ACTIVATION_ELEMENTS`."""
    if parameters > MAX_PARAMETERS:
        raise ConfigError(f"{who}: about {short_number(parameters)} parameters, more than the {short_number(MAX_PARAMETERS)} "
                          "this package builds")
    if activations > MAX_ACTIVATION_ELEMENTS:
        raise ConfigError(f"{who}: an intermediate of about {short_number(activations)} values per sample, more than "
                          f"{short_number(MAX_ACTIVATION_ELEMENTS)}")


def check_fractions(who: str, cfg: Any, names: Sequence[str]) -> None:
    """ConfigError unless each named float field is in [0, 1) (dropout probabilities)."""
    for name in names:
        v = getattr(cfg, name)
        if not 0.0 <= v < 1.0:
            raise ConfigError(f"{who}: {name} = {short_number(v)} must be in [0, 1)")
