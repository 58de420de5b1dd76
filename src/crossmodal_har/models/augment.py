"""IMU augmentation for sensor-orientation robustness: one random 3-D rotation per window.

A worn sensor can sit in any orientation; rotating a window's accelerometer (g) and gyroscope (rad/s)
vectors by the same rotation simulates that. Both sensors share one body frame, so the same matrix is
applied to both. Rotations are drawn uniformly (Haar measure) from unit quaternions.
"""

from __future__ import annotations

from typing import Optional

import torch


def random_rotation_matrices(
    n: int,
    generator: Optional[torch.Generator] = None,
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """``n`` uniformly random proper rotation matrices [n, 3, 3] (orthogonal, det +1).

    Drawn on the generator's device (CPU by default) then moved to ``device``.
    """
    gdev = generator.device if generator is not None else torch.device("cpu")
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64, device=gdev)
    q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(1)
    r = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=1,
    ).view(n, 3, 3)
    return r.to(dtype=dtype, device=device if device is not None else gdev)


def rotate(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Apply ``rotations`` [B, 3, 3] to acc (cols 0–2) and gyro (cols 3–5) of ``x`` [B, W, 6]:
    each sample vector v becomes R v. Extra channels after the sixth are left unchanged."""
    if x.dim() != 3 or x.shape[-1] < 6:
        raise ValueError(f"rotate: expected IMU windows [B, W, 6], got {list(x.shape)}")
    rt = rotations.to(dtype=x.dtype, device=x.device).transpose(1, 2)  # row vectors: v^T R^T
    acc = torch.bmm(x[..., 0:3], rt)
    gyro = torch.bmm(x[..., 3:6], rt)
    return torch.cat([acc, gyro, x[..., 6:]], dim=-1)


def random_rotation(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One random 3-D rotation per window, applied jointly to acc and gyro. ``x``: [B, W, 6].

    Apply it to windows in physical units (before z-scoring): per-channel z-scoring after a rotation
    is still well defined, but rotating z-scored channels mixes differently scaled axes.
    """
    return rotate(x, random_rotation_matrices(x.shape[0], generator=generator, dtype=x.dtype, device=x.device))
