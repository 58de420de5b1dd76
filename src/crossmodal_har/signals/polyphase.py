"""Polyphase FIR evaluation of a resampling kernel on regularly sampled input.

:mod:`crossmodal_har.signals.resample` gives every output sample at time ``g`` the convolution of
its kernel with the linear interpolant of the input. Where the input is regular (consecutive steps
within ``REGULAR_TOL`` of the segment's nominal step), the weights of the samples around ``g``
depend only on where ``g`` falls between two samples, its *phase* ``p`` in [0, 1). A table of the
weights for ``PHASES`` phases (built by the resampler from its exact kernel, once per rate pair)
turns the convolution into a short FIR: ``y(g) = sum_k W[q, k] * x[j - L + k]`` with ``j`` the
last sample at or before ``g`` and ``q = round(p * PHASES)``.

The phase is taken from the two samples around each output (its *local* times), so a device clock
that runs a little fast or slow, or ``.cwa`` timestamps that wiggle by tens of microseconds, stay
on this path. Each output uses only its own ``2 L + 2`` samples. The sum runs in ``einsum`` over
chunks of ``CHUNK`` global grid indices (no BLAS, whose matrix product may reorder a sum with the
matrix shape): an output gets the same bits whether the recording is resampled whole or in a
stream of blocks aligned to the grid (``infer.stream``: ``BLOCK`` is a multiple of ``CHUNK``),
tested to the bit in tests/test_resample_fir.py.

Error against the exact convolution, on exactly regular times: the phase is moved by at most
``step / (2 PHASES)`` seconds (1.2 us at 100 Hz), i.e. at most ``max|x'| * step / (2 PHASES)``,
plus float64 rounding.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

PHASES = 4096  # phase table resolution (steps of 1 / PHASES of an input step)
REGULAR_TOL = 0.002  # a step counts as regular within +-0.2 % of the nominal step
MAX_TABLE = 1 << 20  # table entries above which the exact path is used (very high ratios)
CHUNK = 4096  # grid samples per chunk: must divide the streaming windower's BLOCK
MAX_SHIFT = 4  # samples an output's FIR may move off its chunk's whole-step line on the fast path


def taps_half(half_width_s: float, step_s: float) -> int:
    """``L``: the FIR uses samples ``j - L .. j + L + 1`` around an output (kernel half-width
    ``half_width_s``), every sample whose linear-interpolation hat can overlap the kernel."""
    return int(np.floor(half_width_s / step_s)) + 1


def phase_offsets(L: int) -> np.ndarray:
    """Sample times (in steps, relative to the output) for each table row: ``[PHASES, 2L + 2]``."""
    o = np.arange(-L, L + 2, dtype=np.float64)
    p = np.arange(PHASES, dtype=np.float64) / PHASES
    return o[None, :] - p[:, None]


def fir_eval(t: np.ndarray, x: np.ndarray, grid: np.ndarray, rate_hz: float, step_s: float,
             table: Optional[np.ndarray], out: np.ndarray) -> np.ndarray:
    """Compute the outputs at ``grid`` whose support is regular; write them into ``out``.

    Args:
        t: [T] strictly increasing times (s); x: [T, C] values.
        grid: [n] output times (s) at rate ``rate_hz``; step_s: the segment's nominal input step (s).
        table: [PHASES, 2L + 2] weights (rows sum to 1), or None (nothing on this path).
        out: [n, C] float64, filled where the returned mask is True.

    Returns:
        [n] bool: the outputs computed here (the others are left to the exact path).
    """
    n, done = len(t), np.zeros(len(grid), dtype=bool)
    if table is None or n < table.shape[1] + 1 or not len(grid):
        return done
    K = table.shape[1]
    L = (K - 2) // 2
    dt = np.diff(t)
    bad = np.abs(dt - step_s) > REGULAR_TOL * step_s
    # irregular steps before sample i; None when every step is regular (the usual case: nothing to check)
    nbad = np.concatenate([[0], np.cumsum(bad)]) if bad.any() else None
    j = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, n - 2)
    tj = t[j]
    q = np.rint((grid - tj) / dt[j] * PHASES).astype(np.int64)
    inside = (grid >= tj) & (q >= 0) & (q <= PHASES)
    wrap = q == PHASES  # rounds up onto the next sample: phase 0 there
    j = j + wrap
    q[wrap] = 0
    ok = inside & (j >= L) & (j <= n - L - 2)  # the support j - L .. j + L + 1 inside the samples
    base = np.where(ok, j - L, 0)
    if nbad is not None:
        ok &= nbad[np.minimum(base + K - 1, n - 1)] == nbad[base]  # every step in the support regular
    # Chunks of CHUNK global grid indices: a stream cut into blocks of a multiple of CHUNK grid
    # samples makes the same chunks, so the same choices below (they can change the bits).
    k = np.rint(grid * rate_hz).astype(np.int64)
    chunk = k // CHUNK
    cuts = np.flatnonzero(np.diff(chunk)) + 1
    xt = None
    # a channel that is 0.0 throughout (an accelerometer-only model's gyroscope columns) gives 0.0
    # whatever the weights: it is not summed (half the work for such recordings; the same values)
    live = np.array([c for c in range(x.shape[1]) if x[0, c] != 0 or x[:, c].any()], dtype=np.int64)
    for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(grid)]):
        if ok[a:b].all():  # usually every output of the chunk: slices, no index arrays
            sel = rows = slice(a, b)
        else:
            sel = rows = np.flatnonzero(ok[a:b]) + a
            if not len(sel):
                continue
        if xt is None:  # the live channels as contiguous rows (one copy: no index array when all are live)
            xt = np.ascontiguousarray((x if len(live) == x.shape[1] else x[:, live]).T)
        if len(live) == x.shape[1]:
            out[rows] = _fir_chunk(xt, base[sel], q[sel], k[sel], table)
        else:
            out[rows] = 0.0
            if len(live):
                cols = slice(live[0], live[-1] + 1) if live[-1] - live[0] + 1 == len(live) else live
                if not isinstance(rows, slice) and not isinstance(cols, slice):
                    rows = rows[:, None]  # two index arrays: every selected row by every live column
                out[rows, cols] = _fir_chunk(xt, base[sel], q[sel], k[sel], table)
        done[sel] = True
    return done


_PADDED: dict = {}  # id(table) -> (table, [PHASES * (K + 2 MAX_SHIFT)]): at most a few rate pairs


def _padded_table(table: np.ndarray) -> np.ndarray:
    """``table`` with ``MAX_SHIFT`` zero columns on each side, flattened (``fir_table``'s tables are made
    once per rate pair, so they are kept here by identity): row ``q``'s weights at shift ``s`` in a
    row of ``Kw`` taps are the ``Kw`` values from ``q * (K + 2 MAX_SHIFT) + MAX_SHIFT - s`` on."""
    hit = _PADDED.get(id(table))
    if hit is None or hit[0] is not table:
        if len(_PADDED) >= 32:
            _PADDED.clear()
        padded = np.zeros((table.shape[0], table.shape[1] + 2 * MAX_SHIFT))
        padded[:, MAX_SHIFT:MAX_SHIFT + table.shape[1]] = table
        padded = padded.ravel()
        padded.setflags(write=False)
        hit = _PADDED[id(table)] = (table, padded)
    return hit[1]


def _strided(a: np.ndarray, start: int, shape: tuple, strides: tuple) -> np.ndarray:
    """A read-only view of C-contiguous ``a``'s memory from its element ``start`` (numpy's
    ``as_strided`` without its per-call overhead, a tenth of the FIR's time in 2,000 calls a day)."""
    v = np.ndarray(shape, dtype=a.dtype, buffer=a, offset=start * a.itemsize, strides=strides)
    v.flags.writeable = False
    return v


