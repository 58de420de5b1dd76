"""Per-window embeddings of a long recording, streamed: the windows ``predict`` classifies
(``crossmodal-har embed``: :class:`EmbedConfig` -> :func:`run_embed` -> ``.parquet`` / ``.npy``).

The recording is read through the same :class:`crossmodal_har.infer.source.InferenceSource` as
``predict`` (reader, channel rule, autocalibration with the same default ``auto``) and windowed by the
same :class:`crossmodal_har.infer.stream.StreamingWindower`. Only windows that pass the quality
checks are embedded (gaps, rows with missing values and failed windows have none); their count by
reason is logged and returned.

Output formats:
* ``.parquet``: columns ``start``, ``end`` (float64 s) and ``e0 … e{D-1}`` (float32), written in
  row groups as windows arrive.
* ``.npy``: one float64 array [N, 2 + D]: column 0 = start (s), 1 = end (s), then the embedding.

The embedder is any module mapping physical windows to embeddings, normally a
:class:`crossmodal_har.models.classifier.NormalizedEncoder`: :func:`run_embed` takes the encoder of
a classifier bundle or of a saved encoder/run directory, with its preprocessing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from crossmodal_har.errors import ConfigError, UserError
from crossmodal_har.infer.calibration import CalibrationConfig
from crossmodal_har.infer.runtime import BatchedRunner, TorchRunner
from crossmodal_har.infer.source import MODEL_ADVICE, InferenceSource, with_stride
from crossmodal_har.infer.stream import SignalOps, WindowBatch
from crossmodal_har.io import atomic_write, commit_temp, guard_outputs, make_temp
from crossmodal_har.models.bundle import BUNDLE_META, BUNDLE_ONNX, BUNDLE_WEIGHTS, load_bundle
from crossmodal_har.models.classifier import NormalizedEncoder
from crossmodal_har.models.encoder_file import ENCODER_META, ENCODER_WEIGHTS, encoder_preprocess, load_encoder
from crossmodal_har.models.run_file import RUN_META, RUN_WEIGHTS
from crossmodal_har.signals.recording import DEFAULT_CHUNK_ROWS, declared_units
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import UnitSettings, Units

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


class _NpyRows:
    """Append float64 rows to a scratch file; at the end write a proper .npy (bounded memory)."""

    def __init__(self, out: Path):
        self.out = out
        self.tmp = make_temp(out, suffix=".rows")  # .<name>.<pid>.<random>.rows: cleaned if we are killed
        self.fh = open(self.tmp, "wb")
        self.n = 0
        self.width: Optional[int] = None

    def write(self, start: np.ndarray, end: np.ndarray, emb: np.ndarray) -> None:
        rows = np.column_stack([start, end, emb.astype(np.float64)])
        self.width = rows.shape[1]
        self.fh.write(np.ascontiguousarray(rows).tobytes())
        self.n += len(rows)

    def close(self, width: int) -> None:
        self.fh.close()
        width = self.width or width
        try:
            def writer(p: Path) -> None:
                arr = np.lib.format.open_memmap(p, mode="w+", dtype=np.float64, shape=(self.n, width))
                step = 65536
                with open(self.tmp, "rb") as fh:
                    for a in range(0, self.n, step):
                        k = min(step, self.n - a)
                        arr[a:a + k] = np.frombuffer(fh.read(k * width * 8), dtype=np.float64).reshape(k, width)
                arr.flush()
                del arr

            atomic_write(self.out, writer)
        finally:
            self.tmp.unlink(missing_ok=True)


class _ParquetRows:
    def __init__(self, out: Path):
        self.out = out
        self.tmp = make_temp(out)
        self.writer = None
        self.n = 0

    def write(self, start: np.ndarray, end: np.ndarray, emb: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {"start": pa.array(start, pa.float64()), "end": pa.array(end, pa.float64())}
        for j in range(emb.shape[1]):
            cols[f"e{j}"] = pa.array(np.ascontiguousarray(emb[:, j], dtype=np.float32))
        table = pa.table(cols)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, table.schema)
        self.writer.write_table(table)
        self.n += len(start)

    def close(self, width: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if self.writer is None:  # no ok window: still a valid file with the schema
                fields = [pa.field("start", pa.float64()), pa.field("end", pa.float64())] + \
                         [pa.field(f"e{j}", pa.float32()) for j in range(width)]
                pq.write_table(pa.schema(fields).empty_table(), self.tmp)
            else:
                self.writer.close()
            commit_temp(self.tmp, self.out)
        finally:
            self.tmp.unlink(missing_ok=True)


def embed_file(input_path: PathLike, out_path: PathLike, embedder: Any, preprocess: PreprocessConfig,
               units: Units, embed_dim: int, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, batch_size: int = 256,
               ops: Optional[SignalOps] = None, fmt: Optional[str] = None, tz: str = "UTC",
               calibration: Optional[CalibrationConfig] = None, device: str = "cpu",
               sensor: Optional[str] = None) -> Dict[str, Any]:
    """Write embeddings of every ok window of ``input_path`` to ``out_path`` (.parquet or .npy).

    ``input_path`` is a table or a device file (``fmt``/``tz``: see
    :func:`crossmodal_har.signals.recording.iter_chunks`). An accelerometer-only recording needs an
    encoder that reads ``preprocess.channels == "acc"``; its NaN gyroscope columns are then set to
    0.0 before windowing (the model never reads them). A 6-channel encoder refuses it (UserError).
    ``calibration``: autocalibration as in ``predict`` (default ``auto``; see
    :mod:`crossmodal_har.infer.source`), so that the windows are ``predict``'s. ``device``: where the
    encoder runs (``cpu``, ``cuda``, ``auto``). ``sensor``: which sensor of a file that holds several (APDM).

    Returns:
        ``{"windows": N embedded, "skipped": {reason: count}, "embed_dim": D, "channels": the
        recording's channels, "device": DeviceInfo dict or None, "calibration": {"mode", "applied",
        ...}}``.
    """
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in (".parquet", ".npy"):
        raise UserError(f"--out {out_path}: expected a .parquet or .npy file name")
    sink = _ParquetRows(out_path) if suffix == ".parquet" else _NpyRows(out_path)
    model = BatchedRunner(TorchRunner(embedder, device=device), batch_size, lambda z: np.asarray(z, np.float32))
    times: List[np.ndarray] = []  # [k, 2] start/end of queued ok windows
    written = 0
    skipped: Dict[str, int] = {}

    def feed(items: List[Any]) -> None:
        for item in items:
            if not isinstance(item, WindowBatch):
                skipped[item.status] = skipped.get(item.status, 0) + 1
                continue
            ok = item.reason == ""
            for r in item.reason[~ok]:
                skipped[str(r)] = skipped.get(str(r), 0) + 1
            if ok.any():
                times.append(np.column_stack([item.start[ok], item.end[ok]]))
                model.add(item.x[ok])

    def drain() -> None:
        nonlocal written, times
        if model.done <= written:
            return
        emb = model.take(model.done)
        tt = np.concatenate(times)
        k = len(emb)
        sink.write(tt[:k, 0], tt[:k, 1], emb)
        times = [tt[k:]] if k < len(tt) else []
        written += k

    try:
        source = InferenceSource(input_path, units, preprocess.channels, chunk_rows=chunk_rows, fmt=fmt, tz=tz,
                                 calibration=calibration, advice=MODEL_ADVICE, sensor=sensor)
        source.calibrate()
        windower = source.windower(preprocess, ops)
        for chunk in source:  # the model's channels, calibrated: predict's samples
            feed(windower.push(chunk.t, chunk.data))
            drain()
        feed(windower.finish())
        model.flush()
        drain()
        sink.close(embed_dim)
    except BaseException:
        tmp = getattr(sink, "tmp", None)
        if isinstance(sink, _ParquetRows) and sink.writer is not None:
            sink.writer.close()
        if isinstance(sink, _NpyRows) and not sink.fh.closed:
            sink.fh.close()
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    device = source.device
    return {"windows": written, "skipped": skipped, "embed_dim": embed_dim, "channels": source.channels,
            "device": device.to_dict() if device is not None else None,
            "calibration": source.calibration_summary()}


# --------------------------------------------------------------------------------- the command's job

@dataclass
class EmbedConfig:
    """What ``embed`` does (built by ``config.build_config`` from the command's flags; unknown keys are
    errors).

    Attributes:
        model: a classifier bundle directory (its encoder is used); or
        encoder: an encoder/run directory with ``encoder.json`` (exactly one of the two).
        input: the recording (table or device file); ``format``: its format when the suffix does not say.
        out: ``FILE.parquet`` or ``FILE.npy`` (see the module's docstring).
        tz: IANA time zone of a device clock that stores local time without a zone.
        units: a table's declared units.
        calibration: autocalibration as in ``predict`` (default ``auto``: the windows predict classifies).
        stride_s: seconds between window starts (None: the model's).
        chunk_rows: input rows read at once (memory; results do not depend on it).
        batch_size: windows per model call.
        device: where the encoder runs (``cpu``, ``cuda``, ``auto``).
        force: replace an existing ``out`` (never an input).
        sensor: which sensor of a file that holds several (APDM ``.h5``: a label such as ``Lumbar``, or an id).
    """

    model: Optional[str] = None
    encoder: Optional[str] = None
    input: str = ""
    out: str = ""
    format: Optional[str] = None
    tz: str = "UTC"
    units: UnitSettings = field(default_factory=UnitSettings)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    stride_s: Optional[float] = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    batch_size: int = 256
    device: str = "cpu"
    force: bool = False
    sensor: Optional[str] = None

    def validate(self) -> None:
        if bool(self.model) == bool(self.encoder) or not (self.input and self.out):
            raise ConfigError("embed: input, out and one of model or encoder are required")
        if self.chunk_rows < 1 or self.batch_size < 1:
            raise UserError("--chunk-rows and --batch-size must be >= 1")
        if Path(self.out).suffix.lower() not in (".parquet", ".npy"):
            raise UserError(f"--out {self.out}: expected a .parquet or .npy file name")


@dataclass
class EmbedResult:
    """What :func:`run_embed` wrote: ``windows`` embeddings of ``embed_dim`` numbers into ``out``, and
    the count of windows without one by reason (``skipped``); the rest as :func:`embed_file` returns it."""

    out: str
    windows: int
    embed_dim: int
    skipped: Dict[str, int]
    info: Dict[str, Any]

    def text(self) -> str:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        return f"wrote {self.out}: {self.windows} windows x {self.embed_dim} dims (without embedding: {skipped})"


def run_embed(config: EmbedConfig) -> EmbedResult:
    """Embed every ok window of ``config.input`` with the encoder of ``config.model`` (a bundle) or
    ``config.encoder`` (a saved encoder) into ``config.out``; the output is checked first (never an
    input, replaced only with ``force``).

    Raises:
        UserError: a refused output, a bad setting, an accelerometer-only recording for a 6-channel model.
        DataError: an unreadable recording or model, naming the file (and line).
    """
    if config.model:
        model_files = [("--model", Path(config.model) / n) for n in (BUNDLE_META, BUNDLE_WEIGHTS, BUNDLE_ONNX)]
    else:
        model_files = [("--encoder", Path(config.encoder) / n)
                       for n in (ENCODER_META, ENCODER_WEIGHTS, RUN_META, RUN_WEIGHTS, "config.json")]
    guard_outputs([("--out", config.out)], [("--input", config.input), *model_files, ("--meta", config.units.meta)],
                  force=config.force)
    try:
        config.calibration.validate()
    except (ValueError, ConfigError) as e:
        raise UserError(str(e)) from None
    units = declared_units(config.units, config.input, config.format)
    if config.model:
        bundle = load_bundle(config.model)
        encoder, pre = bundle.model.encoder, bundle.preprocess
    else:
        encoder, meta = load_encoder(config.encoder)
        pre = encoder_preprocess(meta, config.encoder)
    pre = with_stride(pre, config.stride_s)
    dim = int(getattr(encoder, "embed_dim"))
    res = embed_file(config.input, config.out, NormalizedEncoder(encoder, pre.normalization).eval(), pre, units, dim,
                     chunk_rows=config.chunk_rows, batch_size=config.batch_size, fmt=config.format, tz=config.tz,
                     calibration=config.calibration, device=config.device, sensor=config.sensor)
    return EmbedResult(config.out, res["windows"], dim, res["skipped"], res)

