"""Streaming windower: raw IMU chunks in, model-ready windows and marked bad stretches out.

The result never depends on how the input was cut into chunks. Three things make that exact:

* **Resampling in fixed blocks on the absolute grid.** Grid sample ``g`` sits at time ``g / rate``
  (the grid of :func:`crossmodal_har.signals.resample.resample_segment`, anchored at absolute time).
  Samples are produced in blocks ``[k*B, (k+1)*B)`` of grid indices, each from exactly the raw samples
  within ``ANTIALIAS_MARGIN_S`` (plus two) of the block, clipped to the gap-free segment, with the
  segment's nominal input step (decided from its first ``DECIDE_SAMPLES`` samples, as
  :func:`crossmodal_har.signals.resample.resample` does for a whole segment). A block is
  computed only once raw data beyond its right margin has arrived (or the segment has ended), so
  every block sees the same input whatever the chunking; only the memory held between chunks
  (about one block plus the margin) depends on it.
* **Median filter with carried context.** The filter is a selection, so a sample at least
  ``kernel // 2`` away from the buffer edges is exact; the buffer keeps that many samples of
  context, and true segment edges are filtered as the edges of the segment.
* **Gaps and bad rows across chunk borders.** The last good sample is carried, so a time step
  longer than ``gap_tolerance_s`` (or a run of rows with missing / non-finite values) splits the
  recording wherever it falls. No window ever spans one; each becomes a :class:`Marker` row.

Window starts are ``g_first + k * stride`` on each segment's grid (``g_first`` = its first grid
sample), as in :func:`crossmodal_har.signals.windows.window_segments`.

``recording`` normalisation needs statistics of the whole recording before the first window: a
first pass (:func:`recording_stats_stream`) runs a windower that only collects them (every filtered
sample once, as :func:`crossmodal_har.signals.windows.segments_stats` does in one go), and the
second pass gets them as ``stats``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Tuple, Union

import numpy as np

from crossmodal_har.signals import resample, windows
from crossmodal_har.signals.normalize import RecordingStats, apply_recording_stats
from crossmodal_har.signals.status import STATUS_GAP, STATUS_NON_FINITE, STATUS_SHORT
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.windows import MAX_NETWORK_KERNEL, sorting_network_median  # noqa: F401 (tests)

log = logging.getLogger(__name__)

BLOCK = 8192  # grid samples per resampling block (fixed: the output must not depend on it varying;
# a multiple of polyphase.CHUNK, so the FIR makes the same choices as on a whole recording)
MAX_WINDOWS_PER_BATCH = 1024
DECIDE_SAMPLES = resample.DECIDE_SAMPLES  # good samples that decide anti-aliasing (once) and a segment's step
EXTRA = 2  # input samples beyond the margin on each side (Hermite slopes use two)  # windows materialised at once (bounds memory for tiny strides)


@dataclass
class SignalOps:
    """The signal-layer functions the windower calls (the real ones by default; tests may swap)."""

    resample_segment: Callable  # (t, x, rate_hz, *, t0, n, antialias) -> Segment (data [n, 6])
    median_filter: Callable  # (x [n, 6], kernel) -> [n, 6]
    check_quality: Callable  # (x [N, W, 6], cfg) -> reasons [N] ("" = ok)
    antialias_margin_s: Callable  # rate_hz -> input context (s) beyond an output stretch's edges
    grid_start: Callable  # (t_first, rate_hz) -> first grid index at or after t_first
    grid_stop: Callable  # (t_last, rate_hz) -> last grid index at or before t_last
    needs_antialias: Callable  # (t, rate_hz) -> bool, from the median input step
    nominal_step: Callable  # t (a segment's first samples) -> its nominal input step (s)


def default_ops() -> SignalOps:
    return SignalOps(
        resample_segment=resample.resample_segment,
        median_filter=windows.median_filter,
        check_quality=windows.check_quality,
        antialias_margin_s=resample.antialias_margin_s,
        grid_start=resample.grid_start,
        grid_stop=resample.grid_stop,
        needs_antialias=resample.needs_antialias,
        nominal_step=resample.nominal_step,
    )


@dataclass
class WindowBatch:
    """Consecutive windows of one segment. ``x`` is [n, W, 6] float32 in g and rad/s."""

    start: np.ndarray  # [n] float64 s
    end: np.ndarray  # [n] float64 s
    x: np.ndarray
    reason: np.ndarray  # [n] object: "" if ok, else a quality reason


@dataclass
class Marker:
    """A stretch with no windows: a gap, rows with missing values, or a too-short segment."""

    start: float
    end: float
    status: str


Item = Union[WindowBatch, Marker]


class StreamingWindower:
    """Turns a recording fed chunk by chunk into :class:`WindowBatch` es and :class:`Marker` s.

    Args:
        cfg: preprocessing (rate, window, stride, median kernel, gap tolerance, quality thresholds).
        ops: signal functions (default: :func:`default_ops`).
        stats: ``(mean [6], std [6])`` of the whole recording, required when
            ``cfg.normalization == "recording"`` (from :func:`recording_stats_stream`); the windows
            then come out z-scored with them (quality is judged before, on physical units).

    With ``collect`` every filtered sample is also fed to ``self.collected`` (a
    :class:`RecordingStats`; the first pass of :func:`recording_stats_stream`).
    Call :meth:`push` with consecutive rows (``t`` seconds, ``x`` [n, 6] canonical units; rows
    with any non-finite value are bad rows), then :meth:`finish`. Items come out in time order.
    """

    def __init__(self, cfg: PreprocessConfig, ops: Optional[SignalOps] = None,
                 stats: Optional[Tuple[np.ndarray, np.ndarray]] = None, collect: bool = False):
        self.cfg = cfg
        self.ops = ops or default_ops()
        if cfg.normalization == "recording" and stats is None:
            raise ValueError("recording normalisation needs the recording's statistics (recording_stats_stream)")
        self.stats = stats
        self.collected = RecordingStats()
        self.collect = collect
        self.rate = float(cfg.rate_hz)
        self.W = cfg.window_samples
        self.S = cfg.stride_samples
        k = int(cfg.median_kernel)
        self.kernel = k if k > 1 else 0
        self.h = k // 2 if k > 1 else 0
        self.margin = max(0.0, float(self.ops.antialias_margin_s(self.rate)))
        # Whether to low-pass is decided once per stream, from the first DECIDE_SAMPLES good samples
        # (not per block or per chunk, which could flip near the threshold).
        self.antialias: Optional[bool] = None
        self._decide_t: List[np.ndarray] = []  # times of the first samples, one array per segment piece
        self._decide_n = 0
        self.tol = float(cfg.gap_tolerance_s)
        # stream state
        self.last_good_t: Optional[float] = None
        self.first_good_t: Optional[float] = None
        self.bad_since: Optional[float] = None  # earliest finite time in the current bad run
        self.bad_last: Optional[float] = None
        self.in_bad = False
        self.rows = 0
        self.bad_rows = 0
        self._reset_segment()

    # ------------------------------------------------------------------ segment state

    def _reset_segment(self) -> None:
        self.seg_open = False
        self.seg_t_first = 0.0
        self.g_first = 0
        self.g_next = 0
        self.raw_t = np.empty(0, np.float64)
        self.raw_x = np.empty((0, 6), np.float64)
        self.res = np.empty((0, 6), np.float32)
        self.res_g0 = 0
        self.filt = np.empty((0, 6), np.float32)
        self.filt_g0 = 0
        self.win_next = 0
        self.seg_step: Optional[float] = None  # nominal input step, decided from the first samples
        self.seg_windows = 0
        self.filtered_any = False

    def _open_segment(self, t0: float) -> None:
        self._reset_segment()
        self.seg_open = True
        self.seg_t_first = t0
        self.g_first = int(self.ops.grid_start(t0, self.rate))
        self.g_next = self.g_first
        self.res_g0 = self.g_first
        self.filt_g0 = self.g_first
        self.win_next = self.g_first

    # ------------------------------------------------------------------ public API

    def push(self, t: np.ndarray, x: np.ndarray) -> List[Item]:
        """Feed consecutive rows; returns the items that are final."""
        t = np.asarray(t, dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        n = len(t)
        self.rows += n
        out: List[Item] = []
        if n == 0:
            return out
        good = windows.finite_rows(t, x)
        if good is None:  # every row good, the usual case
            self._good_run(t, x, out)
            return out
        # runs of equal `good`
        change = np.flatnonzero(good[1:] != good[:-1]) + 1
        bounds = np.concatenate([[0], change, [n]])
        for a, b in zip(bounds[:-1], bounds[1:]):
            if good[a]:
                self._good_run(t[a:b], x[a:b], out)
            else:
                self._bad_run(t[a:b], out)
        return out

    def finish(self) -> List[Item]:
        """End of the recording: flush the open segment and any trailing bad rows."""
        out: List[Item] = []
        if self.seg_open:
            self._close_segment(out)
        if self.in_bad:
            # trailing rows with missing values (blank lines without any time are ignored)
            if self.bad_last is not None:
                start = self.last_good_t if self.last_good_t is not None else self.bad_since
                out.append(Marker(float(start), max(float(self.bad_last), float(start)), STATUS_NON_FINITE))
            self.in_bad = False
        return out

    # ------------------------------------------------------------------ rows

    def _bad_run(self, t: np.ndarray, out: List[Item]) -> None:
        self.bad_rows += len(t)
        if self.seg_open:
            self._close_segment(out)
        ft = t[np.isfinite(t)]
        if not self.in_bad:
            self.in_bad = True
            self.bad_since = None
            self.bad_last = None
        if len(ft):
            lo, hi = float(ft.min()), float(ft.max())
            self.bad_since = lo if self.bad_since is None else min(self.bad_since, lo)
            self.bad_last = hi if self.bad_last is None else max(self.bad_last, hi)

    def _good_run(self, t: np.ndarray, x: np.ndarray, out: List[Item]) -> None:
        if self.first_good_t is None:
            self.first_good_t = float(t[0])
        if self.in_bad:
            start = self.last_good_t if self.last_good_t is not None else self.bad_since
            if start is not None:
                out.append(Marker(float(start), float(t[0]), STATUS_NON_FINITE))
            self.in_bad = False
        # split at gaps, including the step from the last good sample of the previous chunk
        prev = self.last_good_t if self.seg_open else None
        dt = np.diff(t)
        cuts = list(np.flatnonzero(dt > self.tol) + 1)
        if prev is not None and t[0] - prev > self.tol:
            cuts = [0] + cuts
        bounds = [0] + [c for c in cuts if c > 0] + [len(t)]
        first_is_cut = bool(cuts) and cuts[0] == 0
        for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            if a == b:
                continue
            if j > 0 or first_is_cut:
                gap_from = self.last_good_t
                self._close_segment(out)
                out.append(Marker(float(gap_from), float(t[a]), STATUS_GAP))
            if not self.seg_open:
                self._open_segment(float(t[a]))
            self._note_decision_samples(t[a:b])
            self._append_raw(t[a:b], x[a:b])
            self.last_good_t = float(t[b - 1])
            self._advance(False, out)

    def _note_decision_samples(self, t: np.ndarray) -> None:
        if self.antialias is not None or self._decide_n >= DECIDE_SAMPLES:
            return
        take = t[:DECIDE_SAMPLES - self._decide_n]
        if self._decide_t and self.seg_open and len(self.raw_t):  # continue the current piece
            self._decide_t[-1] = np.concatenate([self._decide_t[-1], take])
        else:
            self._decide_t.append(take.copy())
        self._decide_n += len(take)

    def _decide(self, force: bool) -> bool:
        """Decide anti-aliasing once enough samples were seen (or now, if ``force``)."""
        if self.antialias is not None:
            return True
        if self._decide_n < DECIDE_SAMPLES and not force:
            return False
        steps = [np.diff(p) for p in self._decide_t if len(p) > 1]
        if steps:
            dt = np.concatenate(steps)
            # same rule as resample.needs_antialias, on within-segment steps only
            self.antialias = bool(self.ops.needs_antialias(np.concatenate([[0.0], np.cumsum(dt)]), self.rate))
        else:
            self.antialias = False
        self._decide_t = []
        return True

    def _append_raw(self, t: np.ndarray, x: np.ndarray) -> None:
        if len(self.raw_t):
            self.raw_t = np.concatenate([self.raw_t, t])
            self.raw_x = np.concatenate([self.raw_x, x])
        else:
            self.raw_t = t.copy()
            self.raw_x = x.copy()

    def _close_segment(self, out: List[Item]) -> None:
        if not self.seg_open:
            return
        self._advance(True, out)
        if self.seg_windows == 0:
            out.append(Marker(self.seg_t_first, float(self.last_good_t), STATUS_SHORT))
        self._reset_segment()

    # ------------------------------------------------------------------ resample → filter → windows

    def _advance(self, closing: bool, out: List[Item]) -> None:
        produced = self._resample_blocks(closing)
        if produced or closing:
            self._filter(closing)
            self._windows(out)

    def _resample_blocks(self, closing: bool) -> bool:
        rate, M = self.rate, self.margin
        raw_t = self.raw_t
        if not len(raw_t) or not self._decide(force=closing):
            return False
        if self.antialias and self.seg_step is None:  # once per segment, from its first samples
            if len(raw_t) < DECIDE_SAMPLES and not closing:
                return False
            self.seg_step = float(self.ops.nominal_step(raw_t[:DECIDE_SAMPLES]))
        g_end = int(self.ops.grid_stop(float(self.last_good_t), rate)) + 1 if closing else None
        produced = []
        while True:
            g0 = self.g_next
            g1 = (g0 // BLOCK + 1) * BLOCK
            if closing:
                g1 = min(g1, g_end)
                if g0 >= g_end:
                    break
            t0 = g0 / rate
            t1 = (g1 - 1) / rate
            j = int(np.searchsorted(raw_t, t1 + M, side="right"))  # first sample beyond the margin
            if not closing and j + EXTRA > len(raw_t):
                break
            i1 = min(j + EXTRA, len(raw_t))
            i0 = max(int(np.searchsorted(raw_t, t0 - M, side="left")) - EXTRA, 0)
            seg = self.ops.resample_segment(raw_t[i0:i1], self.raw_x[i0:i1], rate, t0=t0, n=g1 - g0,
                                            antialias=self.antialias, input_step_s=self.seg_step)
            data = np.asarray(seg.data, dtype=np.float32)
            if data.shape != (g1 - g0, 6):
                raise RuntimeError(f"resample_segment returned {data.shape}, expected {(g1 - g0, 6)}")
            produced.append(data)
            self.g_next = g1
            # keep only the raw samples the next block can need
            k = max(int(np.searchsorted(raw_t, self.g_next / rate - M, side="left")) - EXTRA, 0)
            if k > 0:
                raw_t = raw_t[k:]
                self.raw_x = self.raw_x[k:]
        self.raw_t = raw_t
        if produced:
            self.res = np.concatenate([self.res] + produced) if len(self.res) else (
                produced[0] if len(produced) == 1 else np.concatenate(produced))
        return bool(produced)

    def _filter(self, closing: bool) -> None:
        res = self.res
        if not len(res):
            return
        if not self.kernel:
            self._append_filtered(res)
            self.res_g0 += len(res)
            self.res = res[:0]
            return
        h = self.h
        valid_from = h if self.filtered_any else 0  # the segment's true start is filtered as an edge
        valid_to = len(res) if closing else len(res) - h
        if valid_to <= valid_from:
            return
        f = np.asarray(self._median(res, at_start=not self.filtered_any, at_end=closing), dtype=np.float32)
        self.filtered_any = True
        self._append_filtered(f[valid_from:valid_to])
        keep = valid_to - h
        self.res = res[keep:]
        self.res_g0 += keep

    def _median(self, res: np.ndarray, at_start: bool, at_end: bool) -> np.ndarray:
        """The signal layer's median filter, computed fast where the edge rule does not matter.

        Interior samples (``kernel // 2`` or more from both ends) take the exact median by a
        min/max sorting network (a selection, so bit-identical to any correct median filter);
        samples at a true segment edge come from ``ops.median_filter`` itself, so its edge rule
        (mirror, nearest, ...) is followed exactly. Samples near a buffer end that is not a segment
        edge are never used (they are recomputed with more context on the next call).
        """
        k, h, n = self.kernel, self.h, len(res)
        if k > MAX_NETWORK_KERNEL or n <= 4 * k:
            return self.ops.median_filter(res, k)
        out = np.empty_like(res)
        out[h:n - h] = sorting_network_median(res, k)
        if at_start:
            out[:h] = np.asarray(self.ops.median_filter(res[:2 * k], k))[:h]
        if at_end:
            out[n - h:] = np.asarray(self.ops.median_filter(res[n - 2 * k:], k))[2 * k - h:]
        return out

    def _append_filtered(self, f: np.ndarray) -> None:
        if self.collect:
            self.collected.push(f)
        self.filt = np.concatenate([self.filt, f]) if len(self.filt) else f.copy()

    def _windows(self, out: List[Item]) -> None:
        W, S = self.W, self.S
        n_avail = len(self.filt)
        last_start = self.filt_g0 + n_avail - W  # largest admissible start
        if self.win_next > last_start:
            drop = min(self.win_next - self.filt_g0, n_avail)
            if drop > 0:
                self.filt = self.filt[drop:].copy()
                self.filt_g0 += drop
            return
        starts = np.arange(self.win_next, last_start + 1, S, dtype=np.int64)
        view = np.lib.stride_tricks.sliding_window_view(self.filt, W, axis=0)  # [n-W+1, 6, W]
        for a in range(0, len(starts), MAX_WINDOWS_PER_BATCH):
            s = starts[a:a + MAX_WINDOWS_PER_BATCH]
            x = np.ascontiguousarray(view[s - self.filt_g0].transpose(0, 2, 1), dtype=np.float32)
            reasons = np.asarray(self.ops.check_quality(x, self.cfg), dtype=object)
            if self.stats is not None:
                x = apply_recording_stats(x, self.stats)
            out.append(WindowBatch(start=s / self.rate, end=(s + W) / self.rate, x=x, reason=reasons))
        self.seg_windows += len(starts)
        self.win_next = int(starts[-1]) + S
        drop = min(self.win_next - self.filt_g0, n_avail)  # win_next may lie beyond (stride > window)
        if drop > 0:
            self.filt = self.filt[drop:].copy()
            self.filt_g0 += drop


def recording_stats_stream(chunks: Iterable, cfg: PreprocessConfig,
                           ops: Optional[SignalOps] = None) -> Tuple[np.ndarray, np.ndarray]:
    """First pass for ``recording`` normalisation: the per-channel ``(mean, std)`` of every
    resampled, filtered sample of a recording fed as chunks (objects with ``t`` and ``data``)."""
    w = StreamingWindower(dataclasses.replace(cfg, normalization="none"), ops, collect=True)
    for chunk in chunks:
        w.push(chunk.t, chunk.data)
    w.finish()
    if w.collected.n is None:  # no sample at all: no window will need the statistics
        return np.zeros(6), np.ones(6)
    return w.collected.finish()
