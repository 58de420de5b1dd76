"""Input normalisation: per window (at model input) or per recording (before windowing).

Three modes (``PreprocessConfig.normalization``):

* ``zscore``: each window and channel z-scored over its own samples, (x - mean) / (std + 1e-6),
  applied at model input by :func:`normalize_windows`. This is *not* what the paper's code does.
* ``recording``: each channel z-scored over the whole recording (clip) before it is cut into
  windows, (x - mean) / std with a zero std taken as 1 — what the paper's official code does
  (scheshmi/IMU-Video-OOD-HAR: ``get_imu_frames`` over each Ego4D video's IMU, and the downstream
  dataset classes over each clip). The statistics come from every resampled, median-filtered sample
  of the recording (all its segments), so they need the whole recording: the loaders apply them
  when they window (:func:`crossmodal_har.signals.windows.recording_windows`), the streaming
  windower takes them from a first pass (:class:`RecordingStats`), and :func:`normalize_windows`
  leaves such windows unchanged.
* ``none``: physical units (g, rad/s, gravity kept).

What the paper's model then sees: the official PatchTST keeps transformers' default ``scaling="std"``,
which standardises every window inside the model, so its effective input is per-window standardised
(``recording`` followed by a per-window z-score equals ``zscore`` up to the epsilon). Our PatchTST has
no internal scaler unless its config sets ``scaling: std`` (``configs/paper/siglip-paper-recipe`` does).
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

EPS = 1e-6
MODES = ("zscore", "recording", "none")


def normalize_windows(x: Any, mode: str) -> Any:
    """Normalise windows ``x`` of shape [..., W, C] along the time axis, as the model input needs.

    ``zscore``: per window and channel, (x - mean) / (std + 1e-6).
    ``recording`` and ``none``: unchanged (``recording`` windows were normalised when they were cut).
    Works on numpy arrays and torch tensors (ONNX-exportable).
    """
    if mode in ("none", "recording"):
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


class RecordingStats:
    """Per-channel mean and standard deviation of a recording, fed in pieces.

    ``push(x)`` with samples [n, C] (any split of the recording: the sums are float64, so the result
    equals the one-shot statistics to rounding), then ``finish()`` -> ``(mean [C], std [C])``.
    Non-finite samples are left out per channel; a channel with zero spread (or no sample) gets
    std 1, as the paper's code does, so a constant channel becomes 0 rather than NaN.
    """

    def __init__(self) -> None:
        self.n = None
        self.s1 = None
        self.s2 = None
        self.shift = None  # first finite sample: sums are taken about it (numerically stable)

    def push(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or not len(x):
            return
        if self.n is None:
            C = x.shape[1]
            self.n, self.s1, self.s2 = np.zeros(C), np.zeros(C), np.zeros(C)
            self.shift = np.full(C, np.nan)
        fin = np.isfinite(x)
        need = np.isnan(self.shift) & fin.any(axis=0)
        if need.any():
            first = np.argmax(fin, axis=0)
            self.shift[need] = x[first[need], np.flatnonzero(need)]
        d = np.where(fin, x - np.nan_to_num(self.shift), 0.0)
        self.n += fin.sum(axis=0)
        self.s1 += d.sum(axis=0)
        self.s2 += (d * d).sum(axis=0)

    def finish(self) -> Tuple[np.ndarray, np.ndarray]:
        if self.n is None:
            raise ValueError("no samples: the recording has no statistics")
        n = np.maximum(self.n, 1.0)
        m = self.s1 / n
        var = np.maximum(self.s2 / n - m * m, 0.0)
        mean = np.where(self.n > 0, m + np.nan_to_num(self.shift), 0.0)
        std = np.sqrt(var)
        std = np.where((self.n > 0) & (std > 0), std, 1.0)
        return mean, std


def recording_stats(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(mean [C], std [C])`` of samples ``x`` [T, C] in one go (:class:`RecordingStats`)."""
    acc = RecordingStats()
    acc.push(x)
    return acc.finish()


def apply_recording_stats(x: np.ndarray, stats: Tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Windows ``x`` [..., W, C] z-scored with a recording's ``(mean, std)``, float32."""
    mean, std = stats
    return ((np.asarray(x, dtype=np.float64) - mean) / std).astype(np.float32)