def _fir_chunk(xt: np.ndarray, base: np.ndarray, q: np.ndarray, k: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``y_i = sum_k table[q_i, k] * x[base_i + k]`` for one chunk of outputs (grid indices ``k``).

    Where the bases follow the grid with a whole step ``d`` (give or take ``MAX_SHIFT`` samples:
    a clock's wiggle moves an output across a sample), each row's weights are placed at its shift
    in a row of ``2 L + 2 + shift span`` taps and the chunk is one ``einsum`` over a strided view
    (no copy); otherwise (a ratio of rates that is not whole, such as 90 -> 50 Hz) each row's taps
    are gathered from the same view and summed by the same ``einsum`` (it was a loop over the taps:
    4.2 s of a 24-hour 90 Hz .gt3x's predict)."""
    K, m = table.shape[1], len(base)
    span_k = int(k[-1] - k[0])
    d = int(np.rint((base[-1] - base[0]) / span_k)) if span_k > 0 else 0
    ref = base[0] + d * (k - k[0])
    shift = base - ref
    lo, hi = int(shift.min()), int(shift.max())
    if d <= 0 or hi - lo > MAX_SHIFT:  # a rate ratio that is not whole (90 -> 50 Hz): each row's taps gathered
        taps = np.lib.stride_tricks.sliding_window_view(xt, K, axis=1)[:, base]  # [C, m, K]
        return np.einsum("cmk,mk->mc", taps, table[q])
    Kw = K + hi - lo
    rows = k - k[0]
    if lo == hi and m == span_k + 1:  # every row on the line, none missing: the table's rows as they are
        w = table[q]
    else:  # each row's weights at its shift (a window of the padded table: zeros around them);
        # rows missing from the selection (the exact path's) get zero weights
        flat = _padded_table(table)  # every run of Kw values of it as a row, taken by its start
        starts = q * (K + 2 * MAX_SHIFT) + (MAX_SHIFT + lo) - shift
        picked = _strided(flat, 0, (len(flat) - Kw + 1, Kw), (flat.itemsize,) * 2)[starts]  # [m, Kw]
        if m == span_k + 1:
            w = picked
        else:
            w = np.zeros((span_k + 1, Kw))
            w[rows] = picked
    r0, r1 = int(base[0] + lo), int(base[0] + lo + d * span_k + Kw)
    src, first = xt, r0
    if r0 < 0 or r1 > xt.shape[1]:  # rows off this chunk's line reach past the data: zero weights
        src = np.concatenate([np.zeros((len(xt), max(-r0, 0))), xt[:, max(r0, 0):r1],  # there, so
                              np.zeros((len(xt), max(r1 - xt.shape[1], 0)))], axis=1)  # zeros change no sum
        first = 0
    # the windows of Kw samples every d samples from sample r0: [C, n_out, Kw]
    n_out, item = (r1 - r0 - Kw) // d + 1, src.itemsize
    view = _strided(src, first, (len(src), n_out, Kw), (src.shape[1] * item, d * item, item))
    y = np.einsum("cmk,mk->mc", view, w)  # [span_k + 1, C]; rows not in this chunk's selection unused
    return y if m == span_k + 1 else y[rows]
