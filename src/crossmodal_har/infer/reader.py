"""Read a long IMU recording in chunks, with bounded memory and exact line numbers in errors.

CSV: pandas' C parser with ``chunksize`` and float64 columns (the same fast path as
:func:`crossmodal_har.signals.readers.read_imu_table`). Parquet: ``pyarrow`` row batches. Device
files (Axivity .cwa, GENEActiv .bin, ...): the reader of :mod:`crossmodal_har.signals.devices`
chosen by suffix or ``fmt``, whose units, rate and start time come from the file; every chunk then
carries the file's :class:`~crossmodal_har.signals.devices.DeviceInfo`. A table with
``time,acc_x,acc_y,acc_z`` and no gyroscope column is an accelerometer-only recording (gyroscope
columns NaN, ``channels="acc"``), like a device without a gyroscope.

Unlike the training reader, rows with missing or non-finite values (``NaN``, empty cells, blank
lines) are *not* an error here: a long recording from a patient's home has bad stretches, and the
predictor marks them instead of refusing the file. Anything that cannot be a number, a missing
column or time that does not strictly increase is a :class:`DataError` naming the file and the
global line (CSV; the header is line 1) or row (Parquet).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals import devices, readers
from crossmodal_har.signals.devices import DeviceInfo
from crossmodal_har.signals.types import CHANNELS
from crossmodal_har.signals.units import Units, to_canonical

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
COLUMNS = ("time",) + CHANNELS
DEFAULT_CHUNK_ROWS = 500_000


@dataclass
class RawChunk:
    """Consecutive rows of a recording, converted to canonical units.

    Attributes:
        t: [n] float64 seconds (NaN where the time cell was missing).
        data: [n, 6] float64, acc in g then gyro in rad/s (NaN/inf where bad).
        first_row: 0-based global index of the chunk's first data row (sample, for device files).
        line_offset: CSV line of data row ``r`` is ``r + line_offset`` (None for Parquet and devices).
        channels: ``acc+gyro``, or ``acc`` when the recording has no gyroscope (gyro columns NaN).
        device: what a device file says about the recording (units, rate, start time, model);
            None for tables. The same object on every chunk of a file.
    """

    t: np.ndarray
    data: np.ndarray
    first_row: int
    line_offset: Optional[int]
    channels: str = "acc+gyro"
    device: Optional[DeviceInfo] = None


def where(path: Path, row: int, line_offset: Optional[int]) -> dict:
    """Keyword arguments for DataError locating global data row ``row``."""
    if line_offset is None:
        return {"line": None}
    return {"line": row + line_offset}


def iter_chunks(path: PathLike, units: Units, chunk_rows: int = DEFAULT_CHUNK_ROWS, *, fmt: Optional[str] = None,
                tz: str = "UTC") -> Iterator[RawChunk]:
    """Yield the recording at ``path`` as :class:`RawChunk` s of at most ``chunk_rows`` rows.

    Args:
        units: declared units of a table. A device file carries its own: non-canonical ``units``
            with a device file are a UserError (they would be ignored).
        fmt: ``csv``, ``parquet`` or a device format name (:data:`devices.READERS`); None = by suffix.
        tz: time zone for device clocks that store local time without a zone (Axivity).

    Time is checked to increase strictly across chunk borders (rows without a time are skipped by
    the check); problems raise :class:`DataError` with the global line.
    """
    path = Path(path)
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    dev = devices.device_format(path, fmt)
    if not (path.exists() if dev is not None else path.is_file()):
        raise DataError(path, "file not found")
    if dev is not None:
        if units != Units():
            raise UserError(f"{path}: a {dev} device file carries its own units; drop --acc-unit/--gyro-unit/"
                            "--time-unit/--meta (they apply to CSV/Parquet tables only)")
        yield from _iter_device(path, dev, tz, chunk_rows)
        return
    suffix = path.suffix.lower() if fmt is None else {"csv": ".csv", "parquet": ".parquet"}[fmt]
    if suffix in (".parquet", ".pq"):
        raw = _iter_parquet(path, chunk_rows)
    elif suffix == ".csv":
        raw = _iter_csv(path, chunk_rows)
    else:
        raise DataError(path, f"unsupported recording format {suffix!r} (expected .csv or .parquet, or a device "
                              f"file: {', '.join(f'{k} ({v})' for k, v in devices.device_suffixes().items())})")
    last_t = None
    last_row = -1
    checked_units = False
    for arr, first_row, line_offset in raw:
        channels = "acc+gyro"
        if arr.shape[1] == 4:  # accelerometer-only table: the canonical 6 columns, gyroscope NaN
            arr = np.concatenate([arr, np.full((len(arr), 3), np.nan)], axis=1)
            channels = "acc"
        time = arr[:, 0]
        fin = np.isfinite(time)
        idx = np.flatnonzero(fin)
        if len(idx):
            tt = time[idx]
            if last_t is not None:
                tt_prev = np.concatenate([[last_t], tt])
                rows = np.concatenate([[last_row], idx + first_row])
            else:
                tt_prev, rows = tt, idx + first_row
            dt = np.diff(tt_prev)
            bad = np.flatnonzero(~(dt > 0))
            if len(bad):
                k = int(bad[0])
                r, r_prev = int(rows[k + 1]), int(rows[k])
                what = "duplicated time" if dt[k] == 0 else "time goes backwards:"
                prev_where = f"line {r_prev + line_offset}" if line_offset is not None else f"row {r_prev + 1}"
                msg = (f"{what} {float(tt_prev[k + 1])!r} after {float(tt_prev[k])!r} ({prev_where}); "
                       "timestamps must be strictly increasing")
                if line_offset is None:
                    msg = f"row {r + 1}: " + msg
                raise DataError(path, msg, **where(path, r, line_offset))
            last_t = float(tt[-1])
            last_row = int(idx[-1]) + first_row
        if not checked_units:
            checked_units = _warn_implausible_units(path, arr, units)
        if units == Units():  # already canonical: no copies
            t, data = time, arr[:, 1:7]
        else:
            t, data = to_canonical(time, arr[:, 1:4], arr[:, 4:7], units)
        yield RawChunk(t=t, data=data, first_row=first_row, line_offset=line_offset, channels=channels)


def _iter_device(path: Path, fmt: str, tz: str, chunk_rows: int) -> Iterator[RawChunk]:
    reader = devices.open_device(path, fmt, tz=tz)
    info = reader.info
    first_row = 0
    last_t: Optional[float] = None
    for t, data in reader.iter_chunks(chunk_rows):
        if not len(t):
            continue
        tt = t if last_t is None else np.concatenate([[last_t], t])
        bad = np.flatnonzero(~(np.diff(tt) > 0))
        if len(bad):
            k = int(bad[0]) + (0 if last_t is None else -1) + 1  # index in t of the offending sample
            raise DataError(path, f"sample {first_row + k + 1}: time {float(t[k])!r} does not increase after "
                                  f"{float(tt[bad[0]])!r}; the device clock jumps back")
        last_t = float(t[-1])
        yield RawChunk(t=t, data=data, first_row=first_row, line_offset=None, channels=info.channels, device=info)
        first_row += len(t)
    if first_row == 0:
        raise DataError(path, "no samples in the device file")


def _warn_implausible_units(path: Path, arr: np.ndarray, units: Units) -> bool:
    """Warn when the accelerometer's typical magnitude contradicts the declared unit.

    A worn sensor's median |acc| is about 1 g with gravity (and below ~2 g without). Declared
    ``g`` with a median of 4 or more looks like m/s^2. Returns True once enough rows were seen.
    """
    acc = arr[:, 1:4]
    acc = acc[np.isfinite(acc).all(axis=1)]
    if len(acc) < 50:
        return False
    med = float(np.median(np.linalg.norm(acc[:5000], axis=1)))
    if units.acc_unit == "g" and med >= 4.0:
        log.warning("%s: median |acc| is %.1f, implausible in g: is the accelerometer in m/s^2? "
                    "(pass --acc-unit m/s^2)", path, med)
    return True


# ----------------------------------------------------------------------------------------- CSV

def _iter_csv(path: Path, chunk_rows: int):
    import pandas as pd

    # The training reader's checks for empty/binary files and its header rule (one rule for both).
    header = readers.read_csv_header(path)
    cols = readers.table_columns(path, header, line=1)
    # Data row r is on line r + 2: blank lines are kept as NaN rows so that the count is exact.
    try:
        reader = pd.read_csv(path, header=0, names=readers.csv_column_names(header), usecols=list(cols),
                             dtype={c: np.float64 for c in cols}, engine="c", skip_blank_lines=False,
                             skipinitialspace=True, encoding="utf-8", chunksize=chunk_rows)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        readers.diagnose_csv(path, header, from_line=2, allow_missing=True, columns=cols)
        raise DataError(path, f"cannot parse CSV: {exc}") from None
    first_row = 0
    n_rows = 0
    with reader:
        while True:
            try:
                df = next(reader)
            except StopIteration:
                break
            except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
                readers.diagnose_csv(path, header, from_line=first_row + 2, allow_missing=True, columns=cols)
                raise DataError(path, f"cannot parse CSV near line {first_row + 2}: {exc}") from None
            arr = df[list(cols)].to_numpy(dtype=np.float64)
            n_rows += len(arr)
            yield arr, first_row, 2
            first_row += len(arr)
    if n_rows == 0:
        raise DataError(path, "no data rows after the header", line=2)


# ------------------------------------------------------------------------------------- Parquet

def _iter_parquet(path: Path, chunk_rows: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"not a valid Parquet file ({exc})") from None
    names = list(pf.schema_arrow.names)
    cols = readers.table_columns(path, names, line=None)
    for c in cols:
        tp = pf.schema_arrow.field(c).type
        if not (pa.types.is_floating(tp) or pa.types.is_integer(tp)):
            raise DataError(path, f"column {c} has type {tp}, expected numbers")
    first_row = 0
    try:
        # one row group at a time: iter_batches over the whole file reads ahead and holds several
        # row groups (749 MB peak for a day at 100 Hz, against 278 MB this way)
        batches = (b for i in range(pf.num_row_groups)
                   for b in pf.iter_batches(batch_size=chunk_rows, row_groups=[i], columns=list(cols)))
        for batch in batches:
            arr = np.empty((batch.num_rows, len(cols)), dtype=np.float64)
            for j, c in enumerate(cols):
                col = batch.column(c)
                arr[:, j] = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False) \
                    if col.null_count == 0 else np.asarray(col.to_pandas(), dtype=np.float64)
            yield arr, first_row, None
            first_row += len(arr)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"cannot read Parquet file near row {first_row + 1} ({exc})") from None
    if first_row == 0:
        raise DataError(path, "no data rows")
