"""Pixel handling shared by the video encoders: uint8 frames → normalised float tensors."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def check_frames(frames: torch.Tensor, who: str, num_frames: int | None = None) -> None:
    """Raise ValueError unless ``frames`` is [B, K, H, W, 3] uint8 (K == num_frames when given)."""
    if frames.dim() != 5 or frames.shape[-1] != 3:
        raise ValueError(f"{who}: expected frames of shape [B, K, H, W, 3], got {list(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise ValueError(f"{who}: expected uint8 RGB frames, got {frames.dtype}")
    if num_frames is not None and frames.shape[1] != num_frames:
        raise ValueError(f"{who}: expected {num_frames} frames per clip, got {frames.shape[1]}")


def to_pixel_values(frames: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [..., H, W, 3] → float [..., 3, size, size]: scale to [0, 1], resize (bilinear,
    antialiased) when H or W differ from ``size``, then normalise per channel with ``mean``/``std``."""
    lead = frames.shape[:-3]
    h, w = frames.shape[-3], frames.shape[-2]
    x = frames.reshape(-1, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0)
    if h != size or w != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = (x - m) / s
    return x.reshape(*lead, 3, size, size)
