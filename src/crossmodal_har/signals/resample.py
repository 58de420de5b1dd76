"""Timestamp-aware resampling onto a global uniform grid.

Grid: output sample ``k`` of a stream resampled at ``rate_hz`` is at time ``k / rate_hz`` on the
recording's clock (anchored at t = 0), so every stretch or chunk of a stream lands on the same grid.

Gaps: a time step longer than ``gap_tolerance_s`` splits the recording into separate segments; no
value is ever interpolated across such a gap.

Two evaluation modes, both *local* (an output sample depends only on nearby input samples, so a
long stream processed in chunks gives the same values as processed whole, given enough context):

* **Not downsampling** (input rate <= 1.01 x target): cubic Hermite interpolation with
  central-difference slopes (Catmull-Rom style, valid for irregular timestamps). An output sample
  depends on the two input samples on each side of it.
* **Downsampling** (input rate > 1.01 x target): anti-aliasing by continuous-time convolution
  with a Kaiser-windowed sinc low-pass, evaluated directly at the output times (the result is
  divided by the kernel mass inside the segment, so DC, e.g. gravity, is kept exactly at edges). Cut-off ``ANTIALIAS_CUTOFF`` x rate_hz
  (20 Hz at 50 Hz), Kaiser beta 5.65 (about -60 dB stop band, reached just below the output Nyquist
  frequency), support +/- ``ANTIALIAS_HALF_WIDTH_PERIODS / rate_hz`` seconds (0.24 s at 50 Hz).
  The input is treated as piecewise linear between its samples and the convolution integral is
  computed exactly (tabulated antiderivatives of the kernel), so jittered and irregular timestamps
  and short tolerated gaps need no special case.

For exact chunked processing: output samples at times in ``[a, b]`` depend only on input samples
with times in ``[a - antialias_margin_s(rate_hz), b + antialias_margin_s(rate_hz)]`` plus the nearest
sample outside that interval on each side (two, when not downsampling: Hermite slopes). ``ANTIALIAS_MARGIN_S`` is that margin at
50 Hz.
"""

from __future__ import annotations

import logging
import math
from typing import List, Optional, Tuple

import numpy as np

from crossmodal_har.signals.types import ImuRecording, Segment

log = logging.getLogger(__name__)

ANTIALIAS_CUTOFF = 0.4  # low-pass cut-off as a fraction of the output rate
ANTIALIAS_HALF_WIDTH_PERIODS = 12  # kernel half-width in output sample periods
KAISER_BETA = 5.65
DOWNSAMPLE_THRESHOLD = 1.01  # input/output rate ratio above which the anti-alias filter runs
_GRID_EPS = 1e-6  # tolerance (in output periods) when snapping times to the grid


def antialias_margin_s(rate_hz: float) -> float:
    """Input context (s) the anti-alias filter uses beyond each edge of an output stretch."""
    return ANTIALIAS_HALF_WIDTH_PERIODS / float(rate_hz)


ANTIALIAS_MARGIN_S = antialias_margin_s(50.0)  # 0.24 s at the default 50 Hz


def split_at_gaps(t: np.ndarray, gap_tolerance_s: float) -> List[Tuple[int, int]]:
    """Split strictly increasing times ``t`` (s) where a step exceeds ``gap_tolerance_s``.

    Returns:
        Half-open index ranges ``[(i0, i1), ...]`` covering ``t`` in order.
    """
    t = np.asarray(t, dtype=np.float64)
    if len(t) == 0:
        return []
    cuts = np.flatnonzero(np.diff(t) > gap_tolerance_s) + 1
    edges = np.concatenate([[0], cuts, [len(t)]]).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def grid_start(t_first: float, rate_hz: float) -> int:
    """Index ``k`` of the first global grid point ``k / rate_hz`` at or after ``t_first``."""
    return int(math.ceil(t_first * rate_hz - _GRID_EPS))


def grid_stop(t_last: float, rate_hz: float) -> int:
    """Index ``k`` of the last global grid point ``k / rate_hz`` at or before ``t_last``."""
    return int(math.floor(t_last * rate_hz + _GRID_EPS))


def needs_antialias(t: np.ndarray, rate_hz: float) -> bool:
    """True when the median input rate exceeds the output rate (by more than 1 %)."""
    if len(t) < 2:
        return False
    dt = float(np.median(np.diff(t)))
    return dt > 0 and (1.0 / dt) > DOWNSAMPLE_THRESHOLD * rate_hz


