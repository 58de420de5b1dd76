"""Frame handling shared by the video encoders: which frames of a clip they look at, and uint8
frames → normalised float tensors."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# what a video tower sees of its normalised frames (``video_input``): the frames themselves (``rgb``),
# their mean over channels (``gray``), or the change from one frame to the next (``diff``,
# ``gray_diff``): egomotion lives in frame-to-frame change, while one frame is mostly appearance.
VIDEO_INPUTS: Tuple[str, ...] = ("rgb", "gray", "diff", "gray_diff")


def frame_indices(num_frames: int, pooling: str) -> List[int]:
    """Which frames of a K-frame clip a video encoder looks at under ``pooling`` (its
    ``frame_pooling``, or imu2clip's ``clip_frames`` on per-frame embeddings): ``mean`` every frame,
    ``middle`` frame K // 2, ``mean3`` the first, middle and last."""
    if pooling == "mean":
        return list(range(num_frames))
    mid = num_frames // 2
    return [mid] if pooling == "middle" else [0, mid, num_frames - 1]


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


def frame_input(pixels: torch.Tensor, mode: str) -> torch.Tensor:
    """Normalised pixels [B, K, C, S, S] → the same shape, as ``mode`` (one of :data:`VIDEO_INPUTS`) says.

    ``gray`` replaces every channel by the channels' mean. ``diff`` gives frame t the difference
    ``x[t] - x[t-1]`` (frame 0 repeats the first difference, so K stays K and tubelets keep their
    size); ``gray_diff`` does both. Raises ValueError for an unknown mode or, with a difference, K < 2.
    """
    if mode not in VIDEO_INPUTS:
        raise ValueError(f"video_input must be one of {', '.join(VIDEO_INPUTS)}, got {mode!r}")
    if pixels.dim() != 5:
        raise ValueError(f"frame_input: expected pixels [B, K, C, S, S], got {list(pixels.shape)}")
    x = pixels
    if mode in ("gray", "gray_diff"):
        x = x.mean(dim=2, keepdim=True).expand_as(pixels)
    if mode in ("diff", "gray_diff"):
        if x.shape[1] < 2:
            raise ValueError(f"video_input={mode} needs at least 2 frames per clip, got {x.shape[1]}")
        d = x[:, 1:] - x[:, :-1]
        x = torch.cat([d[:, :1], d], dim=1)
    return x.contiguous()
