"""What every encoder in the registry shares: identity (registry name + resolved config) and freezing."""

from __future__ import annotations

import logging
from typing import Any, Dict

import torch
from torch import nn

log = logging.getLogger(__name__)


class Encoder(nn.Module):
    """Base class of registry encoders.

    Subclasses set ``kind`` ("imu" or "video"), ``embed_dim`` and ``model_cfg`` (the resolved config as
    a plain dict); :func:`crossmodal_har.models.registry.create_model` sets ``model_name``. Together they
    are everything :func:`crossmodal_har.models.artefacts.save_encoder` needs to rebuild the module.
    """

    kind: str = ""
    embed_dim: int = 0

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


def check_imu_input(x: torch.Tensor, window: int, channels: int, who: str) -> None:
    """Raise ValueError with a readable message if ``x`` is not [B, window, channels] floating."""
    if x.dim() != 3 or x.shape[1] != window or x.shape[2] != channels:
        raise ValueError(f"{who}: expected IMU windows of shape [B, {window}, {channels}], got {list(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{who}: expected a floating-point tensor, got {x.dtype}")