def resample_segment(t: np.ndarray, x: np.ndarray, rate_hz: float, *, t0: Optional[float] = None,
                     n: Optional[int] = None, antialias: Optional[bool] = None) -> Segment:
    """Resample one gap-free stretch onto the grid ``t0 + k / rate_hz``, ``k = 0..n-1``.

    Args:
        t: [T] strictly increasing times (s).
        x: [T, C] values (canonical units).
        rate_hz: output rate (Hz).
        t0: first output time (s). Default: the first global grid point at or after ``t[0]``,
            ``ceil(t[0] * rate_hz) / rate_hz``.
        n: number of output samples. Default: every grid point up to ``t[-1]``.
        antialias: force the low-pass on/off; default decides from the median input rate.
            Grid points outside ``[t[0], t[-1]]`` take the nearest edge value (no extrapolation).

    Returns:
        Segment with ``data`` [n, C] float32.
    """
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if len(t) == 0:
        return Segment(t0=0.0 if t0 is None else float(t0), rate_hz=float(rate_hz),
                       data=np.zeros((0, x.shape[1]), np.float32))
    if t0 is None:
        k0 = grid_start(t[0], rate_hz)
        t0 = k0 / rate_hz
    t0 = float(t0)
    if n is None:
        n = max(0, int(math.floor((t[-1] - t0) * rate_hz + _GRID_EPS)) + 1)
    n = int(n)
    if n <= 0:
        return Segment(t0=t0, rate_hz=float(rate_hz), data=np.zeros((0, x.shape[1]), np.float32))
    grid = t0 + np.arange(n, dtype=np.float64) / rate_hz

    on_grid = _on_grid_slice(t, grid, rate_hz)
    if on_grid is not None:
        return Segment(t0=t0, rate_hz=float(rate_hz), data=x[on_grid].astype(np.float32))
    if antialias is None:
        antialias = needs_antialias(t, rate_hz)
    if antialias:
        y = lowpass_eval(t, x, grid, rate_hz)
    else:
        y = _hermite(t, x, grid)
    return Segment(t0=t0, rate_hz=float(rate_hz), data=y.astype(np.float32))


def resample(rec: ImuRecording, rate_hz: float, gap_tolerance_s: float, *,
             antialias: Optional[bool] = None) -> List[Segment]:
    """Resample a recording onto the global ``rate_hz`` grid, one Segment per gap-free stretch.

    Stretches too short to hold a grid point give no segment. Whether to low-pass is decided once
    for the whole recording (median input rate) unless ``antialias`` is given.
    """
    if antialias is None:
        antialias = needs_antialias(rec.t, rate_hz)
    out = []
    for i0, i1 in split_at_gaps(rec.t, gap_tolerance_s):
        seg = resample_segment(rec.t[i0:i1], rec.data[i0:i1], rate_hz, antialias=antialias)
        if len(seg.data):
            out.append(seg)
    return out


# --------------------------------------------------------------------------------- internals

def _on_grid_slice(t: np.ndarray, grid: np.ndarray, rate_hz: float) -> Optional[slice]:
    """If the requested grid points coincide with consecutive input samples, their slice."""
    if len(t) < len(grid):
        return None
    i0 = int(np.searchsorted(t, grid[0] - _GRID_EPS / rate_hz))
    i1 = i0 + len(grid)
    if i1 > len(t):
        return None
    if np.max(np.abs(t[i0:i1] - grid)) * rate_hz < _GRID_EPS:
        return slice(i0, i1)
    return None


def _hermite(t: np.ndarray, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation with central-difference slopes; edge values outside ``t``."""
    n = len(t)
    if n == 1:
        return np.repeat(x[:1], len(grid), axis=0)
    slope = np.empty_like(x)
    slope[1:-1] = (x[2:] - x[:-2]) / (t[2:] - t[:-2])[:, None]
    slope[0] = (x[1] - x[0]) / (t[1] - t[0])
    slope[-1] = (x[-1] - x[-2]) / (t[-1] - t[-2])
    j = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, n - 2)
    h = t[j + 1] - t[j]
    s = np.clip((grid - t[j]) / h, 0.0, 1.0)
    s2, s3 = s * s, s * s * s
    h00 = (2 * s3 - 3 * s2 + 1)[:, None]
    h10 = ((s3 - 2 * s2 + s) * h)[:, None]
    h01 = (-2 * s3 + 3 * s2)[:, None]
    h11 = ((s3 - s2) * h)[:, None]
    return h00 * x[j] + h10 * slope[j] + h01 * x[j + 1] + h11 * slope[j + 1]


_TABLE_SIZE = 16385


def _kernel_tables(rate_hz: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Kaiser-windowed sinc ``h`` on its support and its running integrals of ``h`` and ``v*h``."""
    half = ANTIALIAS_HALF_WIDTH_PERIODS / rate_hz
    v = np.linspace(-half, half, _TABLE_SIZE)
    fc = ANTIALIAS_CUTOFF * rate_hz
    u = v / half
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1.0 - u * u, 0.0, None))) / np.i0(KAISER_BETA)
    h = 2 * fc * np.sinc(2 * fc * v) * window
    dv = v[1] - v[0]
    f0 = np.concatenate([[0.0], np.cumsum(0.5 * (h[1:] + h[:-1]) * dv)])
    vh = v * h
    f1 = np.concatenate([[0.0], np.cumsum(0.5 * (vh[1:] + vh[:-1]) * dv)])
    return v, f0, f1, half


