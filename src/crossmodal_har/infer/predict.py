"""Predict activities over a long recording, streaming: bounded memory whatever its length.

Pipeline: :func:`crossmodal_har.infer.reader.iter_chunks` (chunks, canonical units, checks with
global line numbers) → :class:`crossmodal_har.infer.stream.StreamingWindower` (resample, median
filter, windows, quality, gaps) → model in fixed batches → optional smoothing → CSV rows.

Model batches are formed from the sequence of ok windows (batch ``j`` = ok windows
``[j*B, (j+1)*B)``), never from chunk contents, so the output is identical whatever ``chunk_rows``.

Output CSV columns: ``start, end`` (s, the recording's clock), ``status`` (``ok`` or why there is no
label: ``gap``, ``non_finite``, ``short``, ``flat_line``, ``saturation``, …), ``label`` (empty unless
ok), ``label_raw`` (only with smoothing: the unsmoothed label) and ``p_<class>`` per class.
"""

from __future__ import annotations

import io
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from crossmodal_har.infer.stream import (STATUS_OK, Marker, SignalOps, StreamingWindower,
                                         WindowBatch)
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import Units

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Runner = Callable[[np.ndarray], np.ndarray]  # windows [B, W, 6] float32 -> logits [B, C]


# --------------------------------------------------------------------------------- runtimes

