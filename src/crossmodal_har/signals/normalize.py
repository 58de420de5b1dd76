"""Per-window normalisation applied at model input (numpy or torch, same maths)."""

from __future__ import annotations

from typing import Any

EPS = 1e-6


def normalize_windows(x: Any, mode: str) -> Any:
    """Normalise windows ``x`` of shape [..., W, C] along the time axis.

    ``zscore``: per window and channel, (x - mean) / (std + 1e-6) (the paper's).
    ``none``: unchanged (physical units, gravity kept).
    Works on numpy arrays and torch tensors (ONNX-exportable).
    """
    if mode == "none":
        return x
    if mode != "zscore":
        raise ValueError(f"unknown normalization {mode!r}")
    if hasattr(x, "detach"):  # torch
        mean = x.mean(dim=-2, keepdim=True)
        std = x.std(dim=-2, keepdim=True, unbiased=False)
    else:
        mean = x.mean(axis=-2, keepdims=True)
        std = x.std(axis=-2, keepdims=True)
    return (x - mean) / (std + EPS)
