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

Settings (:func:`run_predict`): the dataclass defaults < the bundle's saved settings where it has
them (its ``nonwear`` section, its stride, its ``hmm`` for ``smooth="hmm"``) < the command's flags.
The runtimes (torch, ONNX Runtime, fixed batching) are :mod:`crossmodal_har.infer.runtime`'s; the
summary of a run is :mod:`crossmodal_har.infer.summary`'s.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import numpy as np

from crossmodal_har.config import from_dict
from crossmodal_har.errors import ConfigError, DataError, PartialRunError, UserError
from crossmodal_har.infer.calibration import CalibrationConfig
from crossmodal_har.infer.clinical_report import (DayAggregator, DayRules, daily_rows, report_paths, valid_day_summary,
                                                  write_report)
from crossmodal_har.infer.nonwear import NonwearConfig, NonwearDetector, nonwear_settings
from crossmodal_har.infer.rows import CsvWriter, NonwearGate, RowPipeline, SmoothedWriter
from crossmodal_har.infer.runtime import BatchedRunner, OnnxRunner, Runner, TorchRunner
from crossmodal_har.infer.source import BUNDLE_ADVICE, InferenceSource, with_stride
from crossmodal_har.infer.stream import SignalOps
from crossmodal_har.infer.summary import Summary, format_summary, no_window_cause, skipped_parts
from crossmodal_har.infer.timeline import plot_timeline
from crossmodal_har.io import atomic_write, atomic_write_json, guard_outputs
from crossmodal_har.outputs import commit_current, output_session, staged
from crossmodal_har.models.bundle import (BUNDLE_META, BUNDLE_ONNX, BUNDLE_WEIGHTS, Bundle, bundle_nonwear,
                                          read_bundle, weights_digest)
from crossmodal_har.models.smoothing import Smoother, StreamingSmoother
from crossmodal_har.progress import progress as progress_bar
from crossmodal_har.signals.clock import parse_start, resolve_timebase, zone
from crossmodal_har.signals.devices import device_format, open_device
from crossmodal_har.signals.recording import declared_units
from crossmodal_har.signals.status import STATUS_IDLE_SLEEP
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import UnitSettings, Units

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
    chunk_rows: int = 500_000,
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
            gate = NonwearGate(det, origin, out, idle=device.idle_sleep if device is not None else None)

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
                if summary.first_time_s is not None:
                    bar.set_postfix_str(f"{(summary.last_time_s - summary.first_time_s) / 3600:.1f} h of recording")
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
    d["median_step_s"] = state.get("median_step_s")
    d["calibration"] = state["source"].calibration_summary()
    det = state["detector"]
    nw, idle = summary.nonwear_windows(), summary.skipped.get(STATUS_IDLE_SLEEP, {}).get("rows", 0)
    d["nonwear"] = {**nonwear.to_dict(), **(det.stats() if det is not None else {}),
                    "windows": nw, "seconds": nw * summary.hop_s, "idle_sleep_windows": idle,
                    "seconds_note": "non-wear windows (detected, and the device's idle sleep) x hop (stride), "
                                    "as the time per activity"}
    d["skipped_parts"] = skipped_parts(device, tb)
    return d



# --------------------------------------------------------------------------------- the command's job

MAX_SMOOTH_WINDOWS = 100_000  # longest majority filter (windows held in memory)


def parse_smooth(value: Union[int, str]) -> Union[int, str]:
    """``--smooth``: ``N`` / ``majority:N`` (majority filter, int N >= 0), ``majority`` (N = 5), ``hmm``."""
    v = str(value).strip().lower()
    if v == "hmm":
        return "hmm"
    if v == "majority":
        return 5
    if v.startswith("majority:"):
        v = v[len("majority:"):]
    try:
        n = int(v)
    except ValueError:
        raise UserError(f"--smooth: expected N, majority[:N] or hmm, got {value!r}") from None
    if not 0 <= n <= MAX_SMOOTH_WINDOWS:
        raise UserError(f"--smooth must be between 0 and {MAX_SMOOTH_WINDOWS} windows, got {v}")
    return n


