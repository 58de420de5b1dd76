"""Predict activities over a long recording, streaming: bounded memory whatever its length.

Pipeline: :func:`crossmodal_har.infer.reader.iter_chunks` (chunks, canonical units, checks with
global line numbers) → :class:`crossmodal_har.infer.stream.StreamingWindower` (resample, median
filter, windows, quality, gaps) → model in fixed batches → optional smoothing → CSV rows.

Model batches are formed from the sequence of ok windows (batch ``j`` = ok windows
``[j*B, (j+1)*B)``), never from chunk contents, so the output is identical whatever ``chunk_rows``.

Output CSV columns: ``start, end`` (s, the recording's clock), ``status`` (``ok`` or why there is no
label: ``gap``, ``non_finite``, ``short``, ``flat_line``, ``saturation``, …), ``label`` (empty unless
ok), ``label_raw`` (only with smoothing: the unsmoothed label) and ``p_<class>`` per class.

The runtimes (torch, ONNX Runtime, fixed batching) are :mod:`crossmodal_har.infer.runtime`'s; the
summary of a run is :mod:`crossmodal_har.infer.summary`'s.
"""

from __future__ import annotations

import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
from tqdm import tqdm

from crossmodal_har.infer.csvsafe import csv_cell
from crossmodal_har.infer.reader import iter_chunks
from crossmodal_har.infer.runtime import BatchedRunner, Runner
from crossmodal_har.infer.smoothing import StreamingSmoother
from crossmodal_har.infer.stream import STATUS_OK, Marker, SignalOps, StreamingWindower, WindowBatch
from crossmodal_har.infer.summary import Summary
from crossmodal_har.io import atomic_write
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import Units

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (class probabilities [B, C] from logits [B, C])."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------- rows

@dataclass
class Rows:
    """A block of output rows (in time order)."""

    start: np.ndarray
    end: np.ndarray
    status: np.ndarray  # object
    ok_index: np.ndarray  # global index among ok windows, -1 for other rows


class _Pipeline:
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

    def ready(self, final: bool = False):
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


# --------------------------------------------------------------------------------- writer

class _CsvWriter:
    def __init__(self, fh, class_names: List[str], smoothing: bool):
        self.fh = fh
        self.names = class_names
        self.smoothing = smoothing
        cols = ["start", "end", "status", "label"] + (["label_raw"] if smoothing else []) + \
            [f"p_{c}" for c in class_names]
        fh.write(",".join(_csv_cell(c) for c in cols) + "\n")

    def write(self, rows: Rows, labels: np.ndarray, raw: np.ndarray, probs: np.ndarray) -> None:
        names = np.array([_csv_cell(c) for c in self.names] + [""], dtype=object)
        n = len(rows.start)
        parts = [np.char.mod("%.6f", rows.start), np.char.mod("%.6f", rows.end),
                 rows.status.astype(str), names[labels].astype(str)]
        if self.smoothing:
            parts.append(names[raw].astype(str))
        pstr = np.where(np.isnan(probs), "", np.char.mod("%.6f", np.nan_to_num(probs)))
        cols = parts + [pstr[:, j] for j in range(probs.shape[1])]
        buf = io.StringIO()
        for i in range(n):
            buf.write(",".join(c[i] for c in cols))
            buf.write("\n")
        self.fh.write(buf.getvalue())


def _csv_cell(s: str) -> str:
    return csv_cell(s)  # formula-safe and quoted: the rule of infer/csvsafe.py


class _SmoothedWriter:
    """Feeds rows through the smoother (which lags) and writes those whose label is final."""

    def __init__(self, writer: _CsvWriter, smoother: Any, summary: Summary):
        self.writer, self.smoother, self.summary = writer, smoother, summary
        self.queue: List[Any] = []
        self.labels = np.empty(0, np.int64)

    def push(self, rows: Rows, probs: np.ndarray, raw: np.ndarray) -> None:
        self.queue.append((rows, probs, raw))
        self.labels = np.concatenate([self.labels, self.smoother.push(raw, rows.ok_index >= 0)])
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
            if k == n:
                self.queue.pop(0)
            else:
                self.queue[0] = (Rows(rows.start[k:], rows.end[k:], rows.status[k:], rows.ok_index[k:]),
                                 probs[k:], raw[k:])


# --------------------------------------------------------------------------------- main entry

def predict_file(
    input_path: PathLike,
    out_csv: PathLike,
    runner: Runner,
    preprocess: PreprocessConfig,
    class_names: List[str],
    units: Units,
    *,
    smooth: int = 0,
    chunk_rows: int = 500_000,
    batch_size: int = 256,
    ops: Optional[SignalOps] = None,
    progress: Optional[bool] = None,
) -> Dict[str, Any]:
    """Classify every window of a recording; write ``out_csv`` and return the summary dict.

    Args:
        runner: windows [B, W, 6] float32 in g and rad/s -> logits [B, C].
        preprocess: the bundle's config (possibly with ``stride_s`` overridden).
        units: declared units of the input file.
        smooth: majority-filter length in windows (0/1 = off), see :mod:`crossmodal_har.infer.smoothing`.
        chunk_rows: input rows read at once (memory knob; the output does not depend on it).
        batch_size: windows per model call.
    """
    input_path = Path(input_path)
    C = len(class_names)
    smoothing = smooth > 1
    windower = StreamingWindower(preprocess, ops)
    model = BatchedRunner(runner, batch_size, softmax)
    pipe = _Pipeline(model)
    summary = Summary(class_names=list(class_names), hop_s=min(preprocess.stride_s, preprocess.window_s))
    smoother = StreamingSmoother(smooth if smoothing else 1, C)
    t_start = time.perf_counter()

    def body(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh, \
                tqdm(unit=" rows", unit_scale=True, desc="predict", disable=None if progress is None
                     else not progress, leave=False) as bar:
            out = _SmoothedWriter(_CsvWriter(fh, class_names, smoothing), smoother, summary)

            def emit(final: bool) -> None:
                for rows, res in pipe.ready(final):
                    n = len(rows.start)
                    probs = np.full((n, C), np.nan)
                    raw = np.full(n, -1, np.int64)
                    ok = rows.ok_index >= 0
                    if res is not None:
                        probs[ok] = res
                        raw[ok] = np.argmax(res, axis=1)
                    out.push(rows, probs, raw)

            for chunk in iter_chunks(input_path, units, chunk_rows):
                finite_t = chunk.t[np.isfinite(chunk.t)]
                if len(finite_t):
                    if summary.first_time_s is None:
                        summary.first_time_s = float(finite_t[0])
                    summary.last_time_s = float(finite_t[-1])
                for item in windower.push(chunk.t, chunk.data):
                    pipe.add(item)
                emit(False)
                bar.update(len(chunk.t))
            for item in windower.finish():
                pipe.add(item)
            emit(True)
            out.finish()
        summary.rows_read = windower.rows
        summary.bad_rows = windower.bad_rows

    atomic_write(out_csv, body)
    d = summary.to_dict()
    d["elapsed_s"] = time.perf_counter() - t_start
    d["model_seconds"] = model.seconds
    return d

