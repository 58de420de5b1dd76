"""Predict activities over a long recording, streaming: bounded memory whatever its length
(``crossmodal-har predict``: :class:`PredictConfig` -> :func:`run_predict` -> the CSV, its summary,
optionally a timeline and the clinician's report).

Pipeline (:func:`predict_file`): :class:`crossmodal_har.infer.source.InferenceSource` (chunks in
canonical units, checks with global line numbers, the model's channels, autocalibration) →
:class:`crossmodal_har.infer.stream.StreamingWindower` (resample, median filter, windows, quality,
gaps) → model in fixed batches → non-wear → the bundle's smoother → CSV rows
(:mod:`crossmodal_har.infer.rows`).

Model batches are formed from the sequence of ok windows (batch ``j`` = ok windows
``[j*B, (j+1)*B)``), never from chunk contents, so the output is identical whatever ``chunk_rows``.
Windows wait for the non-wear decision before the model (:func:`gate_before_model`), so that a
window found to be non-wear is never classified.

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
becomes ``nonwear``: no label, no probabilities (never classified: the windows wait before the
model), and it ends a smoothing run like any window that is not ok.

Settings (:func:`run_predict`, :class:`~crossmodal_har.infer.predict_config.PredictConfig`): the
dataclass defaults < the bundle's saved settings where it has
them (its ``nonwear`` section, its stride, its ``hmm`` for ``smooth="hmm"``) < the command's flags.
The runtimes (torch, ONNX Runtime, fixed batching) are :mod:`crossmodal_har.infer.runtime`'s; the
summary of a run is :mod:`crossmodal_har.infer.summary`'s.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from crossmodal_har.config import from_dict
from crossmodal_har.errors import ConfigError, DataError, UserError
from crossmodal_har.infer.calibration import CalibrationConfig
from crossmodal_har.infer.clinical_report import (DayAggregator, DayRules, daily_rows, report_paths, valid_day_summary,
                                                  write_report)
from crossmodal_har.infer.nonwear import NonwearConfig, NonwearDetector, nonwear_settings
from crossmodal_har.infer.predict_config import PredictConfig, PredictResult, parse_smooth
from crossmodal_har.infer.rows import (CsvWriter, NonwearGate, RowPipeline, SmoothedWriter, item_rows,
                                      null_marked, results_rows)
from crossmodal_har.infer.runtime import BatchedRunner, OnnxRunner, Runner, StaleExportError, TorchRunner
from crossmodal_har.infer.source import BUNDLE_ADVICE, InferenceSource, with_stride
from crossmodal_har.infer.stream import SignalOps
from crossmodal_har.infer.summary import Summary, no_window_cause, skipped_parts
from crossmodal_har.infer.timeline import plot_timeline
from crossmodal_har.io import atomic_write, atomic_write_json, guard_outputs
from crossmodal_har.outputs import commit_current, output_session, staged
from crossmodal_har.models.bundle import (BUNDLE_META, BUNDLE_ONNX, BUNDLE_WEIGHTS, Bundle, bundle_nonwear,
                                          read_bundle, weights_digest)
from crossmodal_har.models.smoothing import Smoother, StreamingSmoother
from crossmodal_har.progress import progress as progress_bar
from crossmodal_har.signals.clock import resolve_timebase
from crossmodal_har.signals.devices import device_format, open_device
from crossmodal_har.signals.recording import DEFAULT_CHUNK_ROWS, declared_units
from crossmodal_har.signals.status import STATUS_IDLE_SLEEP
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import Units

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (class probabilities [B, C] from logits [B, C])."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------- the pipeline

def predict_file(
    input_path: PathLike,
    out_csv: PathLike,
    runner: Runner,
    preprocess: PreprocessConfig,
    class_names: List[str],
    units: Units,
    *,
    smoother: Optional[Smoother] = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    batch_size: int = 256,
    ops: Optional[SignalOps] = None,
    progress: Optional[bool] = None,
    nonwear: Optional[NonwearConfig] = None,
    start_s: Optional[float] = None,
    tz: str = "UTC",
    days: Optional[DayAggregator] = None,
    fmt: Optional[str] = None,
    calibration: Optional[CalibrationConfig] = None,
    damaged: str = "skip",
    sensor: Optional[str] = None,
) -> Dict[str, Any]:
    """Classify every window of a recording; write ``out_csv`` and return the summary dict.

    Args:
        runner: windows [B, W, 6] float32 in g and rad/s -> logits [B, C].
        preprocess: the bundle's config (possibly with ``stride_s`` overridden).
        units: declared units of the input file.
        smoother: the bundle's smoother of the labels (:meth:`~crossmodal_har.models.bundle.Bundle.smoother`:
            a majority filter, or Viterbi whose labels are final at the end of each chain of ok
            windows); default none. With one that changes labels the CSV gets a ``label_raw`` column.
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
        damaged: a device file's damaged parts (a corrupt sector, a cut last page): ``skip`` them
            (read the rest; listed in the summary's ``skipped_parts``) or ``refuse`` the file.
        sensor: which sensor of a device file that holds several (APDM ``.h5``: a label or id).

    Accelerometer-only recordings (``chunk.channels == "acc"``): refused (:class:`UserError`) unless
    the bundle reads ``acc``; for such a bundle the gyroscope columns are set to 0.0 (the model never
    reads them) so that rows are not marked ``non_finite`` for lack of a gyroscope.
    """
    input_path = Path(input_path)
    C = len(class_names)
    smoother = smoother if smoother is not None else StreamingSmoother(1, C)
    model = BatchedRunner(runner, batch_size, softmax, background=True)  # the model on a second core
    pipe = RowPipeline(model)
    summary = Summary(class_names=list(class_names), hop_s=min(preprocess.stride_s, preprocess.window_s))
    nonwear = nonwear if nonwear is not None else NonwearConfig()
    calibration = calibration if calibration is not None else CalibrationConfig()
    calibration.validate()
    state: Dict[str, Any] = {}
    t_start = time.perf_counter()

    def body(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh, \
                progress_bar(unit="rows", desc="predict", enabled=progress, leave=False) as bar:
            source = InferenceSource(input_path, units, preprocess.channels, chunk_rows=chunk_rows, fmt=fmt, tz=tz,
                                     calibration=calibration, advice=BUNDLE_ADVICE, damaged=damaged, sensor=sensor)
            device = source.device
            state["device"], state["channels"] = device, source.channels
            first_t = source.first_time
            state["median_step_s"] = source.median_step()
            tb = resolve_timebase(first_t, start_s, tz, input_path, device)
            bar.set_postfix_str("first passes: calibration, recording statistics")  # before any row streams
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
            out = SmoothedWriter(CsvWriter(fh, class_names, smoother.changes_labels, tb), smoother, summary, days)
            idle = device.idle_sleep if device is not None else None
            # the gate before the model when its held windows fit in memory: non-wear costs no model work
            early = gate_before_model(det, preprocess)
            state["model_skips_nonwear"] = early
            gate = NonwearGate(det, origin, (lambda rows, p, _m: pipe.add_rows(rows, p[0])) if early
                               else null_marked(out), idle=idle)

            def emit(final: bool) -> None:
                if early:
                    gate.release()
                for rows, res in pipe.ready(final):
                    probs, raw = results_rows(rows, res, C)
                    if early:
                        out.push(rows, probs, raw)
                    else:
                        gate.push(rows, probs, raw)
                if not early:
                    gate.release()

            def add(item: Any) -> None:
                if early:
                    gate.push(*item_rows(item))
                else:
                    pipe.add(item)

            for chunk in source:  # the model's channels, calibrated
                if det is not None:
                    det.push(chunk.t + origin, chunk.data[:, :3])
                t = chunk.t  # its first and last finite times (the ends themselves, the usual case: no copy)
                finite_t = t[::max(len(t) - 1, 1)] if len(t) and np.isfinite(t[[0, -1]]).all() else t[np.isfinite(t)]
                if len(finite_t):
                    if summary.first_time_s is None:
                        summary.first_time_s = float(finite_t[0])
                    summary.last_time_s = float(finite_t[-1])
                for item in windower.push(chunk.t, chunk.data):
                    add(item)
                emit(False)
                bar.update(len(chunk.t))
                if summary.first_time_s is not None:
                    bar.set_postfix_str(f"{(summary.last_time_s - summary.first_time_s) / 3600:.1f} h of recording")
            for item in windower.finish():
                add(item)
            if det is not None:
                det.finish()
            emit(True)
            out.finish()
        summary.rows_read = windower.rows
        summary.bad_rows = windower.bad_rows

    atomic_write(out_csv, body)
    d = summary.to_dict()
    d["elapsed_s"] = time.perf_counter() - t_start
    d["model_seconds"] = model.seconds  # summed over the threads that ran batches: can exceed the wall time
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
    d["median_step_s"] = state.get("median_step_s")
    d["calibration"] = state["source"].calibration_summary()
    det = state["detector"]
    nw, idle = summary.nonwear_windows(), summary.skipped.get(STATUS_IDLE_SLEEP, {}).get("rows", 0)
    d["nonwear"] = {**nonwear.to_dict(), **(det.stats() if det is not None else {}),
                    "windows": nw, "seconds": nw * summary.hop_s, "idle_sleep_windows": idle,
                    "seconds_note": "non-wear windows (detected, and the device's idle sleep) x hop (stride), "
                                    "as the time per activity"}
    d["nonwear"]["model_skipped"] = bool(state.get("model_skips_nonwear"))
    d["skipped_parts"] = skipped_parts(device, tb)
    return d



#: the most memory the windows waiting for the non-wear decision may take when they wait before the model
GATE_MAX_BYTES = 256 * 2 ** 20


#: recording time that one chunk of input may add to the wait (``--chunk-rows 500000`` at 50 Hz: 2.8 h)
GATE_CHUNK_S = 3 * 3600.0


def gate_before_model(det: Optional[NonwearDetector], preprocess: PreprocessConfig) -> bool:
    """Whether windows wait for the non-wear decision *before* the model (so that non-wear windows
    are never classified) rather than after it. They wait about one non-wear window plus two steps
    plus a chunk (:data:`GATE_CHUNK_S`), which at the default 2.5-s stride is ~40 MB of float32
    windows; tiny strides (many overlapping windows) keep the model first. Decided from the model's
    and the detector's settings alone, never from chunking, so the outputs never depend on it."""
    if det is None:
        return False
    held_s = det.cfg.window_s + 2 * det.cfg.step_s + GATE_CHUNK_S
    window_bytes = preprocess.window_samples * 6 * 4
    return held_s / max(preprocess.stride_s, 1e-9) * window_bytes <= GATE_MAX_BYTES


def _nonwear(config: PredictConfig, bundle: Bundle) -> Tuple[NonwearConfig, str]:
    """The non-wear settings: the defaults, then the bundle's ``nonwear`` section, then the flags; and
    where they came from (for the summary)."""
    section, given = bundle_nonwear(bundle), config.nonwear.given()
    try:
        nonwear = from_dict(NonwearConfig, nonwear_settings(section, given),
                            where=f"{Path(config.model) / BUNDLE_META}: nonwear" if section else "non-wear")
        nonwear.validate()
    except (ValueError, ConfigError) as e:
        raise UserError(str(e)) from None
    return nonwear, ", ".join(["defaults"] + (["the bundle's nonwear section"] if section else [])
                              + (["--nonwear-* flags"] if len(given) > 1 else []))


def make_runner(config: PredictConfig, bundle: Bundle) -> Tuple[str, Runner]:
    """``(runtime, runner)``: ONNX Runtime with an export of the bundle's weights, or torch (the bundle's
    model, read here when ``bundle`` came without it), as :meth:`PredictConfig.chosen_runtime` says.
    With ``--runtime auto`` an export that is stale (exported from other weights), unreadable, or gone
    since it was found is passed over for torch, with a warning; ``--runtime onnx`` (or ``--onnx
    FILE``) stops on it."""
    runtime = config.chosen_runtime()
    asked = config.runtime == "onnx" or bool(config.onnx)  # else auto found the bundle's model.onnx
    if runtime == "onnx":
        onnx_path = config.onnx_file()
        try:
            if not onnx_path.is_file():
                raise UserError(f"--runtime onnx: no {onnx_path}; run `crossmodal-har export --model {config.model} "
                                f"--format onnx --out {Path(config.model) / BUNDLE_ONNX}` first or pass --onnx FILE")
            return "onnx", OnnxRunner(onnx_path, threads=config.threads, weights_sha256=weights_digest(bundle.path))
        except (StaleExportError, DataError, UserError) as exc:  # stale, unreadable, gone meanwhile
            if asked:
                raise
            log.warning("%s; running the bundle with torch (--runtime auto)", str(exc).splitlines()[0])
    model = bundle.model if bundle.model is not None else read_bundle(config.model).model
    return "torch", TorchRunner(model, threads=config.threads, device=config.device, precision=config.precision)


def run_predict(config: PredictConfig, *, progress: Optional[bool] = None) -> PredictResult:
    """Classify every window of ``config.input`` with the bundle ``config.model``: write the CSV, its
    ``.summary.json``, and the timeline and report when asked for. Outputs are checked first (never an
    input, replaced only with ``force``); the ONNX runtime never imports torch.

    Raises:
        UserError: a refused output, a bad setting, a bundle without what was asked of it
            (``model.onnx``, an ``hmm`` section), an accelerometer-only recording for a 6-channel bundle.
        DataError: an unreadable recording or bundle, naming the file (and line); a recording in
            which no window could be classified (after writing the outputs), with the cause in one
            line (:func:`~crossmodal_har.infer.summary.no_window_cause`).
    """
    with output_session():  # this run's files: claimed now, committed together at its end
        return _run_predict(config, progress)


def _run_predict(config: PredictConfig, progress: Optional[bool]) -> PredictResult:
    smooth = parse_smooth(config.smooth)
    start_s = config.start_s()
    out = Path(config.out)
    summary_path = out.with_name(out.stem + ".summary.json")
    report_files = list(report_paths(Path(config.report)).values()) if config.report else []
    model_files = [("--model", Path(config.model) / n) for n in (BUNDLE_META, BUNDLE_WEIGHTS, BUNDLE_ONNX)]
    guard_outputs([("--out", out), ("--out's summary", summary_path), ("--timeline", config.timeline),
                   *[(f"--report's {p.name}", p) for p in report_files]],
                  [("--input", config.input), *model_files, ("--onnx", config.onnx), ("--meta", config.units.meta)],
                  force=config.force)
    units = declared_units(config.units, config.input, config.format)
    if device_format(config.input, config.format) is not None:  # a bad device file fails before the model loads
        open_device(config.input, config.format, tz=config.tz, damaged="refuse" if config.strict else "skip",
                    sensor=config.sensor)
    # ONNX needs only bundle.json (and never imports torch: faster start, less memory)
    bundle = read_bundle(config.model, with_model=config.chosen_runtime() == "torch")
    nonwear, nonwear_from = _nonwear(config, bundle)
    pre = with_stride(bundle.preprocess, config.stride_s)
    runtime, runner = make_runner(config, bundle)
    days = DayAggregator(bundle.class_names, min(pre.stride_s, pre.window_s))  # always (the summary's days)
    summary = predict_file(config.input, out, runner, pre, bundle.class_names, units, smoother=bundle.smoother(smooth),
                           chunk_rows=config.chunk_rows, batch_size=config.model_batch_size(runtime),
                           progress=progress, nonwear=nonwear, start_s=start_s, tz=config.tz, days=days,
                           fmt=config.format, calibration=config.calibration,
                           damaged="refuse" if config.strict else "skip",
                           sensor=config.sensor)
    summary["nonwear"]["settings_from"] = nonwear_from
    summary.update({"input": str(config.input), "output": str(out), "model": str(config.model),
                    "runtime": runtime, "runtime_option": config.runtime, "stride_s": pre.stride_s,
                    "window_s": pre.window_s, "rate_hz": pre.rate_hz, "smooth": smooth, "units": units.to_dict()})
    rules = DayRules(config.min_wear_hours, config.exclude_first_last)
    summary["days"] = valid_day_summary(daily_rows(days, rules), bundle.class_names, rules)
    atomic_write_json(summary_path, summary)
    if config.report:
        write_report(Path(config.report), days, summary, bundle.meta, rules)
    if config.timeline:
        plot_timeline(staged(out), config.timeline, bundle.class_names, recording=config.input,
                      timebase=days.timebase)
    log.debug("summary: %s", json.dumps(summary))
    if summary["windows_ok"] == 0:  # written for a look, but never a result
        commit_current()
        raise DataError(config.input, no_window_cause(summary, units.time_unit) + f" (outputs kept: {summary_path})")
    return PredictResult(summary, str(out), summary_path, config.timeline, config.report)