@dataclass
class NonwearOverrides:
    """Non-wear detection on or off, and settings over the bundle's ``nonwear`` section (None = not
    given: the bundle's, else :class:`~crossmodal_har.infer.nonwear.NonwearConfig`'s)."""

    enabled: bool = True
    std_g: Optional[float] = None
    range_g: Optional[float] = None
    approach: Optional[Literal["2013", "2023"]] = None

    def given(self) -> Dict[str, Any]:
        """``enabled`` and the settings that were given."""
        return {"enabled": self.enabled, **{k: getattr(self, k) for k in ("std_g", "range_g", "approach")
                                            if getattr(self, k) is not None}}


@dataclass
class PredictConfig:
    """What ``predict`` does (built by ``config.build_config`` from the command's flags; unknown keys are
    errors). The bundle's saved settings lie between the defaults here and what is given.

    Attributes:
        model: the classifier bundle directory.
        input: the recording (table or device file); ``format``: its format when the suffix does not say.
        out: the predictions CSV; its summary is written beside it as ``<out>.summary.json``.
        units: a table's declared units.
        stride_s: seconds between window starts (None: the bundle's).
        smooth: ``N``, ``majority[:N]`` or ``hmm`` (:func:`parse_smooth`; the bundle's smoother).
        timeline: also draw activity over time into this PNG.
        runtime: ``torch``, or ``onnx`` (ONNX Runtime with ``onnx``, else the bundle's ``model.onnx``).
        chunk_rows: input rows read at once (memory; results do not depend on it).
        batch_size: windows per model call.
        threads: CPU threads of the model (None: the runtime's; the command gives 1 unless set).
        device: where the torch model runs (``cpu``, ``cuda``, ``auto``; ONNX Runtime runs on the CPU).
        precision: ``fp32``, or ``bf16`` (torch only, where the device supports it: autocast to
            bfloat16; labels agreed with fp32 on 99.9 % of windows, see docs/inference.md).
        force: replace existing outputs (never an input).
        start: ISO 8601 wall-clock time of the first sample of a file with relative times.
        tz: IANA time zone of the timestamps and calendar days.
        calibration: autocalibration (van Hees et al. 2014).
        nonwear: non-wear detection (van Hees et al. 2013) over the bundle's settings.
        report: directory of ``daily_summary.csv``, ``hourly_summary.csv`` and ``report.html``.
        sensor: which sensor of a file that holds several (APDM ``.h5``: a label such as ``Lumbar``, or an id).
        strict: refuse a device file with damaged parts (a corrupt sector, a cut last page) instead of
            reading the rest and listing what was left out (then the run is partial: exit status 3).
        min_wear_hours, exclude_first_last: which calendar days are valid
            (:class:`~crossmodal_har.infer.clinical_report.DayRules`; the summary's ``days``).
    """

    model: str = ""
    input: str = ""
    out: str = ""
    format: Optional[str] = None
    units: UnitSettings = field(default_factory=UnitSettings)
    stride_s: Optional[float] = None
    smooth: Union[int, str] = 0
    timeline: Optional[str] = None
    runtime: Literal["torch", "onnx"] = "torch"
    onnx: Optional[str] = None
    chunk_rows: int = 500_000
    batch_size: int = 256
    threads: Optional[int] = None
    device: str = "cpu"
    precision: Literal["fp32", "bf16"] = "fp32"
    force: bool = False
    start: Optional[str] = None
    tz: str = "UTC"
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    nonwear: NonwearOverrides = field(default_factory=NonwearOverrides)
    report: Optional[str] = None
    strict: bool = False
    sensor: Optional[str] = None
    min_wear_hours: float = 16.0
    exclude_first_last: bool = False

    def validate(self) -> None:
        if not (self.model and self.input and self.out):
            raise ConfigError("predict: model, input and out are required")
        if self.chunk_rows < 1 or self.batch_size < 1 or (self.threads is not None and self.threads < 1):
            raise UserError("--chunk-rows, --batch-size and --threads must be >= 1")
        if self.runtime == "onnx" and self.device not in ("cpu", "auto"):
            raise UserError(f"--device {self.device} needs --runtime torch (ONNX Runtime runs on the CPU here)")
        if self.stride_s is not None and not self.stride_s > 0:
            raise UserError("--stride must be > 0 seconds")
        if self.precision != "fp32" and self.runtime != "torch":
            raise UserError(f"--precision {self.precision} needs --runtime torch")
        parse_smooth(self.smooth)
        try:
            self.calibration.validate()
        except (ValueError, ConfigError) as e:
            raise UserError(str(e)) from None
        self.start_s()
        zone(self.tz)
        DayRules(self.min_wear_hours, self.exclude_first_last).validate()

    def start_s(self) -> Optional[float]:
        """``start`` as Unix epoch seconds (read in ``tz`` when it has no offset), None when not given."""
        try:
            return parse_start(self.start, self.tz) if self.start else None
        except ValueError as e:
            raise UserError(str(e)) from None


