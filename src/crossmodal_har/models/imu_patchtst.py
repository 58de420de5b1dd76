"""PatchTST IMU encoder (the paper's): transformers ``PatchTSTModel`` with a CLS token per channel.

A window [B, W, 6] is cut into non-overlapping patches per channel (patch 16, stride 16: 15 patches for
W = 250, the first W - 240 = 10 samples are dropped by PatchTST's right-aligned patching), each channel
is encoded independently with shared weights, and the embedding is the six channels' CLS tokens
flattened: 6 × d_model (768 with the paper's d_model = 128).

Deviation from transformers' default, on purpose: ``scaling`` is ``None`` (no internal per-window
standardisation). The caller applies ``normalize_windows`` with the run's ``normalization`` mode; with
``zscore`` (per window) PatchTST's ``std`` scaler would be a no-op anyway, and with ``none`` it would
silently throw away gravity (posture) information the user asked to keep.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, Literal, Optional

import torch

from crossmodal_har.config import from_dict, to_dict
from crossmodal_har.errors import ConfigError
from crossmodal_har.models.base import Encoder, check_budget, check_fractions, check_imu_input, check_sizes
from crossmodal_har.models.registry import hf_from_pretrained, register_model

log = logging.getLogger(__name__)


@dataclass
class PatchTSTEncoderConfig:
    """Architecture of the PatchTST IMU encoder (field names follow transformers' ``PatchTSTConfig``).

    Attributes:
        num_input_channels: IMU channels read: the leading canonical columns (6: acc x,y,z in g,
            gyro x,y,z in rad/s; 3: accelerometer only).
        context_length: window length W in samples (250 = 5 s at 50 Hz).
        patch_length: samples per patch.
        patch_stride: step between patches, samples.
        pooling: ``cls`` (paper: the CLS tokens of all channels, flattened) or ``mean`` (mean over
            patches per channel, flattened).
    """

    num_input_channels: int = 6
    context_length: int = 250
    patch_length: int = 16
    patch_stride: int = 16
    d_model: int = 128
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    ffn_dim: int = 512
    norm_type: Literal["batchnorm", "layernorm"] = "batchnorm"
    attention_dropout: float = 0.0
    positional_dropout: float = 0.0
    path_dropout: float = 0.0
    ff_dropout: float = 0.0
    activation_function: Literal["gelu", "relu"] = "gelu"
    pre_norm: bool = True
    positional_encoding_type: Literal["sincos", "random"] = "sincos"
    share_embedding: bool = True
    channel_attention: bool = False
    use_cls_token: bool = True
    pooling: Literal["cls", "mean"] = "cls"
    scaling: Optional[Literal["std", "mean"]] = None
    init_std: float = 0.02

    def validate(self) -> None:
        check_sizes("patchtst", self, {
            "num_input_channels": (1, 64), "context_length": (2, 100_000), "patch_length": (1, 4096),
            "patch_stride": (1, 4096), "d_model": (1, 8192), "num_hidden_layers": (1, 128),
            "num_attention_heads": (1, 256), "ffn_dim": (1, 65_536)})
        check_fractions("patchtst", self, ("attention_dropout", "positional_dropout", "path_dropout", "ff_dropout"))
        if not (math.isfinite(self.init_std) and self.init_std >= 0):
            raise ConfigError("patchtst: init_std must be a finite number >= 0")
        if self.context_length <= self.patch_length:
            raise ConfigError(
                f"patchtst: context_length ({self.context_length}) must exceed patch_length ({self.patch_length})"
            )
        if self.d_model % self.num_attention_heads:
            raise ConfigError(
                f"patchtst: d_model ({self.d_model}) must be divisible by num_attention_heads ({self.num_attention_heads})"
            )
        if self.pooling == "cls" and not self.use_cls_token:
            raise ConfigError("patchtst: pooling 'cls' needs use_cls_token: true")
        p = self.num_patches + 1
        check_budget("patchtst", self.approx_parameters(),
                     self.num_input_channels * max(self.num_attention_heads * p * p, p * self.ffn_dim))

    def approx_parameters(self) -> int:
        """A lower bound of the parameter count (weight matrices only): what a weights file must hold."""
        d = self.d_model
        return self.num_hidden_layers * (4 * d * d + 2 * d * self.ffn_dim) + self.patch_length * d

    @property
    def input_channels(self) -> int:
        """Leading canonical columns read (3 = accelerometer only, 6 = with the gyroscope)."""
        return self.num_input_channels

    def channel_overrides(self, n_channels: int) -> Dict[str, Any]:
        """The fields that make this architecture read ``n_channels`` input channels."""
        return {"num_input_channels": int(n_channels)}

    @property
    def num_patches(self) -> int:
        return (self.context_length - self.patch_length) // self.patch_stride + 1

    @property
    def embed_dim(self) -> int:
        return self.num_input_channels * self.d_model

    def hf_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for transformers' ``PatchTSTConfig``."""
        kw = to_dict(self)
        kw.pop("pooling")
        return kw


class PatchTSTEncoder(Encoder):
    """``forward(x [B, W, C]) -> [B, C * d_model]``; input already normalised by the caller."""

    kind = "imu"

    def __init__(self, cfg: PatchTSTEncoderConfig, backbone: Optional[torch.nn.Module] = None):
        super().__init__()
        from transformers import PatchTSTConfig, PatchTSTModel

        self.cfg = cfg
        self.model_cfg = to_dict(cfg)
        self.embed_dim = cfg.embed_dim
        self.window = cfg.context_length
        self.input_channels = cfg.num_input_channels
        if backbone is None:
            backbone = PatchTSTModel(PatchTSTConfig(**cfg.hf_kwargs(), do_mask_input=False))
        self.backbone = backbone

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, W, C] -> [B, C, P, patch_length], as PatchTST's patchifier (right-aligned: the first
        W - (patch_length + stride × (P - 1)) samples are dropped). Written with reshape (or an index
        gather for overlapping patches) because transformers' ``unfold`` exports to a wrong ONNX graph."""
        cfg = self.cfg
        p = cfg.num_patches
        start = cfg.context_length - (cfg.patch_length + cfg.patch_stride * (p - 1))
        x = x[:, start:, :].transpose(1, 2)  # [B, C, W']
        if cfg.patch_stride == cfg.patch_length:
            return x.reshape(x.shape[0], x.shape[1], p, cfg.patch_length)
        # overlapping patches: index gather (Tensor.unfold exports to a wrong ONNX graph)
        idx = (torch.arange(p, device=x.device) * cfg.patch_stride)[:, None] + torch.arange(
            cfg.patch_length, device=x.device)[None, :]
        return x[:, :, idx]

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden states [B, C, P (+1 with CLS first), d_model] — what ``PatchTSTModel`` returns."""
        bb = self.backbone
        if self.cfg.scaling is not None:
            x, _, _ = bb.scaler(x, torch.ones_like(x))
        return bb.encoder(patch_input=self.patchify(x)).last_hidden_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_imu_input(x, self.cfg.context_length, self.cfg.num_input_channels, "patchtst")
        hidden = self.hidden_states(x)  # [B, C, P(+1), d]
        if self.cfg.pooling == "cls":
            pooled = hidden[:, :, 0, :]
        else:
            start = 1 if self.cfg.use_cls_token else 0
            pooled = hidden[:, :, start:, :].mean(dim=2)
        return pooled.flatten(1)


def build_patchtst(config: Dict[str, Any], *, pretrained: Optional[str] = None, allow_download: bool = False):
    """Builder for ``patchtst*`` names (see :func:`crossmodal_har.models.registry.create_model`)."""
    cfg = from_dict(PatchTSTEncoderConfig, config, where="model config (patchtst)")
    backbone = None
    if pretrained is not None:
        from transformers import PatchTSTModel

        # Our architecture fields override the checkpoint's (the paper loads the ETTh1 PatchTST with
        # use_cls_token and 6 channels); weights whose shapes then disagree make loading fail loudly.
        backbone = hf_from_pretrained(PatchTSTModel, pretrained, allow_download, **cfg.hf_kwargs(), do_mask_input=False)
    return PatchTSTEncoder(cfg, backbone=backbone)


for _name in ("patchtst", "patchtst-small", "patchtst-tiny"):
    register_model(_name, kind="imu", config=PatchTSTEncoderConfig)(build_patchtst)
