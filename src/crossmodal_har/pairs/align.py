"""Aligning IMU windows with video: frame target times, overlap checks, labels, unit sanity.

All times are seconds on the video clock (see :mod:`crossmodal_har.pairs.video`).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from crossmodal_har.signals.types import STANDARD_GRAVITY, ImuRecording, PreprocessConfig

log = logging.getLogger(__name__)

FRAME_POLICY = "slot"  # K equal slots per window; J frames per slot at (j + 0.5) / J of the slot


def frame_targets(start_s: np.ndarray, end_s: np.ndarray, k: int, j: int = 1) -> np.ndarray:
    """Target frame times [N, K*J] (s) for windows ``[start_s, end_s)``.

    The window is cut into ``k`` equal slots; within each slot, ``j`` times at ``(i + 0.5) / j`` of
    the slot. ``j = 1`` gives the slot centres (evaluation); ``j > 1`` stores several frames per slot
    so a training loader can pick one at random (jitter).
    """
    start_s = np.asarray(start_s, dtype=np.float64)
    end_s = np.asarray(end_s, dtype=np.float64)
    slot = (end_s - start_s) / k
    pos = (np.arange(k)[:, None] + (np.arange(j)[None, :] + 0.5) / j).ravel()  # [K*J] in slot units
    return start_s[:, None] + pos[None, :] * slot[:, None]


def frame_tolerance_s(window_s: float, k: int) -> float:
    """How far (s) the nearest decoded frame may be from its target before the window is dropped:
    half a slot. Beyond that the video has a hole (decode error) or ends (desync)."""
    return 0.5 * window_s / k


def window_labels(start_s: np.ndarray, end_s: np.ndarray, labels: Sequence[Tuple[float, float, str]],
                  eps: float = 1e-6) -> np.ndarray:
    """Label of each window: the labelled segment that wholly contains it, else ``""``."""
    out = np.full(len(start_s), "", dtype=object)
    for a, b, lab in labels:
        inside = (start_s >= a - eps) & (end_s <= b + eps) & (out == "")
        out[inside] = lab
    return out


def overlap_s(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def expected_windows(span_s: float, cfg: PreprocessConfig) -> int:
    """How many windows a gap-free recording of ``span_s`` seconds gives."""
    w = cfg.window_samples / cfg.rate_hz
    s = cfg.stride_samples / cfg.rate_hz
    if span_s + 1e-9 < w:
        return 0
    return int(np.floor((span_s - w) / s + 1e-9)) + 1


def gravity_check(rec: ImuRecording, declared_acc_unit: Optional[str] = None) -> Dict[str, Any]:
    """Check the accelerometer's scale against gravity (|acc| at rest should be 1 g).

    Rest = samples in 1-s blocks whose |acc| varies little (std < 0.05 of the median); if none, all
    samples (the long-run mean of |acc| is still near 1 g for everyday activity).

    Returns ``{"acc_norm_g": median |acc| (in g, after the declared conversion), "at_rest": bool,
    "verdict": "ok" | "suspect", "message": str}``. A verdict of ``suspect`` means the declared
    unit is probably wrong (e.g. m/s^2 declared as g gives ~9.8; g declared as m/s^2 gives ~0.1).
    """
    acc = np.asarray(rec.data[:, :3], dtype=np.float64)
    norm = np.linalg.norm(acc, axis=1)
    norm = norm[np.isfinite(norm)]
    out: Dict[str, Any] = {"acc_norm_g": None, "at_rest": False, "verdict": "unknown", "message": ""}
    if len(norm) < 10:
        return out
    dt = np.median(np.diff(rec.t)) if len(rec.t) > 1 else 0.02
    block = max(5, int(round(1.0 / dt))) if dt > 0 else 50
    nb = len(norm) // block
    rest_vals = []
    if nb:
        blocks = norm[: nb * block].reshape(nb, block)
        med = np.median(blocks, axis=1)
        quiet = blocks.std(axis=1) < 0.05 * np.maximum(med, 1e-9)
        rest_vals = med[quiet]
    if len(rest_vals):
        value, at_rest = float(np.median(rest_vals)), True
    else:
        value, at_rest = float(np.median(norm)), False
    out["acc_norm_g"] = value
    out["at_rest"] = at_rest
    lo, hi = (0.8, 1.2) if at_rest else (0.6, 1.6)
    if lo <= value <= hi:
        out["verdict"] = "ok"
        return out
    out["verdict"] = "suspect"
    declared = f" (declared acc_unit {declared_acc_unit!r})" if declared_acc_unit else ""
    if abs(value / STANDARD_GRAVITY - 1.0) < 0.25:
        hint = "the accelerometer looks like m/s^2 read as g"
    elif abs(value * STANDARD_GRAVITY - 1.0) < 0.25:
        hint = "the accelerometer looks like g read as m/s^2"
    else:
        hint = "the accelerometer scale is unusual"
    out["message"] = (f"median |acc|{' at rest' if at_rest else ''} is {value:.3g} g, expected about 1 g: "
                      f"{hint}{declared}")
    return out


def split_chunks(n: int, size: int) -> List[Tuple[int, int]]:
    """``[(i0, i1), ...]`` covering ``range(n)`` in pieces of at most ``size``."""
    if n == 0:
        return []
    return [(i, min(n, i + size)) for i in range(0, n, size)]
