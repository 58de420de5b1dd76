"""VideoMAE video encoder (the paper's): transformers ``VideoMAEModel``, mean of the last hidden states.

A clip is ``num_frames`` RGB frames (paper: 10 frames per 5 s window); VideoMAE groups frames in
tubelets of 2, so ``num_frames`` must be even. Position embeddings are fixed sin-cos tables, so a
checkpoint trained on 16 frames (``MCG-NJU/videomae-base-ssv2``) loads for 10 frames.
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
from crossmodal_har.models.video_common import (IMAGENET_MEAN, IMAGENET_STD, VIDEO_INPUTS, check_frames, frame_input,
                                                to_pixel_values)

log = logging.getLogger(__name__)


@dataclass
class VideoMAEEncoderConfig:
    """Architecture (field names follow transformers' ``VideoMAEConfig``).

    ``use_mean_pooling: false`` matches the MCG-NJU pretraining checkpoints (the encoder ends with a
    LayerNorm); the embedding is always the mean of ``last_hidden_state`` over tokens.
    """

    image_size: int = 224
    patch_size: int = 16
    num_frames: int = 10
    tubelet_size: int = 2
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: Literal["gelu", "relu", "gelu_new", "quick_gelu"] = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    qv_bias: bool = True
    use_mean_pooling: bool = False
    # ours, not transformers': what the backbone sees of the frames (video_common.VIDEO_INPUTS)
    video_input: Literal["rgb", "gray", "diff", "gray_diff"] = "rgb"

    def hf_fields(self) -> Dict[str, Any]:
        """The fields transformers' ``VideoMAEConfig`` takes (all but ``video_input``)."""
        out = to_dict(self)
        out.pop("video_input")
        return out

    @property
    def embed_dim(self) -> int:
        return self.hidden_size

    def validate(self) -> None:
        check_sizes("videomae", self, {
            "image_size": (1, 1024), "patch_size": (1, 1024), "num_frames": (1, 256), "tubelet_size": (1, 256),
            "hidden_size": (1, 8192), "num_hidden_layers": (1, 128), "num_attention_heads": (1, 256),
            "intermediate_size": (1, 65_536)})
        check_fractions("videomae", self, ("hidden_dropout_prob", "attention_probs_dropout_prob"))
        if self.video_input not in VIDEO_INPUTS:
            raise ConfigError(f"videomae: video_input must be one of {', '.join(VIDEO_INPUTS)}")
        if self.video_input in ("diff", "gray_diff") and self.num_frames < 2:
            raise ConfigError(f"videomae: video_input={self.video_input} needs num_frames >= 2")
        if not (math.isfinite(self.layer_norm_eps) and self.layer_norm_eps > 0):
            raise ConfigError("videomae: layer_norm_eps must be a finite number > 0")
        if self.num_frames < self.tubelet_size or self.num_frames % self.tubelet_size:
            raise ConfigError(
                f"videomae: num_frames ({self.num_frames}) must be a positive multiple of tubelet_size ({self.tubelet_size})"
            )
        if self.image_size % self.patch_size:
            raise ConfigError(f"videomae: image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError("videomae: hidden_size must be divisible by num_attention_heads")
        tokens = (self.num_frames // self.tubelet_size) * (self.image_size // self.patch_size) ** 2
        check_budget("videomae", self.approx_parameters(),
                     max(self.num_attention_heads * tokens * tokens, tokens * self.intermediate_size))

    def approx_parameters(self) -> int:
        """A lower bound of the parameter count (weight matrices only): what a weights file must hold."""
        h = self.hidden_size
        return (self.num_hidden_layers * (4 * h * h + 2 * h * self.intermediate_size)
                + 3 * self.tubelet_size * self.patch_size ** 2 * h)


class VideoMAEEncoder(Encoder):
    """``forward(frames uint8 [B, K, H, W, 3]) -> [B, hidden_size]`` (ImageNet mean/std inside)."""

    kind = "video"

    def __init__(self, cfg: VideoMAEEncoderConfig, backbone: Optional[torch.nn.Module] = None):
        super().__init__()
        from transformers import VideoMAEConfig, VideoMAEModel

        self.cfg = cfg
        self.model_cfg = to_dict(cfg)
        self.embed_dim = cfg.hidden_size
        self.input_size = cfg.image_size
        self.num_frames = cfg.num_frames
        if backbone is None:
            backbone = VideoMAEModel(VideoMAEConfig(**cfg.hf_fields()))
        self.backbone = backbone

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        check_frames(frames, "videomae", self.num_frames)
        pixels = to_pixel_values(frames, self.input_size, IMAGENET_MEAN, IMAGENET_STD)  # [B, K, 3, S, S]
        pixels = frame_input(pixels, self.cfg.video_input)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self.backbone(pixel_values=pixels).last_hidden_state  # [B, tokens, hidden]
        return hidden.mean(dim=1)


def build_videomae(config: Dict[str, Any], *, pretrained: Optional[str] = None, allow_download: bool = False):
    """Builder for ``videomae*`` names; ``pretrained`` e.g. a local copy of ``MCG-NJU/videomae-base-ssv2``."""
    cfg = from_dict(VideoMAEEncoderConfig, config, where="model config (videomae)")
    backbone = None
    if pretrained is not None:
        from transformers import VideoMAEModel

        backbone = hf_from_pretrained(
            VideoMAEModel, pretrained, allow_download,
            unused_prefixes=("decoder.", "encoder_to_decoder.", "mask_token"), **cfg.hf_fields(),
        )
    return VideoMAEEncoder(cfg, backbone=backbone)


for _name in ("videomae-base", "videomae-tiny"):
    register_model(_name, kind="video", config=VideoMAEEncoderConfig)(build_videomae)
