"""Channel selection, median filter, fixed-length windows and per-window quality checks."""

from __future__ import annotations

import dataclasses
import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np

from crossmodal_har.errors import DataError
from crossmodal_har.signals.normalize import RecordingStats, apply_recording_stats
from crossmodal_har.signals.resample import resample
from crossmodal_har.signals.status import STATUS_FLAT_LINE, STATUS_NON_FINITE, STATUS_SATURATION
from crossmodal_har.signals.types import CHANNEL_SETS, ImuRecording, PreprocessConfig, Segment

log = logging.getLogger(__name__)

WindowArrays = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


MAX_NETWORK_KERNEL = 9


def sorting_network_median(x: np.ndarray, k: int) -> np.ndarray:
    """Running median of odd length ``k`` along axis 0, for the ``len(x) - k + 1`` full windows.

    Odd-even transposition sort of the ``k`` shifted views with element-wise min/max: no Python
    loop over samples, and exact (the result is always one of the inputs). Long inputs go in blocks
    of :data:`MEDIAN_BLOCK` rows, so that the temporaries stay in the CPU's cache (the same values).
    """
    m = len(x) - k + 1
    if m <= MEDIAN_BLOCK:
        return _network_median(x, k)
    out = np.empty((m,) + x.shape[1:], dtype=x.dtype)
    for a in range(0, m, MEDIAN_BLOCK):
        b = min(a + MEDIAN_BLOCK, m)
        out[a:b] = _network_median(x[a:b + k - 1], k)
    return out


MEDIAN_BLOCK = 4096


