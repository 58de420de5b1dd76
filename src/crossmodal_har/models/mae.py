"""IMU-only masked patch reconstruction (the ``imu-mae`` baseline) on the PatchTST encoder.

:class:`ImuMaskedAutoencoder` wraps transformers' ``PatchTSTForPretraining`` (random patch masking,
ratio 0.4 by default, MSE on the masked patches) but its transformer *is* the IMU encoder's: the
pretraining model's ``model.encoder`` and ``model.scaler`` are the very modules of
``encoder.backbone``. After pretraining, ``mae.encoder`` is an ordinary ``patchtst*`` encoder that
:func:`crossmodal_har.models.encoder_file.save_encoder` saves and ``load_encoder`` rebuilds; only the small
reconstruction head (d_model → patch_length) is left behind.

Masked patches (``mask_fill``): ``token`` replaces a masked patch's *embedding* with a learned
``mask_token`` [d_model] before the positional encoding (as MAE/BERT; the encoder then cannot mistake a
masked patch for a real signal of value 0, which under ``normalization: none`` is gyro at rest);
``zero`` is transformers' own masking (the patch's values set to 0 before the patch embedding), the
behaviour of runs made before the option. The token acts only inside this module's forward (hooks
gated by a flag), so the shared encoder is untouched downstream; it is not part of the exported encoder.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from torch import nn

from crossmodal_har.errors import ConfigError
from crossmodal_har.models.base import check_imu_input, select_input_channels
from crossmodal_har.models.imu_patchtst import PatchTSTEncoder
from crossmodal_har.models.registry import create_model

log = logging.getLogger(__name__)


class ImuMaskedAutoencoder(nn.Module):
    """``forward(x [B, W, 6]) -> loss`` (mean squared error over masked patches); an accelerometer-only
    encoder (``num_input_channels`` 3) reconstructs ``x[..., :3]`` only.

    Args:
        encoder: a PatchTST encoder from ``create_model("patchtst…")``; trained in place.
        mask_ratio: fraction of patches masked per channel (0.4 as in the paper's baseline).
        channel_consistent_masking: mask the same patches in all channels.
        head_dropout: dropout before the reconstruction head.
        mask_fill: ``token`` (learned mask embedding) or ``zero`` (values 0; see the module docstring).
    """

    def __init__(
        self,
        encoder: PatchTSTEncoder,
        mask_ratio: float = 0.4,
        channel_consistent_masking: bool = False,
        head_dropout: float = 0.0,
        mask_fill: str = "token",
    ):
        super().__init__()
        from transformers import PatchTSTConfig, PatchTSTForPretraining

        if not isinstance(encoder, PatchTSTEncoder):
            raise ConfigError(f"imu-mae needs a PatchTST encoder (patchtst*), got {type(encoder).__name__}")
        if mask_fill not in ("token", "zero"):
            raise ConfigError(f"imu-mae: mask_fill must be token or zero, got {mask_fill!r}")
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
        self.mask_fill = mask_fill
        self._mask: Optional[torch.Tensor] = None
        self._active = False
        if mask_fill == "token":
            self.mask_token = nn.Parameter(torch.zeros(encoder.cfg.d_model))
            nn.init.normal_(self.mask_token, std=0.02)  # as MAE's mask token
            pretrain.model.masking.register_forward_hook(self._keep_mask)
            pretrain.model.encoder.embedder.register_forward_hook(self._fill_masked)
        else:
            self.mask_token = None

    def _keep_mask(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self._active:
            self._mask = output[1]  # [B, C, num_patches] bool

    def _fill_masked(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> Optional[torch.Tensor]:
        """Patch embeddings [B, C, num_patches, d_model] with the masked ones replaced by the token."""
        if not self._active or self._mask is None:
            return None
        mask = self._mask.unsqueeze(-1)
        if mask.shape[:3] != output.shape[:3]:
            raise ValueError(f"imu-mae: mask {list(self._mask.shape)} does not match the patch embeddings "
                             f"{list(output.shape)}")
        return torch.where(mask, self.mask_token.to(output.dtype), output)

    def forward(self, x: torch.Tensor, return_outputs: bool = False) -> Any:
        x = select_input_channels(self.encoder, x)
        check_imu_input(x, self.encoder.cfg.context_length, self.encoder.cfg.num_input_channels, "imu-mae")
        self._active, self._mask = self.mask_token is not None, None
        try:
            out = self.pretrain(past_values=x, return_dict=True)
        finally:
            self._active, self._mask = False, None
        return out if return_outputs else out.loss

    @classmethod
    def from_name(cls, name: str = "patchtst", *, pretrained: Optional[str] = None, allow_download: bool = False,
                  mask_ratio: float = 0.4, mask_fill: str = "token", **overrides: Any) -> "ImuMaskedAutoencoder":
        """Build the encoder from the registry, then wrap it."""
        return cls(create_model(name, pretrained=pretrained, allow_download=allow_download, **overrides),
                   mask_ratio=mask_ratio, mask_fill=mask_fill)
