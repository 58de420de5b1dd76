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
  and short tolerated gaps need no special case. Where the input is regular (steps within 0.2 %
  of the segment's nominal step, decided once per gap-free segment by :func:`nominal_step`), the
  same kernel runs as a polyphase FIR (:mod:`crossmodal_har.signals.polyphase`, weights from
  :func:`fir_table`, cached per rate pair): several times faster, within ``max|x'| * step / 8192`` of the
  exact value on regular times.

For exact chunked processing: output samples at times in ``[a, b]`` depend only on input samples
with times in ``[a - antialias_margin_s(rate_hz), b + antialias_margin_s(rate_hz)]`` plus the nearest
samples outside that interval on each side (two, when not downsampling: Hermite slopes), and,
when the output times are global grid points, the same bits (given the segment's nominal step).
``ANTIALIAS_MARGIN_S`` is that margin at 50 Hz.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import List, Optional, Tuple

import numpy as np

from crossmodal_har.signals import polyphase
from crossmodal_har.signals.types import ImuRecording, Segment

log = logging.getLogger(__name__)

ANTIALIAS_CUTOFF = 0.4  # low-pass cut-off as a fraction of the output rate
ANTIALIAS_HALF_WIDTH_PERIODS = 12  # kernel half-width in output sample periods
KAISER_BETA = 5.65
DOWNSAMPLE_THRESHOLD = 1.01  # input/output rate ratio above which the anti-alias filter runs
DECIDE_SAMPLES = 2048  # samples that decide once per stream / segment (anti-aliasing, nominal step)
_GRID_EPS = 1e-6  # tolerance (in output periods) when snapping times to the grid


def antialias_margin_s(rate_hz: float) -> float:
    """Input context (s) the anti-alias filter uses beyond each edge of an output stretch.

    The kernel's half-width, widened by ``3 * polyphase.REGULAR_TOL`` so that a stretch cut with
    this margin (plus two samples) holds every sample of the polyphase FIR of its edge outputs
    whenever their input is regular (the FIR counts its taps in samples, not seconds)."""
    return ANTIALIAS_HALF_WIDTH_PERIODS / float(rate_hz) * (1.0 + 3.0 * polyphase.REGULAR_TOL)


ANTIALIAS_MARGIN_S = antialias_margin_s(50.0)  # 0.2414 s at the default 50 Hz


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
                     n: Optional[int] = None, antialias: Optional[bool] = None,
                     input_step_s: Optional[float] = None) -> Segment:
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
        input_step_s: the gap-free segment's nominal input step (s) for the polyphase FIR
            (:func:`lowpass_eval`); default :func:`nominal_step` of ``t``, which is right when
            ``t`` is the whole segment (a streamed piece must pass its segment's).

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
    k0 = round(t0 * rate_hz)
    if abs(t0 * rate_hz - k0) < _GRID_EPS:  # on the global grid: times from global indices, the
        grid = (k0 + np.arange(n, dtype=np.float64)) / rate_hz  # same bits in any piece of a stream
    else:
        grid = t0 + np.arange(n, dtype=np.float64) / rate_hz

    on_grid = _on_grid_slice(t, grid, rate_hz)
    if on_grid is not None:
        return Segment(t0=t0, rate_hz=float(rate_hz), data=x[on_grid].astype(np.float32))
    if antialias is None:
        antialias = needs_antialias(t, rate_hz)
    if antialias:
        y = lowpass_eval(t, x, grid, rate_hz, step_s=input_step_s)
    else:
        y = _hermite(t, x, grid)
    return Segment(t0=t0, rate_hz=float(rate_hz), data=y.astype(np.float32))


def resample(rec: ImuRecording, rate_hz: float, gap_tolerance_s: float, *,
             antialias: Optional[bool] = None) -> List[Segment]:
    """Resample a recording onto the global ``rate_hz`` grid, one Segment per gap-free stretch.

    Stretches too short to hold a grid point give no segment. Whether to low-pass is decided once
    for the whole recording (median input rate) unless ``antialias`` is given; the nominal input
    step of the polyphase FIR once per stretch (:func:`nominal_step`).
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


@functools.lru_cache(maxsize=16)
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
    for a in (v, f0, f1):
        a.setflags(write=False)  # cached
    return v, f0, f1, half


def _lerp_table(v: np.ndarray, v0: float, dv: float, table: np.ndarray) -> np.ndarray:
    """Linear interpolation in a uniformly spaced table, clamped at both ends."""
    pos = np.clip((v - v0) / dv, 0.0, len(table) - 1.000001)
    k = pos.astype(np.int64)
    frac = pos - k
    return table[k] + (table[k + 1] - table[k]) * frac


def _exact_weights(ti: np.ndarray, g: np.ndarray, valid: np.ndarray, rate_hz: float) -> np.ndarray:
    """Weights of samples at times ``ti`` [B, m + 1] for outputs at ``g`` [B]: the kernel convolved
    with the linear interpolant; ``valid`` [B, m] marks the intervals that count. Unnormalised."""
    v_tab, f0_tab, f1_tab, _ = _kernel_tables(rate_hz)
    v0, dv = v_tab[0], v_tab[1] - v_tab[0]
    v = g[:, None] - ti  # v = g - tau at each sample
    f0 = _lerp_table(v, v0, dv, f0_tab)
    f1 = _lerp_table(v, v0, dv, f1_tab)
    ta, tb = ti[:, :-1], ti[:, 1:]
    hj = np.where(valid, tb - ta, 1.0)
    d0 = f0[:, :-1] - f0[:, 1:]  # integral of h over the interval (v from g - tb to g - ta)
    d1 = f1[:, :-1] - f1[:, 1:]
    gg = g[:, None]
    wa = np.where(valid, ((tb - gg) * d0 + d1) / hj, 0.0)  # weight of sample k
    wb = np.where(valid, ((gg - ta) * d0 - d1) / hj, 0.0)  # weight of sample k + 1
    w = np.zeros((len(g), ti.shape[1]))
    w[:, :-1] += wa
    w[:, 1:] += wb
    return w


def _exact_eval(t: np.ndarray, x: np.ndarray, grid: np.ndarray, rate_hz: float, block: int) -> np.ndarray:
    """The exact path of :func:`lowpass_eval` (any timestamps)."""
    n = len(t)
    half = ANTIALIAS_HALF_WIDTH_PERIODS / rate_hz
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
        valid = (ar[None, :m] < cnt[:, None]) & (i[:, 1:] > i[:, :-1])
        w = _exact_weights(t[i], g, valid, rate_hz)
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


def lowpass_eval(t: np.ndarray, x: np.ndarray, grid: np.ndarray, rate_hz: float,
                 block: int = 4096, step_s: Optional[float] = None) -> np.ndarray:
    """Low-pass ``x`` at ``grid``: the kernel convolved with the linear interpolant of the samples.

    The anti-aliased path of :func:`resample_segment`, usable on any grid. The input is taken as
    piecewise linear between samples (so irregular timestamps are handled exactly, no Riemann-sum
    error from jitter) and convolved with the windowed sinc for output rate ``rate_hz``; the result
    is divided by the kernel mass that falls inside the segment, so DC (gravity) is kept at the edges.

    Outputs whose whole support is regular (every step within ``REGULAR_TOL`` of ``step_s``) take
    the polyphase FIR of :mod:`crossmodal_har.signals.polyphase` (the same kernel's weights for
    regular samples, phase quantised to ``1 / PHASES`` of a step); the others, and every output
    when ``step_s`` is 0, the exact evaluation. Each output is a function of the samples near it
    only, summed in a fixed order: the same bits whatever the block, chunk or padding.

    Args:
        t: [T] strictly increasing sample times (s).
        x: [T, C] samples.
        grid: [n] output times (s).
        rate_hz: output rate that sets the kernel's cut-off.
        block: grid points computed at once by the exact path (memory only).
        step_s: the segment's nominal input step (s); default :func:`nominal_step` of ``t``
            (pass the segment's own when ``t`` is a piece of a longer segment); 0: exact only.

    Returns:
        [n, C] float64.
    """
    n = len(t)
    if n < 2:
        return np.repeat(x[:1], len(grid), axis=0)
    if step_s is None:
        step_s = nominal_step(t)
    out = np.empty((len(grid), x.shape[1]), dtype=np.float64)
    done = polyphase.fir_eval(t, x, grid, rate_hz, float(step_s), fir_table(float(step_s), rate_hz), out) \
        if step_s > 0 else None
    rest = np.arange(len(grid)) if done is None else np.flatnonzero(~done)
    if len(rest):
        out[rest] = _exact_eval(t, x, grid[rest], rate_hz, block)
    return out


@functools.lru_cache(maxsize=64)
def fir_table(step_s: float, rate_hz: float) -> Optional[np.ndarray]:
    """The exact kernel's weights for regular input with step ``step_s`` (s), one row per phase
    (:mod:`crossmodal_har.signals.polyphase`), each row normalised to sum 1 as the exact path
    divides by the kernel mass; None when the table would be too large (very high rate ratios)."""
    half = ANTIALIAS_HALF_WIDTH_PERIODS / rate_hz
    L = polyphase.taps_half(half, step_s)
    if polyphase.PHASES * (2 * L + 2) > polyphase.MAX_TABLE:
        return None
    ti = polyphase.phase_offsets(L) * step_s  # output at g = 0
    valid = np.ones((ti.shape[0], ti.shape[1] - 1), dtype=bool)
    w = _exact_weights(ti, np.zeros(len(ti)), valid, rate_hz)
    w /= w.sum(axis=1, keepdims=True)
    w.setflags(write=False)
    return w


def nominal_step(t: np.ndarray) -> float:
    """A gap-free segment's nominal input step (s): the median of its first ``DECIDE_SAMPLES``
    steps, decided once per segment (a streamed segment gives it the same first samples)."""
    d = np.diff(np.asarray(t[:DECIDE_SAMPLES], dtype=np.float64))
    return float(np.median(d)) if len(d) else 0.0
