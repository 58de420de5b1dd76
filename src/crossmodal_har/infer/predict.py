"""Predict activities over a long recording, streaming: bounded memory whatever its length.

Pipeline: :class:`crossmodal_har.infer.source.InferenceSource` (chunks in canonical units, checks
with global line numbers, the model's channels, autocalibration) →
:class:`crossmodal_har.infer.stream.StreamingWindower` (resample, median filter, windows, quality,
gaps) → model in fixed batches → optional smoothing → CSV rows.

Model batches are formed from the sequence of ok windows (batch ``j`` = ok windows
``[j*B, (j+1)*B)``), never from chunk contents, so the output is identical whatever ``chunk_rows``.

Output CSV columns: ``start, end`` (s, the recording's clock), ``timestamp`` (only when the
recording's absolute start is known — ``--start`` or epoch times in the file — : the window's start
as ISO 8601 with the offset of the time zone), ``status`` (``ok`` or why there is no label: ``gap``,
``non_finite``, ``short``, ``flat_line``, ``saturation``, ``nonwear``, …), ``label`` (empty unless
ok), ``label_raw`` (only with smoothing: the unsmoothed label) and ``p_<class>`` per class.

Input: CSV/Parquet tables or device files (``fmt``: a name of
:data:`crossmodal_har.signals.devices.READERS`, else by suffix); a device file's header gives the
start time (``chunk.device``), and an accelerometer-only recording (``chunk.channels == "acc"``) is
refused unless the bundle reads ``acc`` (then its NaN gyroscope columns become 0.0, unread).

Autocalibration (:mod:`crossmodal_har.infer.calibration`, van Hees et al. 2014, run by the source):
with ``calibration.mode == "auto"`` a first pass over the file fits per-axis offsets and scales on
still 10-s epochs; the predict pass applies them to the accelerometer of every chunk, before non-wear
detection and windowing, when the fit succeeded and reduced the error.

Non-wear (:mod:`crossmodal_har.infer.nonwear`) is judged on the (calibrated) accelerometer as it
streams in; rows wait (about 75 min of rows) until no later 60-min window or edge refinement can
still flag them, then a window (``ok`` or ``flat_line``) whose midpoint lies in a flagged stretch
becomes ``nonwear``: no label, no probabilities, and it ends a smoothing run like any window that is
not ok.

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

from crossmodal_har.errors import UserError
from crossmodal_har.infer.calibration import CalibrationConfig
from crossmodal_har.infer.clinical_report import DayAggregator
from crossmodal_har.infer.csvsafe import csv_cell
from crossmodal_har.infer.nonwear import NonwearConfig, NonwearDetector
from crossmodal_har.infer.runtime import BatchedRunner, Runner
from crossmodal_har.infer.smoothing import StreamingSmoother, StreamingViterbi
from crossmodal_har.infer.source import BUNDLE_ADVICE, InferenceSource
from crossmodal_har.infer.stream import Marker, SignalOps, WindowBatch
from crossmodal_har.infer.summary import Summary
from crossmodal_har.io import atomic_write
from crossmodal_har.signals.clock import TimeBase, resolve_timebase
from crossmodal_har.signals.status import NONWEAR_REPLACES, STATUS_NONWEAR, STATUS_OK, has_window
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
    def __init__(self, fh, class_names: List[str], smoothing: bool, timebase: Optional[TimeBase] = None):
        self.fh = fh
        self.names = class_names
        self.smoothing = smoothing
        self.timebase = timebase if timebase is not None and timebase.absolute else None
        cols = ["start", "end"] + (["timestamp"] if self.timebase else []) + ["status", "label"] + \
            (["label_raw"] if smoothing else []) + [f"p_{c}" for c in class_names]
        fh.write(",".join(_csv_cell(c) for c in cols) + "\n")

    def write(self, rows: Rows, labels: np.ndarray, raw: np.ndarray, probs: np.ndarray) -> None:
        names = np.array([_csv_cell(c) for c in self.names] + [""], dtype=object)
        n = len(rows.start)
        parts = [np.char.mod("%.6f", rows.start), np.char.mod("%.6f", rows.end)]
        if self.timebase is not None:
            parts.append(self.timebase.iso(rows.start))
        parts += [rows.status.astype(str), names[labels].astype(str)]
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

    def __init__(self, writer: _CsvWriter, smoother: Any, summary: Summary,
                 days: Optional[DayAggregator] = None):
        self.writer, self.smoother, self.summary = writer, smoother, summary
        self.days = days
        self.queue: List[Any] = []
        self.labels = np.empty(0, np.int64)

    def push(self, rows: Rows, probs: np.ndarray, raw: np.ndarray) -> None:
        self.queue.append((rows, probs, raw))
        ok = rows.ok_index >= 0
        if getattr(self.smoother, "uses_probs", False):  # HMM: Viterbi over the class probabilities
            new = self.smoother.push(raw, ok, np.nan_to_num(probs))
        else:
            new = self.smoother.push(raw, ok)
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
                self.days.add(head.start, head.status, lab)
            if k == n:
                self.queue.pop(0)
            else:
                self.queue[0] = (Rows(rows.start[k:], rows.end[k:], rows.status[k:], rows.ok_index[k:]),
                                 probs[k:], raw[k:])


class _NonwearGate:
    """Holds rows until the non-wear detector has decided their time, then marks non-wear windows.

    Rows leave in order; a row is final once its midpoint (its start, for a stretch without windows)
    lies below :meth:`NonwearDetector.final_until` — about one hour behind the input.
    """

    def __init__(self, detector: Optional[NonwearDetector], origin_s: float, out: "_SmoothedWriter"):
        """``origin_s``: added to recording times to get the detector's times."""
        self.det, self.origin, self.out = detector, origin_s, out
        self.queue: List[Any] = []
        self.released = -np.inf  # largest key released: later rows never lie before it

    def push(self, rows: Rows, probs: np.ndarray, raw: np.ndarray) -> None:
        if self.det is None:
            self.out.push(rows, probs, raw)
            return
        self.queue.append((rows, probs, raw))
        self.release()

    def release(self) -> None:
        if self.det is None:
            return
        until = self.det.final_until() - self.origin
        while self.queue:
            rows, probs, raw = self.queue[0]
            is_win = has_window(rows.status)
            key = np.where(is_win, 0.5 * (rows.start + rows.end), rows.start)
            # rows are in start order: release the prefix whose (running maximum of) key is decided
            k = int(np.searchsorted(np.maximum.accumulate(key), until, side="left"))
            if k == 0:
                return
            head = Rows(rows.start[:k], rows.end[:k], rows.status[:k].copy(), rows.ok_index[:k].copy())
            hp, hr = probs[:k].copy(), raw[:k].copy()
            nw = self.det.is_nonwear(key[:k] + self.origin) & is_win[:k] & np.isin(
                head.status.astype(str), NONWEAR_REPLACES)
            if nw.any():
                head.status[nw] = STATUS_NONWEAR
                head.ok_index[nw] = -1
                hp[nw] = np.nan
                hr[nw] = -1
            self.out.push(head, hp, hr)
            self.released = max(self.released, float(key[:k].max()))
            self.det.forget_before(self.released + self.origin)
            if k == len(rows.start):
                self.queue.pop(0)
            else:
                self.queue[0] = (Rows(rows.start[k:], rows.end[k:], rows.status[k:], rows.ok_index[k:]),
                                 probs[k:], raw[k:])
                return


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
    hmm: Optional[Any] = None,
    nonwear: Optional[NonwearConfig] = None,
    start_s: Optional[float] = None,
    tz: str = "UTC",
    days: Optional[DayAggregator] = None,
    fmt: Optional[str] = None,
    calibration: Optional[CalibrationConfig] = None,
) -> Dict[str, Any]:
    """Classify every window of a recording; write ``out_csv`` and return the summary dict.

    Args:
        runner: windows [B, W, 6] float32 in g and rad/s -> logits [B, C].
        preprocess: the bundle's config (possibly with ``stride_s`` overridden).
        units: declared units of the input file.
        smooth: majority-filter length in windows (0/1 = off), see :mod:`crossmodal_har.infer.smoothing`.
        hmm: ``(transitions [C, C], prior [C])`` to smooth with Viterbi instead (``--smooth hmm``; the
            bundle's ``hmm`` section); labels are then final at the end of each chain of ok windows.
        chunk_rows: input rows read at once (memory knob; the output does not depend on it).
        batch_size: windows per model call.
        nonwear: non-wear detector settings (default: on, GGIR's thresholds); ``enabled=False`` = off.
        start_s: absolute time (Unix epoch seconds) of the first sample, for relative times.
        tz: IANA time zone of the timestamps and calendar days.
        days: filled with minutes per day / 5-min slot (for ``--report``); gets its timebase here.
        fmt: device-file format name (``crossmodal_har.signals.devices.READERS``); None = by suffix.
        calibration: autocalibration settings (default: ``auto``, van Hees et al. 2014): a first pass
            over the file fits per-axis offsets and scales on still epochs; they are applied to the
            accelerometer before non-wear detection and windowing when the fit succeeds and reduces
            the error. ``mode="off"``: the recording is used as read.

    Accelerometer-only recordings (``chunk.channels == "acc"``): refused (:class:`UserError`) unless
    the bundle reads ``acc``; for such a bundle the gyroscope columns are set to 0.0 (the model never
    reads them) so that rows are not marked ``non_finite`` for lack of a gyroscope.
    """
    input_path = Path(input_path)
    C = len(class_names)
    smoothing = smooth > 1 or hmm is not None
    model = BatchedRunner(runner, batch_size, softmax)
    pipe = _Pipeline(model)
    summary = Summary(class_names=list(class_names), hop_s=min(preprocess.stride_s, preprocess.window_s))
    smoother = StreamingViterbi(*hmm) if hmm is not None else StreamingSmoother(smooth if smoothing else 1, C)
    nonwear = nonwear if nonwear is not None else NonwearConfig()
    calibration = calibration if calibration is not None else CalibrationConfig()
    calibration.validate()
    state: Dict[str, Any] = {}
    t_start = time.perf_counter()

    def body(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh, \
                tqdm(unit=" rows", unit_scale=True, desc="predict", disable=None if progress is None
                     else not progress, leave=False) as bar:
            source = InferenceSource(input_path, units, preprocess.channels, chunk_rows=chunk_rows, fmt=fmt, tz=tz,
                                     calibration=calibration, advice=BUNDLE_ADVICE)
            device = source.device
            state["device"], state["channels"] = device, source.channels
            first_t = source.first_time
            tb = resolve_timebase(first_t, start_s, tz, input_path, device)
            source.calibrate()
            windower = source.windower(preprocess, ops)
            state["source"], state["windower"] = source, windower
            state["timebase"] = tb
            if days is not None:
                days.timebase = tb
            det = NonwearDetector(nonwear) if nonwear.enabled else None
            state["detector"] = det
            # non-wear's 15-min grid starts at the first sample, as GGIR's blocks do
            origin = -first_t if first_t is not None else 0.0
            out = _SmoothedWriter(_CsvWriter(fh, class_names, smoothing, tb), smoother, summary, days)
            gate = _NonwearGate(det, origin, out)

            def emit(final: bool) -> None:
                for rows, res in pipe.ready(final):
                    n = len(rows.start)
                    probs = np.full((n, C), np.nan)
                    raw = np.full(n, -1, np.int64)
                    ok = rows.ok_index >= 0
                    if res is not None:
                        probs[ok] = res
                        raw[ok] = np.argmax(res, axis=1)
                    gate.push(rows, probs, raw)
                gate.release()

            for chunk in source:  # the model's channels, calibrated
                if det is not None:
                    det.push(chunk.t + origin, chunk.data[:, :3])
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
            if det is not None:
                det.finish()
            emit(True)
            out.finish()
        summary.rows_read = windower.rows
        summary.bad_rows = windower.bad_rows

    atomic_write(out_csv, body)
    d = summary.to_dict()
    d["elapsed_s"] = time.perf_counter() - t_start
    d["model_seconds"] = model.seconds
    tb = state["timebase"]
    d["time"] = tb.to_dict()
    if tb.absolute and summary.first_time_s is not None:
        d["start_time"] = str(tb.iso(np.array([summary.first_time_s]))[0])
        d["end_time"] = str(tb.iso(np.array([summary.last_time_s]))[0])
    device = state.get("device")
    if device is not None:
        d["time"]["device_start_time_source"] = getattr(device, "start_time_source", None)
        d["device"] = device.to_dict() if hasattr(device, "to_dict") else dict(vars(device))
    d["channels"] = {"recording": state.get("channels", "acc+gyro"), "model": preprocess.channels}
    d["calibration"] = state["source"].calibration_summary()
    det = state["detector"]
    nw = summary.skipped.get(STATUS_NONWEAR, {})
    d["nonwear"] = {**nonwear.to_dict(), **(det.stats() if det is not None else {}),
                    "windows": nw.get("rows", 0), "seconds": nw.get("rows", 0) * summary.hop_s,
                    "seconds_note": "non-wear windows x hop (stride), as the time per activity"}
    return d
