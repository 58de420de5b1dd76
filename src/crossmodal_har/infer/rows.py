"""The rows of ``predict``'s output, from model results to the CSV, in time order.

:class:`RowPipeline` turns windows and markers into rows with the model's outputs (batches are
formed from the sequence of ok windows, never from chunk contents); :class:`NonwearGate` holds rows
until the non-wear detector has decided their time and marks non-wear (and the device's idle-sleep)
windows;
:class:`SmoothedWriter` feeds them through the bundle's smoother (which lags) into the summary, the
day aggregator and :class:`CsvWriter`, which writes the CSV columns (see
:mod:`crossmodal_har.infer.predict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from crossmodal_har.infer.clinical_report import DayAggregator
from crossmodal_har.infer.csvsafe import csv_cell
from crossmodal_har.infer.nonwear import NonwearDetector, in_stretches
from crossmodal_har.infer.runtime import BatchedRunner
from crossmodal_har.infer.stream import Marker, WindowBatch
from crossmodal_har.infer.summary import Summary
from crossmodal_har.models.smoothing import Smoother
from crossmodal_har.signals.clock import TimeBase
from crossmodal_har.signals.status import NONWEAR_REPLACES, STATUS_IDLE_SLEEP, STATUS_NONWEAR, STATUS_OK, has_window


# --------------------------------------------------------------------------------- rows

@dataclass
class Rows:
    """A block of output rows (in time order)."""

    start: np.ndarray
    end: np.ndarray
    status: np.ndarray  # object
    ok_index: np.ndarray  # global index among ok windows, -1 for other rows


class RowPipeline:
    """Windows/markers in, finished rows (with model outputs) out, in order."""

    def __init__(self, model: BatchedRunner):
        self.model = model
        self.pending: List[Rows] = []
        self.next_ok = 0

    def add(self, item: Any) -> None:
        if isinstance(item, Marker):
            self.pending.append(Rows(np.array([item.start]), np.array([item.end]),
                                     np.array([item.status], dtype=object), np.array([-1])))
            return
        assert isinstance(item, WindowBatch)
        ok = item.reason == ""
        idx = np.full(len(ok), -1, np.int64)
        n_ok = int(ok.sum())
        idx[ok] = np.arange(self.next_ok, self.next_ok + n_ok)
        self.next_ok += n_ok
        status = np.where(ok, STATUS_OK, item.reason).astype(object)
        self.pending.append(Rows(item.start, item.end, status, idx))
        self.model.add(item.x[ok] if n_ok < len(ok) else item.x)

    def add_rows(self, rows: Rows, xs: np.ndarray) -> None:
        """Rows already marked by the non-wear gate (:func:`item_rows`, then :class:`NonwearGate`),
        ``xs`` their windows ([n, W, 6], row-aligned): only the rows still ``ok`` go to the model, so a
        window found to be non-wear costs no model work (and when every row is ok, ``xs`` goes as it is)."""
        ok = rows.status == STATUS_OK
        n_ok = int(ok.sum())
        idx = np.full(len(ok), -1, np.int64)
        idx[ok] = np.arange(self.next_ok, self.next_ok + n_ok)
        self.next_ok += n_ok
        self.pending.append(Rows(rows.start, rows.end, rows.status, idx))
        if n_ok:
            self.model.add(xs if n_ok == len(ok) else xs[ok])

    def ready(self, final: bool = False) -> List[Tuple[Rows, Optional[np.ndarray]]]:
        """Yield (Rows, outputs for their ok rows) for every pending row whose results exist."""
        if final:
            self.model.flush()
        done = self.model.done
        out = []
        while self.pending:
            r = self.pending[0]
            okr = r.ok_index >= 0
            cut = len(r.ok_index)
            if okr.any() and r.ok_index[okr].max() >= done:
                blocked = np.flatnonzero(okr & (r.ok_index >= done))
                cut = int(blocked[0])
            if cut == 0:
                break
            head = Rows(r.start[:cut], r.end[:cut], r.status[:cut], r.ok_index[:cut])
            hok = head.ok_index[head.ok_index >= 0]
            res = self.model.take(int(hok.max()) + 1) if len(hok) else None
            out.append((head, res))
            if cut == len(r.ok_index):
                self.pending.pop(0)
            else:
                self.pending[0] = Rows(r.start[cut:], r.end[cut:], r.status[cut:], r.ok_index[cut:])
                break
        return out


def item_rows(item: Any) -> Tuple[Rows, np.ndarray]:
    """A windower item as rows (``ok_index`` still -1) and their windows, row-aligned: the batch's
    ``x`` [n, W, 6] itself (no copy; the gate only slices it), for a marker one empty row [1, 0, 6]
    (a marker is never ok, so its row is never read), for the gate before the model."""
    if isinstance(item, Marker):
        return (Rows(np.array([item.start]), np.array([item.end]), np.array([item.status], dtype=object),
                     np.array([-1])), np.empty((1, 0, 6), np.float32))
    n = len(item.start)
    status = np.where(item.reason == "", STATUS_OK, item.reason).astype(object)
    return Rows(item.start, item.end, status, np.full(n, -1, np.int64)), item.x


def results_rows(rows: Rows, res: Optional[np.ndarray], n_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """Probabilities [n, C] (NaN where a row has no model output) and raw labels [n] (-1 there)."""
    n = len(rows.start)
    probs = np.full((n, n_classes), np.nan)
    raw = np.full(n, -1, np.int64)
    ok = rows.ok_index >= 0
    if res is not None:
        probs[ok] = res
        raw[ok] = np.argmax(res, axis=1)
    return probs, raw


# --------------------------------------------------------------------------------- writer

class CsvWriter:
    """Writes the header, then blocks of rows: times as ``%.6f`` s, ISO timestamps when the timebase
    is absolute, names formula-safe (:func:`crossmodal_har.infer.csvsafe.csv_cell`)."""

    def __init__(self, fh, class_names: List[str], smoothing: bool, timebase: Optional[TimeBase] = None):
        self.fh = fh
        self.names = class_names
        self.smoothing = smoothing
        self.timebase = timebase if timebase is not None and timebase.absolute else None
        cols = ["start", "end"] + (["timestamp"] if self.timebase else []) + ["status", "label"] + \
            (["label_raw"] if smoothing else []) + [f"p_{c}" for c in class_names]
        fh.write(",".join(csv_cell(c) for c in cols) + "\n")

    def write(self, rows: Rows, labels: np.ndarray, raw: np.ndarray, probs: np.ndarray) -> None:
        n, k = len(rows.start), probs.shape[1]
        if not n:
            return
        names = [csv_cell(c) for c in self.names] + [""]
        cols = [rows.start.tolist(), rows.end.tolist()]
        if self.timebase is not None:
            cols.append(self.timebase.iso(rows.start).tolist())
        cols += [[str(s) for s in rows.status.tolist()], [names[i] for i in labels.tolist()]]
        if self.smoothing:
            cols.append([names[i] for i in raw.tolist()])
        # each row by one %-format (a numpy scalar or float formats as "%.6f" of the same value); a row
        # with no probabilities (not ok) gets k empty cells, a partly NaN row its cells one by one
        head = "%.6f,%.6f" + ",%s" * (len(cols) - 2)
        line, empty = head + ",%.6f" * k, head + "," * k
        nan = np.isnan(probs)
        lines = []
        for c, p, some, every in zip(zip(*cols), probs.tolist(), nan.any(axis=1).tolist(), nan.all(axis=1).tolist()):
            if not some:
                lines.append(line % (*c, *p))
            elif every:
                lines.append(empty % c)
            else:
                lines.append(head % c + "".join("," if v != v else ",%.6f" % v for v in p))
        self.fh.write("\n".join(lines) + "\n")


class SmoothedWriter:
    """Feeds rows through the smoother (which lags) and writes those whose label is final."""

    def __init__(self, writer: CsvWriter, smoother: Smoother, summary: Summary,
                 days: Optional[DayAggregator] = None):
        self.writer, self.smoother, self.summary = writer, smoother, summary
        self.days = days
        self.queue: List[Any] = []
        self.labels = np.empty(0, np.int64)

    def push(self, rows: Rows, probs: np.ndarray, raw: np.ndarray) -> None:
        self.queue.append((rows, probs, raw))
        ok = rows.ok_index >= 0
        new = self.smoother.push(raw, ok, np.nan_to_num(probs))  # the HMM reads the probabilities
        self.labels = np.concatenate([self.labels, new])
        self._write()

    def finish(self) -> None:
        self.labels = np.concatenate([self.labels, self.smoother.finish()])
        self._write()
        if self.queue:
            raise RuntimeError("smoother left rows behind")

    def _write(self) -> None:
        while self.queue and len(self.labels):
            rows, probs, raw = self.queue[0]
            n = len(rows.start)
            k = min(n, len(self.labels))
            lab, self.labels = self.labels[:k], self.labels[k:]
            head = Rows(rows.start[:k], rows.end[:k], rows.status[:k], rows.ok_index[:k])
            self.writer.write(head, lab, raw[:k], probs[:k])
            self.summary.add(head.status, head.start, head.end, lab)
            if self.days is not None:
                self.days.add(head.start, head.status, lab, probs[:k])
            if k == n:
                self.queue.pop(0)
            else:
                self.queue[0] = (Rows(rows.start[k:], rows.end[k:], rows.status[k:], rows.ok_index[k:]),
                                 probs[k:], raw[k:])


class NonwearGate:
    """Holds rows until the non-wear detector has decided their time, then marks non-wear windows:
    ``idle_sleep`` where the device says it slept (``idle``: the reader's ``DeviceInfo.idle_sleep``,
    listed before its samples come), else ``nonwear`` where the detector flagged the time.

    Rows leave in order, with their row-aligned ``payload`` arrays (the model's outputs, or the
    windows when the gate comes before the model), to ``out(rows, payload, marked)`` (``marked``: the
    rows this gate turned into ``nonwear`` / ``idle_sleep``; their ``ok_index`` is set to -1); a row is
    final once its midpoint (its start, for a stretch without windows) lies below
    :meth:`NonwearDetector.final_until` — about one hour behind the input (at once without a detector).
    """

    def __init__(self, detector: Optional[NonwearDetector], origin_s: float,
                 out: Callable[[Rows, Tuple[np.ndarray, ...], np.ndarray], None],
                 idle: Optional[List[Tuple[float, float]]] = None):
        """``origin_s``: added to recording times to get the detector's times; ``idle``: the
        device's idle-sleep stretches in recording times (a list the reader fills as it reads)."""
        self.det, self.origin, self.out = detector, origin_s, out
        self.idle = idle if idle is not None else []
        self.queue: List[Any] = []
        self.released = -np.inf  # largest key released: later rows never lie before it

    def push(self, rows: Rows, *payload: np.ndarray) -> None:
        if self.det is None:
            self._release(rows, payload, len(rows.start))
            return
        self.queue.append((rows, payload))
        self.release()

    def release(self) -> None:
        if self.det is None:
            return
        until = self.det.final_until() - self.origin
        while self.queue:
            rows, payload = self.queue[0]
            key = _key(rows)
            # rows are in start order: release the prefix whose (running maximum of) key is decided
            k = int(np.searchsorted(np.maximum.accumulate(key), until, side="left"))
            if k == 0:
                return
            self._release(rows, payload, k)
            self.released = max(self.released, float(key[:k].max()))
            self.det.forget_before(self.released + self.origin)
            if k == len(rows.start):
                self.queue.pop(0)
            else:
                self.queue[0] = (Rows(rows.start[k:], rows.end[k:], rows.status[k:], rows.ok_index[k:]),
                                 tuple(p[k:] for p in payload))
                return

    def _release(self, rows: Rows, payload: Tuple[np.ndarray, ...], k: int) -> None:
        """Mark the first ``k`` rows and pass them on."""
        head = Rows(rows.start[:k], rows.end[:k], rows.status[:k].copy(), rows.ok_index[:k].copy())
        key = _key(head)
        replaceable = has_window(head.status) & np.isin(head.status.astype(str), NONWEAR_REPLACES)
        idle = replaceable & in_stretches(key, self.idle)
        nw = replaceable & ~idle
        if self.det is not None and nw.any():
            nw &= self.det.is_nonwear(key + self.origin)
        else:
            nw[:] = False
        for mask, status in ((idle, STATUS_IDLE_SLEEP), (nw, STATUS_NONWEAR)):
            if mask.any():
                head.status[mask] = status
                head.ok_index[mask] = -1
        self.out(head, tuple(p[:k] for p in payload), idle | nw)


def null_marked(out: "SmoothedWriter") -> Callable[[Rows, Tuple[np.ndarray, ...], np.ndarray], None]:
    """The gate's ``out`` after the model: the marked rows lose their probabilities and labels."""

    def push(rows: Rows, payload: Tuple[np.ndarray, ...], marked: np.ndarray) -> None:
        probs, raw = payload
        if marked.any():
            probs, raw = probs.copy(), raw.copy()
            probs[marked] = np.nan
            raw[marked] = -1
        out.push(rows, probs, raw)

    return push


def _key(rows: Rows) -> np.ndarray:
    """A row's time for the non-wear decision: a window's midpoint, else the stretch's start."""
    return np.where(has_window(rows.status), 0.5 * (rows.start + rows.end), rows.start)