@dataclass
class PredictResult:
    """What :func:`run_predict` wrote: ``summary`` (as in ``summary_path``) and the files."""

    summary: Dict[str, Any]
    out: str
    summary_path: Path
    timeline: Optional[str] = None
    report: Optional[str] = None

    @property
    def partial(self) -> Optional[str]:
        """One line when damaged parts of the recording were left out (the run is partial), else None."""
        parts = self.summary.get("skipped_parts") or []
        if not parts:
            return None
        return (f"{self.summary.get('input')}: {len(parts)} damaged part(s) left out ({parts[0]['line']}"
                f"{'; ...' if len(parts) > 1 else ''}); listed in {self.summary_path} (--strict refuses such files)")

    def check_complete(self) -> None:
        """Raises PartialRunError (exit status 3) with :attr:`partial` when the run is partial."""
        if self.partial:
            raise PartialRunError(self.partial)

    def text(self) -> str:
        """The summary for the terminal and the files written."""
        return format_summary(self.summary) + "\n" + (
            f"wrote {self.out} and {self.summary_path}" + (f" and {self.timeline}" if self.timeline else "")
            + (f" and {self.report}/" if self.report else ""))


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


def _runner(config: PredictConfig, bundle: Bundle) -> Runner:
    """The runtime: torch (the bundle's model), or ONNX Runtime with an export of the bundle's weights."""
    if config.runtime == "onnx":
        onnx_path = Path(config.onnx) if config.onnx else bundle.onnx_path
        if onnx_path is None or not onnx_path.is_file():
            raise UserError(f"--runtime onnx: no {config.onnx or Path(config.model) / 'model.onnx'}; run "
                            f"`crossmodal-har export --model {config.model} --format onnx --out "
                            f"{Path(config.model) / 'model.onnx'}` first or pass --onnx FILE")
        return OnnxRunner(onnx_path, threads=config.threads, weights_sha256=weights_digest(bundle.path))
    return TorchRunner(bundle.model, threads=config.threads, device=config.device, precision=config.precision)


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
    bundle = read_bundle(config.model, with_model=config.runtime == "torch")
    nonwear, nonwear_from = _nonwear(config, bundle)
    pre = with_stride(bundle.preprocess, config.stride_s)
    runner = _runner(config, bundle)
    days = DayAggregator(bundle.class_names, min(pre.stride_s, pre.window_s))  # always (the summary's days)
    summary = predict_file(config.input, out, runner, pre, bundle.class_names, units, smoother=bundle.smoother(smooth),
                           chunk_rows=config.chunk_rows, batch_size=config.batch_size, progress=progress,
                           nonwear=nonwear, start_s=start_s, tz=config.tz, days=days, fmt=config.format,
                           calibration=config.calibration, damaged="refuse" if config.strict else "skip",
                           sensor=config.sensor)
    summary["nonwear"]["settings_from"] = nonwear_from
    summary.update({"input": str(config.input), "output": str(out), "model": str(config.model),
                    "runtime": config.runtime, "stride_s": pre.stride_s, "window_s": pre.window_s,
                    "rate_hz": pre.rate_hz, "smooth": smooth, "units": units.to_dict()})
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
