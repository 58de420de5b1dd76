"""Temporal smoothing of predicted labels: a centred majority vote over consecutive ok windows.

``--smooth N`` replaces each ok window's label by the most frequent label among the N windows
centred on it (N odd; an even N is rounded up), counting only windows of the same *run* of
consecutive ok windows: a gap, a bad stretch or a window failing a quality check ends the run, so no
label is ever carried across missing data. Near a run's ends the vote uses the windows that exist.
Ties keep the window's own label if it is among the most frequent, else the lowest class index.

We chose a majority filter over an HMM because it has one parameter a clinician can read ("a label
must hold for about N/2 windows"), needs no transition matrix estimated from data we do not have at
inference time, and is exact in streaming with a delay of N // 2 windows.
"""

from __future__ import annotations

import numpy as np


def majority_smooth(labels: np.ndarray, ok: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    """Smooth a whole sequence at once (reference implementation; see :class:`StreamingSmoother`).

    Args:
        labels: [N] int class indices (ignored where not ``ok``).
        ok: [N] bool, windows that have a label.
        n: filter length in windows.
        n_classes: number of classes.

    Returns:
        [N] int smoothed labels (-1 where not ok).
    """
    sm = StreamingSmoother(n, n_classes)
    a = sm.push(labels, ok)
    b = sm.finish()
    return np.concatenate([a, b])


class StreamingSmoother:
    """Centred majority filter over runs of ok windows, fed in pieces; output lags by ``n // 2``.

    :meth:`push` returns smoothed labels for a prefix of everything pushed so far (in order);
    :meth:`finish` returns the rest. Concatenated outputs equal a one-shot run exactly.
    """

    def __init__(self, n: int, n_classes: int):
        self.h = max(0, int(n) // 2)
        self.C = int(n_classes)
        self.ctx = np.empty(0, np.int64)  # last <= h labels already emitted of the run still open
        self.buf_labels = np.empty(0, np.int64)
        self.buf_ok = np.empty(0, bool)

    def push(self, labels: np.ndarray, ok: np.ndarray) -> np.ndarray:
        self.buf_labels = np.concatenate([self.buf_labels, np.asarray(labels, np.int64)])
        self.buf_ok = np.concatenate([self.buf_ok, np.asarray(ok, bool)])
        return self._emit(final=False)

    def finish(self) -> np.ndarray:
        return self._emit(final=True)

    def _emit(self, final: bool) -> np.ndarray:
        lab, ok = self.buf_labels, self.buf_ok
        n = len(lab)
        if n == 0:
            return np.empty(0, np.int64)
        if self.h == 0:
            out = np.where(ok, lab, -1)
            self.buf_labels, self.buf_ok = lab[:0], ok[:0]
            return out
        h, c = self.h, len(self.ctx)
        L = np.concatenate([self.ctx, np.where(ok, lab, 0)])
        OK = np.concatenate([np.ones(c, bool), ok])
        m = len(L)
        # run boundaries over L (ctx is part of the run the buffer starts with, if that row is ok)
        idx = np.arange(m)
        starts_run = OK & np.concatenate([[True], ~OK[:-1]])
        run_start = np.maximum.accumulate(np.where(starts_run, idx, 0))
        ends_run = OK & np.concatenate([~OK[1:], [True]])
        run_end = np.minimum.accumulate(np.where(ends_run, idx + 1, m)[::-1])[::-1]  # exclusive
        onehot = np.zeros((m + 1, self.C), np.int64)
        onehot[1:][OK, :] = np.eye(self.C, dtype=np.int64)[L[OK]]
        cs = np.cumsum(onehot, axis=0)
        lo = np.maximum(idx - h, run_start)
        hi = np.minimum(idx + h + 1, run_end)
        counts = cs[hi] - cs[lo]
        score = counts * 2 + np.eye(self.C, dtype=np.int64)[L]  # own label breaks ties
        smoothed = np.where(OK, np.argmax(score, axis=1), -1)
        # a row is final when its right context is known: the run ended inside L, or i + h < m
        open_tail = OK[-1] and not final
        final_row = np.ones(m, bool)
        if open_tail:
            final_row = ~((run_end == m) & (idx + h + 1 > m))
        body = slice(c, m)
        fr = final_row[body]
        n_emit = int(np.argmin(fr)) if not fr.all() else len(fr)
        out = smoothed[body][:n_emit]
        # new context: the emitted ok labels of a run that continues into what remains
        emitted_end = c + n_emit
        if n_emit < len(fr) and OK[emitted_end]:
            rs = max(run_start[emitted_end], emitted_end - h)
            self.ctx = L[rs:emitted_end].copy()
        else:
            self.ctx = np.empty(0, np.int64)
        self.buf_labels = lab[n_emit:]
        self.buf_ok = ok[n_emit:]
        return out

