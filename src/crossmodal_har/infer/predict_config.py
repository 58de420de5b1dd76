"""What ``predict`` is asked to do and what it did: :class:`PredictConfig` (built by
``config.build_config`` from the command's flags, or by a study for each recording), the ``--smooth``
rule (:func:`parse_smooth`), the non-wear overrides, and :class:`PredictResult` (the summary and the
files written, the text the command prints, the partial-run rule). :func:`crossmodal_har.infer.predict.run_predict`
turns one into the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Literal, Optional, Union

from crossmodal_har.errors import ConfigError, PartialRunError, UserError
from crossmodal_har.infer.calibration import CalibrationConfig
from crossmodal_har.infer.clinical_report import DayRules
from crossmodal_har.infer.summary import format_summary
from crossmodal_har.models.bundle import BUNDLE_ONNX
from crossmodal_har.signals.clock import parse_start, zone
from crossmodal_har.signals.recording import DEFAULT_CHUNK_ROWS
from crossmodal_har.signals.units import UnitSettings

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


ONNX_BATCH = 64  # PredictConfig.model_batch_size's defaults
TORCH_BATCH = 256


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
        runtime: ``auto`` (default: :meth:`chosen_runtime`), ``torch``, or ``onnx`` (ONNX Runtime with
            ``onnx``, else the bundle's ``model.onnx``).
        chunk_rows: input rows read at once (memory; results do not depend on it).
        batch_size: windows per model call (None: :meth:`model_batch_size`'s default for the runtime).
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
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    onnx: Optional[str] = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    batch_size: Optional[int] = None
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

    def onnx_file(self) -> Path:
        """The ONNX export ONNX Runtime runs: ``onnx``, else ``MODEL_DIR/model.onnx``."""
        return Path(self.onnx) if self.onnx else Path(self.model) / BUNDLE_ONNX

    def chosen_runtime(self) -> str:
        """The runtime that runs: ``torch`` or ``onnx`` as given; ``auto`` takes ONNX Runtime when an
        export is at hand (``onnx``, or the bundle's ``model.onnx``, which ``train-classifier`` writes)
        and the model runs in fp32 on the CPU — the same model, faster, in half the memory and without
        importing torch (docs/inference.md) — else torch. A stale (other weights) or unreadable export
        is found when it is opened: then ``auto`` runs torch (:func:`~crossmodal_har.infer.predict.make_runner`)."""
        if self.runtime != "auto":
            return self.runtime
        if self.onnx:
            return "onnx"
        on_cpu = self.device == "cpu" and self.precision == "fp32"
        return "onnx" if on_cpu and self.onnx_file().is_file() else "torch"

    def model_batch_size(self, runtime: Optional[str] = None) -> int:
        """``batch_size``, else the runtime's (``runtime``, default :meth:`chosen_runtime`): 64 windows
        for ONNX Runtime (on one CPU thread a batch that stays in cache: 113 vs 140 us a window for
        convgru, 48 vs 54 us for patchtst-tiny, than 256; benchmarks/RESULTS.md), 256 for torch
        (131 vs 154 us a window for convgru at 64)."""
        if self.batch_size is not None:
            return int(self.batch_size)
        return ONNX_BATCH if (runtime or self.chosen_runtime()) == "onnx" else TORCH_BATCH

    def validate(self) -> None:
        if not (self.model and self.input and self.out):
            raise ConfigError("predict: model, input and out are required")
        if self.chunk_rows < 1 or (self.batch_size is not None and self.batch_size < 1) or \
                (self.threads is not None and self.threads < 1):
            raise UserError("--chunk-rows, --batch-size and --threads must be >= 1")
        explicit_onnx = self.runtime == "onnx" or (self.runtime == "auto" and self.onnx)
        if explicit_onnx and self.device not in ("cpu", "auto"):
            raise UserError(f"--device {self.device} needs --runtime torch (ONNX Runtime runs on the CPU here)")
        if self.stride_s is not None and not self.stride_s > 0:
            raise UserError("--stride must be > 0 seconds")
        if self.precision != "fp32" and explicit_onnx:
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
