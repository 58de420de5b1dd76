"""CLIP image tower as a video encoder (the IMU2CLIP baseline).

transformers ``CLIPVisionModelWithProjection`` (ViT-B/32 at scale) applied to the middle frame of
the clip (``frame_pooling: middle``), or to the first, middle and last frames with their projected
embeddings averaged (``mean3``); CLIP's own pixel mean/std. For the baseline the tower is kept truly
frozen: call :meth:`freeze` (no gradients, eval mode that ``train()`` cannot undo, forward under
``no_grad``) and leave its parameters out of the optimiser.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, Literal, Optional

import torch

from crossmodal_har.config import from_dict, to_dict
from crossmodal_har.errors import ConfigError
from crossmodal_har.models.base import Encoder, check_budget, check_fractions, check_sizes
from crossmodal_har.models.registry import hf_from_pretrained, register_model
from crossmodal_har.models.video_common import CLIP_MEAN, CLIP_STD, check_frames, frame_indices, to_pixel_values

log = logging.getLogger(__name__)

_HF_FIELDS = (
    "image_size", "patch_size", "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
    "num_attention_heads", "hidden_act", "layer_norm_eps", "attention_dropout", "initializer_range",
    "initializer_factor",
)


@dataclass
class ClipEncoderConfig:
    """Architecture (vision fields follow transformers' ``CLIPVisionConfig``).

    Attributes:
        num_frames: frames per clip the encoder is fed (clips from the window store); any K >= 1 works.
        frame_pooling: ``middle`` (frame K // 2) or ``mean3`` (mean embedding of first, middle, last).
    """

    image_size: int = 224
    patch_size: int = 32
    hidden_size: int = 768
    intermediate_size: int = 3072
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    hidden_act: Literal["quick_gelu", "gelu"] = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    initializer_factor: float = 1.0
    num_frames: int = 10
    frame_pooling: Literal["middle", "mean3"] = "middle"

    @property
    def embed_dim(self) -> int:
        return self.projection_dim

    def validate(self) -> None:
        check_sizes("clip", self, {
            "image_size": (1, 1024), "patch_size": (1, 1024), "hidden_size": (1, 8192),
            "intermediate_size": (1, 65_536), "projection_dim": (1, 8192), "num_hidden_layers": (1, 128),
            "num_attention_heads": (1, 256), "num_frames": (1, 256)})
        check_fractions("clip", self, ("attention_dropout",))
        if not (math.isfinite(self.layer_norm_eps) and self.layer_norm_eps > 0):
            raise ConfigError("clip: layer_norm_eps must be a finite number > 0")
        if self.image_size % self.patch_size:
            raise ConfigError(f"clip: image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError("clip: hidden_size must be divisible by num_attention_heads")
        if self.num_frames < 1:
            raise ConfigError("clip: num_frames must be >= 1")
        tokens = (self.image_size // self.patch_size) ** 2 + 1
        check_budget("clip", self.approx_parameters(),
                     3 * max(self.num_attention_heads * tokens * tokens, tokens * self.intermediate_size))

    def approx_parameters(self) -> int:
        """A lower bound of the parameter count (weight matrices only): what a weights file must hold."""
        h = self.hidden_size
        return (self.num_hidden_layers * (4 * h * h + 2 * h * self.intermediate_size) + 3 * self.patch_size ** 2 * h
                + h * self.projection_dim)

    def hf_kwargs(self) -> Dict[str, Any]:
        d = to_dict(self)
        return {k: d[k] for k in _HF_FIELDS}


class ClipFrameEncoder(Encoder):
    """``forward(frames uint8 [B, K, H, W, 3]) -> [B, projection_dim]`` (CLIP image embeddings)."""

    kind = "video"

    def __init__(self, cfg: ClipEncoderConfig, backbone: Optional[torch.nn.Module] = None):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        self.cfg = cfg
        self.model_cfg = to_dict(cfg)
        self.embed_dim = cfg.projection_dim
        self.input_size = cfg.image_size
        self.num_frames = cfg.num_frames
        if backbone is None:
            backbone = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg.hf_kwargs()))
        self.backbone = backbone

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        check_frames(frames, "clip")
        b = frames.shape[0]
        idx = frame_indices(frames.shape[1], self.cfg.frame_pooling)
        picked = frames[:, idx]  # [B, n, H, W, 3]
        pixels = to_pixel_values(picked, self.input_size, CLIP_MEAN, CLIP_STD).flatten(0, 1)  # [B*n, 3, S, S]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            emb = self.backbone(pixel_values=pixels).image_embeds  # [B*n, D]
        return emb.view(b, len(idx), -1).mean(dim=1)


def build_clip(config: Dict[str, Any], *, pretrained: Optional[str] = None, allow_download: bool = False):
    """Builder for ``clip*`` names; ``pretrained`` e.g. a local copy of ``openai/clip-vit-base-patch32``
    (a full CLIP checkpoint: its text tower is ignored)."""
    cfg = from_dict(ClipEncoderConfig, config, where="model config (clip)")
    backbone = None
    if pretrained is not None:
        from transformers import CLIPVisionModelWithProjection

        backbone = hf_from_pretrained(
            CLIPVisionModelWithProjection, pretrained, allow_download,
            unused_prefixes=("text_model.", "text_projection.", "logit_scale"), **cfg.hf_kwargs(),
        )
    return ClipFrameEncoder(cfg, backbone=backbone)


for _name in ("clip-vit-b32", "clip-tiny"):
    register_model(_name, kind="video", config=ClipEncoderConfig)(build_clip)