class TorchRunner:
    """Runs a bundle's torch module (eval mode, inference mode) on numpy windows."""

    def __init__(self, model: Any, method: str = "forward"):
        self.model = model.eval()
        self.fn = getattr(model, method) if method != "forward" else model

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.fn(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()


class OnnxRunner:
    """Runs an exported ``model.onnx`` with ONNX Runtime (CPU)."""

    def __init__(self, path: PathLike, threads: Optional[int] = None, weights_sha256: Optional[str] = None):
        import onnxruntime as ort

        from crossmodal_har.errors import DataError

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        # no busy-waiting between batches: on a shared machine spinning threads steal CPU from the
        # parser and from other jobs (measured faster under load, same speed otherwise)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(os.fspath(path), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DataError(path, f"cannot load ONNX model ({str(exc).splitlines()[0]})") from None
        self.input_name = self.session.get_inputs()[0].name
        if weights_sha256 is not None:
            from crossmodal_har.errors import UserError
            from crossmodal_har.infer.export import DIGEST_KEY

            made_from = self.session.get_modelmeta().custom_metadata_map.get(DIGEST_KEY)
            if made_from is not None and made_from != weights_sha256:
                raise UserError(f"{path} was exported from other weights than the bundle's "
                                "model.safetensors (stale export); run `crossmodal-har export` again")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def softmax(logits: np.ndarray) -> np.ndarray:
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


class _BatchedModel:
    """Queues ok windows and runs the model in fixed batches of the global ok-window sequence."""

    def __init__(self, runner: Runner, batch_size: int, post: Callable[[np.ndarray], np.ndarray]):
        self.runner = runner
        self.bs = int(batch_size)
        self.post = post
        self.queue: List[np.ndarray] = []
        self.queued = 0
        self.done = 0  # ok windows with results
        self.results: List[np.ndarray] = []  # outputs for ok windows [results_from, done)
        self.results_from = 0
        self.seconds = 0.0

    def add(self, x: np.ndarray) -> None:
        if len(x):
            self.queue.append(x)
            self.queued += len(x)
        while self.queued >= self.bs:
            self._run(self.bs)

    def flush(self) -> None:
        if self.queued:
            self._run(self.queued)

    def _run(self, n: int) -> None:
        allx = np.concatenate(self.queue) if len(self.queue) > 1 else self.queue[0]
        batch, rest = allx[:n], allx[n:]
        self.queue = [rest] if len(rest) else []
        self.queued = len(rest)
        t = time.perf_counter()
        out = self.post(self.runner(batch))
        self.seconds += time.perf_counter() - t
        self.results.append(out)
        self.done += n

    def take(self, upto: int) -> np.ndarray:
        """Outputs for ok windows ``[results_from, upto)``, released from memory."""
        allr = np.concatenate(self.results) if len(self.results) > 1 else self.results[0]
        k = upto - self.results_from
        taken, rest = allr[:k], allr[k:]
        self.results = [rest] if len(rest) else []
        self.results_from = upto
        return taken


class _Pipeline:
    """Windows/markers in, finished rows (with model outputs) out, in order."""

    def __init__(self, model: _BatchedModel):
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


# --------------------------------------------------------------------------------- summary

@dataclass
class Summary:
    """What a prediction run saw and decided (written as ``<out>.summary.json``)."""

    class_names: List[str]
    hop_s: float
    rows_read: int = 0
    bad_rows: int = 0
    first_time_s: Optional[float] = None
    last_time_s: Optional[float] = None
    windows: int = 0
    windows_ok: int = 0
    label_counts: Dict[str, int] = field(default_factory=dict)
    skipped: Dict[str, Dict[str, float]] = field(default_factory=dict)  # status -> count, seconds

    def add(self, status: np.ndarray, start: np.ndarray, end: np.ndarray, labels: np.ndarray) -> None:
        for st in np.unique(status):
            m = status == st
            if st == STATUS_OK:
                self.windows_ok += int(m.sum())
                self.windows += int(m.sum())
                for c, k in zip(*np.unique(labels[m], return_counts=True)):
                    name = self.class_names[int(c)]
                    self.label_counts[name] = self.label_counts.get(name, 0) + int(k)
                continue
            d = self.skipped.setdefault(str(st), {"rows": 0, "seconds": 0.0})
            d["rows"] += int(m.sum())
            d["seconds"] += float(np.sum(end[m] - start[m]))
            if st not in ("gap", "non_finite", "short"):
                self.windows += int(m.sum())

    def to_dict(self) -> Dict[str, Any]:
        dur = (self.last_time_s - self.first_time_s) if self.first_time_s is not None else 0.0
        per = {c: self.label_counts.get(c, 0) * self.hop_s for c in self.class_names}
        tot = sum(per.values()) or 1.0
        return {
            "rows_read": self.rows_read,
            "rows_with_missing_values": self.bad_rows,
            "first_time_s": self.first_time_s,
            "last_time_s": self.last_time_s,
            "duration_s": dur,
            "windows": self.windows,
            "windows_ok": self.windows_ok,
            "windows_skipped": {k: v["rows"] for k, v in self.skipped.items()
                                if k not in ("gap", "non_finite", "short")},
            "stretches_without_windows": {k: v for k, v in self.skipped.items()
                                          if k in ("gap", "non_finite", "short")},
            "seconds_per_activity": per,
            "fraction_per_activity": {c: v / tot for c, v in per.items()},
            "seconds_per_activity_note": "each ok window accounts for one hop (stride) of time",
        }


def format_summary(d: Dict[str, Any]) -> str:
    """Human-readable summary for the terminal."""
    def hms(s: float) -> str:
        s = int(round(s))
        return f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s"

    lines = [f"rows read: {d['rows_read']:,}  duration: {hms(d['duration_s'])}  "
             f"windows: {d['windows']:,} ({d['windows_ok']:,} ok)"]
    lines.append("time per activity:")
    for c, s in d["seconds_per_activity"].items():
        lines.append(f"  {c:<24} {hms(s):>12}  {100 * d['fraction_per_activity'][c]:5.1f} %")
    if d["windows_skipped"]:
        lines.append("windows skipped: " + ", ".join(f"{k} {v}" for k, v in d["windows_skipped"].items()))
    for k, v in d["stretches_without_windows"].items():
        lines.append(f"{k}: {v['rows']} stretch(es), {hms(v['seconds'])}")
    return "\n".join(lines)


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
    s = str(s)
    return '"' + s.replace('"', '""') + '"' if any(ch in s for ch in ',"\n') else s


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
    from tqdm import tqdm

    from crossmodal_har.infer.reader import iter_chunks
    from crossmodal_har.infer.smoothing import StreamingSmoother
    from crossmodal_har.io import atomic_write

    input_path = Path(input_path)
    C = len(class_names)
    smoothing = smooth > 1
    windower = StreamingWindower(preprocess, ops)
    model = _BatchedModel(runner, batch_size, softmax)
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

