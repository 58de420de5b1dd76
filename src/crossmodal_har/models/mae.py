"""IMU-only masked patch reconstruction (the ``imu-mae`` baseline) on the PatchTST encoder.

:class:`ImuMaskedAutoencoder` wraps transformers' ``PatchTSTForPretraining`` (random patch masking,
ratio 0.4 by default, MSE on the masked patches) but its transformer *is* the IMU encoder's: the
pretraining model's ``model.encoder`` and ``model.scaler`` are the very modules of
``encoder.backbone``. After pretraining, ``mae.encoder`` is an ordinary ``patchtst*`` encoder that
:func:`crossmodal_har.models.artefacts.save_encoder` saves and ``load_encoder`` rebuilds; only the small
reconstruction head (d_model → patch_length) is left behind.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from torch import nn

from crossmodal_har.errors import ConfigError
from crossmodal_har.models.base import check_imu_input
from crossmodal_har.models.imu_patchtst import PatchTSTEncoder
from crossmodal_har.models.registry import create_model

log = logging.getLogger(__name__)


class ImuMaskedAutoencoder(nn.Module):
    """``forward(x [B, W, 6]) -> loss`` (mean squared error over masked patches).

    Args:
        encoder: a PatchTST encoder from ``create_model("patchtst…")``; trained in place.
        mask_ratio: fraction of patches masked per channel (0.4 as in the paper's baseline).
        channel_consistent_masking: mask the same patches in all channels.
        head_dropout: dropout before the reconstruction head.
    """

    def __init__(
        self,
        encoder: PatchTSTEncoder,
        mask_ratio: float = 0.4,
        channel_consistent_masking: bool = False,
        head_dropout: float = 0.0,
    ):
        super().__init__()
        from transformers import PatchTSTConfig, PatchTSTForPretraining

        if not isinstance(encoder, PatchTSTEncoder):
            raise ConfigError(f"imu-mae needs a PatchTST encoder (patchtst*), got {type(encoder).__name__}")
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"imu-mae: mask_ratio must be in (0, 1), got {mask_ratio}")
        n_keep = int(encoder.cfg.num_patches * (1 - mask_ratio))
        if n_keep >= encoder.cfg.num_patches:
            raise ConfigError(
                f"imu-mae: mask_ratio {mask_ratio} masks no patch out of {encoder.cfg.num_patches}"
            )
        hf_cfg = PatchTSTConfig(
            **encoder.cfg.hf_kwargs(),
            do_mask_input=True,
            mask_type="random",
            random_mask_ratio=float(mask_ratio),
            channel_consistent_masking=channel_consistent_masking,
            head_dropout=head_dropout,
        )
        pretrain = PatchTSTForPretraining(hf_cfg)
        # Share the encoder's modules (its weights are what we train and save); the freshly built
        # duplicates are dropped before any training.
        pretrain.model.encoder = encoder.backbone.encoder
        pretrain.model.scaler = encoder.backbone.scaler
        self.encoder = encoder
        self.pretrain = pretrain
        self.mask_ratio = float(mask_ratio)

    def forward(self, x: torch.Tensor, return_outputs: bool = False) -> Any:
        check_imu_input(x, self.encoder.cfg.context_length, self.encoder.cfg.num_input_channels, "imu-mae")
        out = self.pretrain(past_values=x, return_dict=True)
        return out if return_outputs else out.loss

    @classmethod
    def from_name(cls, name: str = "patchtst", *, pretrained: Optional[str] = None, allow_download: bool = False,
                  mask_ratio: float = 0.4, **overrides: Any) -> "ImuMaskedAutoencoder":
        """Build the encoder from the registry, then wrap it."""
        return cls(create_model(name, pretrained=pretrained, allow_download=allow_download, **overrides),
                   mask_ratio=mask_ratio)