def _network_median(x: np.ndarray, k: int) -> np.ndarray:
    m = len(x) - k + 1
    v = [x[i:i + m] for i in range(k)]
    mn, mx = np.minimum, np.maximum
    if k == 3:
        a, b, c = v
        return mx(mn(a, b), mn(mx(a, b), c))
    if k == 5:  # median5 = median3(e, max(min(a,b), min(c,d)), min(max(a,b), max(c,d)))
        a, b, c, d, e = v
        f, g = mx(mn(a, b), mn(c, d)), mn(mx(a, b), mx(c, d))
        return mx(mn(f, g), mn(mx(f, g), e))
    for p in range(k):
        for i in range(p % 2, k - 1, 2):
            a, b = v[i], v[i + 1]
            v[i], v[i + 1] = np.minimum(a, b), np.maximum(a, b)
    return v[k // 2]


def median_filter(data: np.ndarray, kernel: int) -> np.ndarray:
    """Median filter each channel of ``data`` [T, C] along time with an odd ``kernel`` (samples).

    ``kernel`` 0 or 1 returns the data unchanged. Edges are mirrored (no zero padding, which
    would drag gravity towards 0 at the edges, and an edge spike is still removed). The paper uses kernel 5 at 50 Hz.
    """
    if kernel is None or kernel <= 1 or len(data) == 0:
        return data
    if kernel % 2 == 0:
        raise ValueError(f"median kernel must be odd, got {kernel}")
    h = kernel // 2
    if kernel <= MAX_NETWORK_KERNEL and data.ndim == 2 and len(data) > h and np.isfinite(data).all():
        # numpy's "reflect" is scipy.ndimage's "mirror" (d c b | a b c d | c b a); the median is a
        # selection, so the network gives scipy's values exactly without importing scipy.ndimage
        return sorting_network_median(np.pad(data, ((h, h), (0, 0)), mode="reflect"), kernel)
    from scipy.ndimage import median_filter as _mf

    return _mf(data, size=(kernel, 1), mode="mirror")


def finite_rows(t: np.ndarray, x: np.ndarray) -> Optional[np.ndarray]:
    """Rows of samples ``x`` [n, C] at times ``t`` [n] with a finite time and finite values: None when
    that is every row (the usual case: two sums are finite only if every term is, 5x cheaper than the
    row mask), else the mask [n] bool."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf, an overflowing sum: the mask decides
        if np.isfinite(t.sum()) and np.isfinite(x.sum()):
            return None
    return np.isfinite(t) & np.isfinite(x).all(axis=1)


def check_quality(x: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Quality reason per window of ``x`` [N, W, 6] (g, rad/s): ``""`` if ok.

    Reasons, first match wins: ``non_finite`` (any NaN/inf), ``flat_line`` (every accelerometer
    channel has std < ``cfg.flat_std_g``: a dead sensor), ``saturation`` (at least
    ``cfg.saturation_fraction`` of samples at or beyond ``cfg.acc_saturation_g`` on any acc channel
    or ``cfg.gyro_saturation_rad_s`` on any gyro channel; checked only when those are set).
    """
    n = len(x)
    reasons = np.full(n, "", dtype=object)
    if n == 0:
        return reasons
    finite = np.isfinite(x).all(axis=(1, 2))
    reasons[~finite] = STATUS_NON_FINITE
    flat = np.zeros(n, dtype=bool)
    if finite.any():  # the finite windows only (what nanstd gave them, without its NaN passes)
        flat[finite] = flat_windows(x if finite.all() else x[finite], cfg.flat_std_g)
    reasons[(reasons == "") & flat] = STATUS_FLAT_LINE
    sat = np.zeros(n, dtype=bool)
    if cfg.acc_saturation_g is not None:
        rail = (np.abs(x[:, :, :3]) >= cfg.acc_saturation_g).mean(axis=1)
        sat |= (rail >= cfg.saturation_fraction).any(axis=1)
    if cfg.gyro_saturation_rad_s is not None:
        rail = (np.abs(x[:, :, 3:]) >= cfg.gyro_saturation_rad_s).mean(axis=1)
        sat |= (rail >= cfg.saturation_fraction).any(axis=1)
    reasons[(reasons == "") & sat] = STATUS_SATURATION
    return reasons


def flat_windows(x: np.ndarray, std_g: float) -> np.ndarray:
    """Per finite window of ``x`` [N, W, 6]: every accelerometer channel has std < ``std_g`` —
    numpy's ``x[:, :, :3].std(axis=1)``, the same decisions, computed only where the channel's range
    ``r`` leaves them open. The population std lies between ``r / sqrt(2 W)`` and ``r / 2``; the
    computed one differs from it by float rounding and by the error of the float mean (below
    ``W * eps * max|x|``): bounds with those margins decide nearly every window from ``r`` (the
    maxima and minima along the last axis of one transposed copy: 2.8x faster than halving folds over
    the middle axis, which were 4x cheaper than the std)."""
    W = x.shape[1]
    if W == 0 or x.dtype.kind not in "fiu":  # no samples (numpy's std: NaN, not flat), or not numbers
        return (x[:, :, :3].std(axis=1) < std_g).all(axis=1)
    acc = np.ascontiguousarray(x[:, :, :3].transpose(0, 2, 1))  # [N, 3, W]: each channel's samples contiguous
    hi, lo = acc.max(axis=2).astype(np.float64), acc.min(axis=2).astype(np.float64)
    r = hi - lo
    eps = float(np.finfo(np.result_type(x.dtype, np.float32)).eps)  # integers: numpy's std is float64
    rel = 1e-3 + 4 * W * eps  # rounding of the range, the squares, their sum and the root, with room
    mean_err = W * eps * np.maximum(np.abs(hi), np.abs(lo))
    flat = ((r / 2 + mean_err) * (1 + rel) < std_g).all(axis=1)
    surely_not = (r / np.sqrt(2.0 * W) >= std_g * (1 + rel)).any(axis=1)
    open_ = ~flat & ~surely_not
    if open_.any():  # the windows' own std, as the same view of the same rows gives it
        flat[open_] = (x[open_][:, :, :3].std(axis=1) < std_g).all(axis=1)
    return flat


def window_starts(n_samples: int, window: int, stride: int) -> np.ndarray:
    """Start indices of every full window in a segment of ``n_samples`` (first at 0)."""
    if n_samples < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - window + 1, stride, dtype=np.int64)


