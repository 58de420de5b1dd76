"""Temporal smoothing of predicted labels: a centred majority vote over consecutive ok windows, or
an HMM (Viterbi) over the model's per-window class probabilities. A classifier bundle owns its
smoother (:meth:`crossmodal_har.models.bundle.Bundle.smoother`: none, majority, or Viterbi with the
transitions it saved); both smoothers are fed the same way, ``push(labels, ok, probs)`` then
``finish()``.

``--smooth N`` replaces each ok window's label by the most frequent label among the N windows
centred on it (N odd; an even N is rounded up), counting only windows of the same *run* of
consecutive ok windows: a gap, a bad stretch or a window failing a quality check ends the run, so no
label is ever carried across missing data. Near a run's ends the vote uses the windows that exist.
Ties keep the window's own label if it is among the most frequent, else the lowest class index.

The majority filter has one parameter a clinician can read ("a label must hold for about N/2
windows") and is exact in streaming with a delay of N // 2 windows.

``--smooth hmm`` (as actinet does): a first-order HMM whose hidden state is the activity. The
transition matrix and the class prior are estimated from the training labels' window sequences at
``train-classifier`` time (:func:`estimate_transitions`, :func:`estimate_prior`; add-one Dirichlet
prior, stored in the bundle's ``hmm`` section). The emission score of a window is the log of the
model's class probability (:func:`viterbi`); the prior scores the first window of a chain. A window
that is not ok ends the chain: Viterbi restarts after it, and it is never relabelled.
:class:`StreamingViterbi` runs it over a whole recording with bounded memory (see its docstring).
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple, Union

import numpy as np

LOG_FLOOR = -1e30  # log of a zero probability: finite, so sums never produce nan (-inf - -inf)


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
    ``n`` of 0 or 1 is no smoothing (every ok window keeps its label, at once).

    :meth:`push` returns smoothed labels for a prefix of everything pushed so far (in order);
    :meth:`finish` returns the rest. Concatenated outputs equal a one-shot run exactly.
    """

    def __init__(self, n: int, n_classes: int):
        self.h = max(0, int(n) // 2)
        self.C = int(n_classes)
        #: whether a label can differ from the window's own (the raw label is then worth keeping)
        self.changes_labels = int(n) > 1
        self.ctx = np.empty(0, np.int64)  # last <= h labels already emitted of the run still open
        self.buf_labels = np.empty(0, np.int64)
        self.buf_ok = np.empty(0, bool)

    def push(self, labels: np.ndarray, ok: np.ndarray, probs: Optional[np.ndarray] = None) -> np.ndarray:
        """Add rows (``probs``, the class probabilities, is unused: the same call as
        :class:`StreamingViterbi`); returns the smoothed labels of a prefix of the rows pushed so far."""
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



# --------------------------------------------------------------------------------- HMM (Viterbi)

def _safe_log(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(p)
    return np.where(np.isfinite(out), out, np.where(out > 0, -LOG_FLOOR, LOG_FLOOR))


def estimate_transitions(sequences: Iterable[np.ndarray], n_classes: int, prior: float = 1.0) -> np.ndarray:
    """Row-stochastic transition matrix [C, C] from label sequences.

    ``A[i, j] = (count(i -> j) + prior) / (sum_k count(i -> k) + C * prior)`` over consecutive
    elements of each sequence (a symmetric Dirichlet(``prior``) on every row; ``prior=1`` is add-one).
    A class never seen as a source gets a uniform row.
    """
    C = int(n_classes)
    if C < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if not (np.isfinite(prior) and prior > 0):
        raise ValueError(f"prior must be a finite number > 0, got {prior}")
    counts = np.zeros((C, C), np.float64)
    for seq in sequences:
        s = np.asarray(seq, np.int64).ravel()
        if len(s) and (s.min() < 0 or s.max() >= C):
            raise ValueError(f"labels must be in [0, {C}), got {s.min()}..{s.max()}")
        if len(s) > 1:
            np.add.at(counts, (s[:-1], s[1:]), 1.0)
    counts += prior
    return counts / counts.sum(axis=1, keepdims=True)


def label_sequences(recording: np.ndarray, start_s: np.ndarray, labels: np.ndarray) -> List[np.ndarray]:
    """The labels of each recording's windows in time order (one sequence per recording).

    Consecutive labelled windows of a recording are neighbours even across an unlabelled stretch
    between them (HAPT's transitions between activities are short and unlabelled), so the sequences
    also count how activities follow one another.
    """
    rec = np.asarray(recording).astype(str)
    t = np.asarray(start_s, np.float64)
    y = np.asarray(labels, np.int64)
    if not (len(rec) == len(t) == len(y)):
        raise ValueError("recording, start_s and labels must have the same length")
    order = np.lexsort((t, rec))
    rec, y = rec[order], y[order]
    cuts = np.flatnonzero(rec[1:] != rec[:-1]) + 1
    return [s for s in np.split(y, cuts) if len(s)]


def estimate_prior(sequences: Iterable[np.ndarray], n_classes: int, prior: float = 1.0) -> np.ndarray:
    """Class frequencies [C] over all elements of the sequences, with the same Dirichlet(``prior``)."""
    C = int(n_classes)
    if C < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if not (np.isfinite(prior) and prior > 0):
        raise ValueError(f"prior must be a finite number > 0, got {prior}")
    counts = np.full(C, float(prior))
    for seq in sequences:
        s = np.asarray(seq, np.int64).ravel()
        if len(s) and (s.min() < 0 or s.max() >= C):
            raise ValueError(f"labels must be in [0, {C}), got {s.min()}..{s.max()}")
        counts += np.bincount(s, minlength=C)
    return counts / counts.sum()


def _check_hmm(log_trans: np.ndarray, log_prior: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    A = np.asarray(log_trans, np.float64)
    pi = np.asarray(log_prior, np.float64).ravel()
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] != len(pi):
        raise ValueError(f"log_trans must be [C, C] and log_prior [C], got {A.shape} and {pi.shape}")
    if np.isnan(A).any() or np.isnan(pi).any():
        raise ValueError("log_trans and log_prior must not contain nan")
    return np.maximum(A, LOG_FLOOR), np.maximum(pi, LOG_FLOOR)


def viterbi(log_probs: np.ndarray, log_trans: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    """Most likely state path [N] (int64) of one chain.

    Score of a path ``s``: ``log_prior[s0] + sum_t log_probs[t, s_t] + sum_t log_trans[s_{t-1}, s_t]``.
    Inputs are logs (``-inf`` is allowed and treated as a very large negative number); ties go to the
    lowest class index.
    """
    E = np.asarray(log_probs, np.float64)
    A, pi = _check_hmm(log_trans, log_prior)
    if E.ndim != 2 or E.shape[1] != len(pi):
        raise ValueError(f"log_probs must be [N, {len(pi)}], got {E.shape}")
    v = StreamingViterbi(A, pi, log_input=True)
    return v.run(E)


class StreamingViterbi:
    """Viterbi over chains of ok windows fed in pieces (``push(labels, ok, probs)`` / ``finish``).

    Memory: the forward pass keeps one score vector [C] (float64, renormalised every step) and, for
    each window of the chain still open, its backpointers [C] as uint8 (C <= 256) or uint16
    (C <= 65536): ``C`` bytes (``2C``) per window, e.g. 12 classes at a 2.5 s stride = 34,560 windows
    = 415 KB per day of an unbroken chain. When a chain ends (a window that is not ok, or the end of
    the recording) the path is backtracked and its labels are emitted; rows that are not ok get -1.
    The output is therefore delayed to the end of each chain (a clinical recording breaks at every
    gap and non-wear stretch); concatenated outputs equal a one-shot run exactly, whatever the pieces.
    """

    changes_labels = True

    def __init__(self, trans: np.ndarray, prior: np.ndarray, *, log_input: bool = False):
        if log_input:
            self.logA, self.logpi = _check_hmm(trans, prior)
        else:
            self.logA, self.logpi = _check_hmm(_safe_log(trans), _safe_log(prior))
        self.C = len(self.logpi)
        self.bp_dtype = np.uint8 if self.C <= 256 else (np.uint16 if self.C <= 65536 else np.uint32)
        self.delta: np.ndarray = np.empty(0)  # empty: no chain open
        self.bps: List[np.ndarray] = []  # backpointer blocks of the open chain, [n, C] each
        self.n_open = 0

    def run(self, log_probs: np.ndarray) -> np.ndarray:
        """One whole chain given as log probabilities [N, C] -> path [N]."""
        E = np.asarray(log_probs, np.float64)
        self._forward(np.maximum(np.nan_to_num(E, nan=LOG_FLOOR, neginf=LOG_FLOOR), LOG_FLOOR))
        return self._close()

    def push(self, labels: Optional[np.ndarray], ok: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Add rows (``labels`` is unused: the same call as :class:`StreamingSmoother`; ``probs``: the
        class probabilities [n, C]); returns the labels of every row up to the last chain that ended."""
        ok = np.asarray(ok, bool)
        probs = np.asarray(probs, np.float64)
        out: List[np.ndarray] = []
        n = len(ok)
        bounds = np.concatenate([[0], np.flatnonzero(ok[1:] != ok[:-1]) + 1, [n]]) if n else np.zeros(1, int)
        for i, j in zip(bounds[:-1], bounds[1:]):  # runs of equal ok
            if ok[i]:
                self._forward(_safe_log(probs[i:j]))
            else:
                if self.n_open:
                    out.append(self._close())
                out.append(np.full(j - i, -1, np.int64))
        return np.concatenate(out) if out else np.empty(0, np.int64)

    def finish(self) -> np.ndarray:
        return self._close() if self.n_open else np.empty(0, np.int64)

    def _forward(self, E: np.ndarray) -> None:
        if len(E) == 0:
            return
        A = self.logA
        start = 0
        if self.n_open == 0:
            self.delta = self.logpi + E[0]
            self.delta = self.delta - self.delta.max()
            self.bps.append(np.zeros((1, self.C), self.bp_dtype))  # first window: no predecessor
            start = 1
        bp = np.empty((len(E) - start, self.C), self.bp_dtype)
        delta = self.delta
        for k, t in enumerate(range(start, len(E))):
            scores = delta[:, None] + A  # [from, to]
            arg = np.argmax(scores, axis=0)
            bp[k] = arg
            delta = scores[arg, np.arange(self.C)] + E[t]
            delta = delta - delta.max()  # renormalise: scores stay near 0 however long the chain
        self.delta = delta
        if len(bp):
            self.bps.append(bp)
        self.n_open += len(E)

    def _close(self) -> np.ndarray:
        if self.n_open == 0:
            return np.empty(0, np.int64)
        bp = np.concatenate(self.bps) if len(self.bps) > 1 else self.bps[0]
        path = np.empty(self.n_open, np.int64)
        s = int(np.argmax(self.delta))
        for t in range(self.n_open - 1, -1, -1):
            path[t] = s
            s = int(bp[t, s])
        self.bps, self.n_open, self.delta = [], 0, np.empty(0)
        return path


#: what :meth:`crossmodal_har.models.bundle.Bundle.smoother` returns
Smoother = Union[StreamingSmoother, StreamingViterbi]
