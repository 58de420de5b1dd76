"""Per-window embeddings of a long recording, streamed: the windows ``predict`` classifies.

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
:class:`crossmodal_har.models.classifier.NormalizedEncoder`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from crossmodal_har.errors import UserError
from crossmodal_har.infer.calibration import CalibrationConfig
from crossmodal_har.infer.runtime import BatchedRunner, TorchRunner
from crossmodal_har.infer.source import MODEL_ADVICE, InferenceSource
from crossmodal_har.infer.stream import SignalOps, WindowBatch
from crossmodal_har.io import atomic_write, commit_temp, make_temp
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import Units

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
               units: Units, embed_dim: int, *, chunk_rows: int = 500_000, batch_size: int = 256,
               ops: Optional[SignalOps] = None, fmt: Optional[str] = None, tz: str = "UTC",
               calibration: Optional[CalibrationConfig] = None) -> Dict[str, Any]:
    """Write embeddings of every ok window of ``input_path`` to ``out_path`` (.parquet or .npy).

    ``input_path`` is a table or a device file (``fmt``/``tz``: see
    :func:`crossmodal_har.signals.recording.iter_chunks`). An accelerometer-only recording needs an
    encoder that reads ``preprocess.channels == "acc"``; its NaN gyroscope columns are then set to
    0.0 before windowing (the model never reads them). A 6-channel encoder refuses it (UserError).
    ``calibration``: autocalibration as in ``predict`` (default ``auto``; see
    :mod:`crossmodal_har.infer.source`), so that the windows are ``predict``'s.

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
    model = BatchedRunner(TorchRunner(embedder), batch_size, lambda z: np.asarray(z, np.float32))
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
                                 calibration=calibration, advice=MODEL_ADVICE)
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