def window_segments(segments: Sequence[Segment], cfg: PreprocessConfig) -> WindowArrays:
    """Cut resampled segments into windows of ``cfg.window_samples`` every ``cfg.stride_samples``.

    Windows start at each segment's first sample; a partial window at a segment end is dropped.

    Returns:
        ``x`` [N, W, 6] float32 (g, rad/s); ``start_s`` [N] and ``end_s`` [N] float64 on the
        recording clock (end = start + W / rate, exclusive); ``reasons`` [N] object from
        :func:`check_quality` (``""`` = ok).
    """
    W, S = cfg.window_samples, cfg.stride_samples
    xs: List[np.ndarray] = []
    starts: List[np.ndarray] = []
    for seg in segments:
        idx = window_starts(len(seg.data), W, S)
        if not len(idx):
            continue
        view = np.lib.stride_tricks.sliding_window_view(seg.data, W, axis=0)  # [n-W+1, C, W]
        xs.append(np.ascontiguousarray(view[idx].transpose(0, 2, 1), dtype=np.float32))
        starts.append(seg.t0 + idx / seg.rate_hz)
    if not xs:
        C = segments[0].data.shape[1] if len(segments) else 6
        empty = np.zeros(0, dtype=np.float64)
        return np.zeros((0, W, C), np.float32), empty, empty.copy(), np.zeros(0, dtype=object)
    x = np.concatenate(xs)
    start_s = np.concatenate(starts).astype(np.float64)
    end_s = start_s + W / cfg.rate_hz
    return x, start_s, end_s, check_quality(x, cfg)


def filter_segments(segments: Sequence[Segment], kernel: int) -> List[Segment]:
    """Median-filter each segment separately (never across a gap)."""
    if kernel is None or kernel <= 1:
        return list(segments)
    return [Segment(t0=s.t0, rate_hz=s.rate_hz, data=median_filter(s.data, kernel)) for s in segments]


ACC_ONLY_MESSAGE = ("accelerometer-only recording (no gyroscope); use --channels acc "
                    "(ingest: --set channels=acc)")


def model_reads(model: str, recording: str) -> bool:
    """Whether a model reading ``model`` channels can read a recording with ``recording`` channels
    (an ``acc+gyro`` model cannot read an accelerometer-only recording)."""
    if model not in CHANNEL_SETS:
        raise ValueError(f"unknown channels {model!r}")
    return model == "acc" or recording != "acc"


def model_samples(data: np.ndarray, model: str) -> np.ndarray:
    """Samples [n, 6] (g, rad/s) as a model reading ``model`` channels sees them: the one place the
    channels are selected. ``acc+gyro``: ``data`` itself. ``acc``: a copy with the gyroscope columns
    set to 0.0, for every recording: the model never reads them, so they must not exclude windows as
    ``non_finite`` or ``saturation``, and nothing downstream can learn from them by accident."""
    if model not in CHANNEL_SETS:
        raise ValueError(f"unknown channels {model!r}")
    if model == "acc+gyro":
        return data
    out = np.array(data, dtype=np.float64, copy=True)
    out[:, 3:] = 0.0
    return out


def select_channels(rec: ImuRecording, cfg: PreprocessConfig) -> ImuRecording:
    """The recording as a model reading ``cfg.channels`` sees it, still in the 6-column layout
    (:func:`model_samples`); an accelerometer-only recording (``rec.channels == "acc"``, NaN gyro)
    for an ``acc+gyro`` model is a :class:`DataError` naming it."""
    if not model_reads(cfg.channels, rec.channels):
        raise DataError(rec.source or rec.name, ACC_ONLY_MESSAGE)
    data = model_samples(rec.data, cfg.channels)
    return rec if data is rec.data else dataclasses.replace(rec, data=data)


def segments_stats(segments: Sequence[Segment]) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(mean, std)`` over every sample of ``segments``: the ``recording``
    normalisation's statistics (:class:`crossmodal_har.signals.normalize.RecordingStats`)."""
    acc = RecordingStats()
    for seg in segments:
        acc.push(seg.data)
    return acc.finish()


def recording_windows(rec: ImuRecording, cfg: PreprocessConfig) -> WindowArrays:
    """Channels (:func:`select_channels`) → resample → median filter (per segment) → windows →
    quality, for one recording. With ``cfg.normalization == "recording"`` the windows are then
    z-scored with the statistics of the whole filtered recording (quality is judged on physical
    units first); every other mode leaves them in g and rad/s."""
    rec = select_channels(rec, cfg)
    segments = resample(rec, cfg.rate_hz, cfg.gap_tolerance_s)
    segments = filter_segments(segments, cfg.median_kernel)
    x, start_s, end_s, reasons = window_segments(segments, cfg)
    if cfg.normalization == "recording" and len(x):
        x = apply_recording_stats(x, segments_stats(segments))
    return x, start_s, end_s, reasons