def _lerp_table(v: np.ndarray, v0: float, dv: float, table: np.ndarray) -> np.ndarray:
    """Linear interpolation in a uniformly spaced table, clamped at both ends."""
    pos = np.clip((v - v0) / dv, 0.0, len(table) - 1.000001)
    k = pos.astype(np.int64)
    frac = pos - k
    return table[k] + (table[k + 1] - table[k]) * frac


def lowpass_eval(t: np.ndarray, x: np.ndarray, grid: np.ndarray, rate_hz: float,
                 block: int = 4096) -> np.ndarray:
    """Low-pass ``x`` at ``grid``: exact convolution of the kernel with the linear interpolant.

    The anti-aliased path of :func:`resample_segment`, usable on any grid. The input is taken as
    piecewise linear between samples (so irregular timestamps are handled exactly, no Riemann-sum
    error from jitter) and convolved with the windowed sinc for output rate ``rate_hz``; the result
    is divided by the kernel mass that falls inside the segment, so DC (gravity) is kept at the edges.

    Args:
        t: [T] strictly increasing sample times (s).
        x: [T, C] samples.
        grid: [n] output times (s).
        rate_hz: output rate that sets the kernel's cut-off.
        block: grid points computed at once (memory only: every output has the same bits whatever
            the block, since sums run strictly in sample order).

    Returns:
        [n, C] float64.
    """
    n = len(t)
    if n < 2:
        return np.repeat(x[:1], len(grid), axis=0)
    v_tab, f0_tab, f1_tab, half = _kernel_tables(rate_hz)
    v0, dv = v_tab[0], v_tab[1] - v_tab[0]
    j_lo_all = np.clip(np.searchsorted(t, grid - half, side="right") - 1, 0, n - 2)
    j_hi_all = np.clip(np.searchsorted(t, grid + half, side="left"), 0, n - 2)
    out = np.empty((len(grid), x.shape[1]), dtype=np.float64)
    for b0 in range(0, len(grid), block):
        g = grid[b0:b0 + block]
        j_lo, j_hi = j_lo_all[b0:b0 + block], j_hi_all[b0:b0 + block]
        cnt = j_hi - j_lo + 1
        m = int(cnt.max())
        ar = np.arange(m + 1)
        # Sample indices j_lo .. j_lo + m; interval k spans samples k and k + 1 (k < m).
        i = np.minimum(j_lo[:, None] + ar[None, :], n - 1)  # [B, m + 1]
        ti = t[i]
        v = g[:, None] - ti  # v = g - tau at each sample
        f0 = _lerp_table(v, v0, dv, f0_tab)
        f1 = _lerp_table(v, v0, dv, f1_tab)
        valid = (ar[None, :m] < cnt[:, None]) & (i[:, 1:] > i[:, :-1])
        ta, tb = ti[:, :-1], ti[:, 1:]
        hj = np.where(valid, tb - ta, 1.0)
        d0 = f0[:, :-1] - f0[:, 1:]  # integral of h over the interval (v from g - tb to g - ta)
        d1 = f1[:, :-1] - f1[:, 1:]
        gg = g[:, None]
        wa = np.where(valid, ((tb - gg) * d0 + d1) / hj, 0.0)  # weight of sample k
        wb = np.where(valid, ((gg - ta) * d0 - d1) / hj, 0.0)  # weight of sample k + 1
        w = np.zeros((len(g), m + 1))
        w[:, :-1] += wa
        w[:, 1:] += wb
        # Sum strictly in sample order (no pairwise/BLAS reordering): an output then gets the same
        # bits whatever the block, chunk or padding it is computed in (chunked streaming relies on it).
        s = np.zeros(len(g))
        y = np.zeros((len(g), x.shape[1]))
        for j in range(m + 1):
            wj = w[:, j]
            s += wj
            y += wj[:, None] * x[i[:, j]]
        ok = s > 0.25  # the kernel integrates to 1; at a segment edge about half of it is inside
        y[ok] /= s[ok, None]
        if not ok.all():
            y[~ok] = _hermite(t, x, g[~ok])
        out[b0:b0 + block] = y
    return out
