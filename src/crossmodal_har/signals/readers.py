"""Read IMU recordings: tables (CSV or Parquet, header ``time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z``,
or ``time,acc_x,acc_y,acc_z`` for an accelerometer-only recording) and device files (Axivity .cwa,
GENEActiv .bin, ...: :mod:`crossmodal_har.signals.devices`, chosen by suffix or ``fmt``).

Fast path: pandas' C parser with float64 columns (a few seconds for millions of rows).
Only when that fails does a slow line-by-line pass run to say *which* line and column is bad.
Nothing is repaired or sorted silently: every problem is a :class:`DataError` naming the file and,
for text files, the 1-based line (the header is line 1).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np

from crossmodal_har.errors import DataError
from crossmodal_har.signals import devices
from crossmodal_har.signals.text import quote, strip_bom, visible
from crossmodal_har.signals.types import ACC_CHANNELS, CHANNELS, ImuRecording
from crossmodal_har.signals.units import Units, to_canonical

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
COLUMNS = ("time",) + CHANNELS
#: the columns of an accelerometer-only table (no gyroscope column at all)
ACC_COLUMNS = ("time",) + ACC_CHANNELS
GYRO_COLUMNS = CHANNELS[3:]
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
RECORDING_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES


def read_imu_table(path: PathLike, units: Units, *, subject: Optional[str] = None,
                   name: Optional[str] = None, fmt: Optional[str] = None, tz: str = "UTC") -> ImuRecording:
    """Read one IMU recording and convert it to canonical units.

    Args:
        path: ``.csv`` or ``.parquet`` file with columns ``time, acc_x, acc_y, acc_z, gyro_x, gyro_y,
            gyro_z`` (extra columns are ignored), or ``time, acc_x, acc_y, acc_z`` alone (an
            accelerometer-only recording: gyroscope NaN, ``channels="acc"``); or a device file
            (``.cwa``, ``.bin``, ...; see :mod:`crossmodal_har.signals.devices`).
        units: declared units of a table (time ``s``/``ms``, acc ``g``/``m/s^2``, gyro
            ``rad/s``/``deg/s``). Ignored for device files, whose units come from the file.
        subject: person id; defaults to ``name``.
        name: recording id; defaults to the file stem.
        fmt: ``csv``, ``parquet`` or a device format name; None = by suffix.
        tz: time zone in which a device clock without zone is read (device files only).

    Returns:
        ImuRecording with ``t`` in seconds (Unix epoch seconds for device files with a start time)
        and ``data`` [T, 6] in g and rad/s; ``channels`` says whether the gyroscope was recorded.

    Raises:
        DataError: missing column, unparsable number, empty/NaN value, non-monotonic or duplicated
            time, empty or binary file, bad device file. The message names the file and the line.
    """
    path = Path(path)
    name = name or path.stem
    dev = devices.device_format(path, fmt)
    if dev is not None:
        return _read_device(path, dev, tz, units, name=name, subject=subject or name)
    if not path.is_file():
        raise DataError(path, "file not found")
    suffix = path.suffix.lower() if fmt is None else {"csv": ".csv", "parquet": ".parquet"}[fmt]
    try:
        if suffix in PARQUET_SUFFIXES:
            time, values = _read_parquet(path)
            row_to_line = None
        elif suffix in CSV_SUFFIXES:
            time, values = _read_csv(path)
            row_to_line = 2  # data row i is on line i + 2
        else:
            raise DataError(path, f"unsupported recording format {suffix!r} (expected .csv or .parquet, or a "
                                  f"device file: {', '.join(devices.device_suffixes())})")
    except OSError as exc:  # permissions, I/O errors: bad input, not a bug
        raise DataError(path, f"cannot read file: {exc.strerror or exc}") from None
    _check_time(path, time, row_to_line)
    acc_only = values.shape[1] == 3
    gyro = np.full((len(values), 3), np.nan) if acc_only else values[:, 3:]
    t, data = to_canonical(time, values[:, :3], gyro, units)
    return ImuRecording(name=name, t=t, data=data, subject=subject or name, source=path,
                        channels="acc" if acc_only else "acc+gyro")


def _read_device(path: Path, fmt: str, tz: str, units: Units, *, name: str, subject: str) -> ImuRecording:
    if units != Units():
        log.warning("%s: a %s device file carries its own units; the declared units (%s) are ignored", path, fmt,
                    ", ".join(f"{k}={v}" for k, v in units.to_dict().items()))
    reader = devices.open_device(path, fmt, tz=tz)
    ts, xs = [], []
    for t, x in reader.iter_chunks():
        ts.append(t)
        xs.append(x)
    if not ts or not sum(len(t) for t in ts):
        raise DataError(path, "no samples in the device file")
    t = np.concatenate(ts)
    data = np.concatenate(xs)
    _check_time(path, t, None)
    return ImuRecording(name=name, t=t, data=data, subject=subject, source=path, channels=reader.info.channels)


def table_columns(path: Path, names: List[str], line: Optional[int]) -> Tuple[str, ...]:
    """The columns a table with these column names is read with: :data:`COLUMNS`, or
    :data:`ACC_COLUMNS` when it has no gyroscope column at all (accelerometer only). Some but
    not all gyroscope columns, or a missing time/acc column, is a DataError naming them."""
    _check_header(path, names, line=line)
    return COLUMNS if any(c in names for c in GYRO_COLUMNS) else ACC_COLUMNS


# ----------------------------------------------------------------------------------------- CSV

def read_csv_header(path: PathLike) -> List[str]:
    """Check that ``path`` is a non-empty UTF-8 text file whose header (line 1) names every column
    of :data:`COLUMNS` (or of :data:`ACC_COLUMNS`, accelerometer only) once, and return the
    header's column names, normalised by the one header
    rule (:func:`header_names`: surrounding spaces and a leading BOM do not count).

    Shared by the table reader here and the streaming reader of ``predict``/``embed``
    (:mod:`crossmodal_har.infer.reader`), so both accept the same files and reject a bad one with
    the same message. Both then parse the data with :func:`csv_column_names` as pandas' ``names``.

    Raises:
        DataError: empty or binary file, empty header line, duplicated or missing columns.
    """
    path = Path(path)
    _sniff_text(path)
    header = _read_header(path)
    table_columns(path, header, line=1)
    return header


def _sniff_text(path: Path) -> None:
    """Reject empty and binary files before pandas gets a chance to misreport them."""
    size = path.stat().st_size
    if size == 0:
        raise DataError(path, "empty file (expected a header line "
                              f"{','.join(COLUMNS)})")
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if b"\x00" in head:
        raise DataError(path, "binary file, not CSV text")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multi-byte character cut at the buffer end
            raise DataError(path, "binary file, not CSV text (not UTF-8)") from None


def _read_header(path: Path) -> List[str]:
    with open(path, "r", encoding="utf-8", errors="replace", newline="") as fh:
        first = fh.readline()
    if not first.strip():
        raise DataError(path, "empty header line (expected " + ",".join(COLUMNS) + ")", line=1)
    return header_names(next(csv.reader([strip_bom(first)])))


def header_names(cells: List[str]) -> List[str]:
    """The one header rule: a column name is its cell without surrounding white space
    (``time ,acc_x`` names ``time`` and ``acc_x``); the file's leading BOM is not part of it."""
    return [c.strip() for c in cells]


def csv_column_names(header: List[str]) -> List[str]:
    """pandas ``names`` for a CSV whose header is ``header`` (from :func:`read_csv_header`): the
    normalised names, a repeated extra column made unique (``x``, ``x.1``), so that ``usecols``
    finds :data:`COLUMNS` whatever spaces the file's header had."""
    return _unique_names(header)


def _check_header(path: Path, header: List[str], line: Optional[int]) -> None:
    dup = sorted({h for h in header if header.count(h) > 1 and h in COLUMNS})
    if dup:
        raise DataError(path, f"duplicated column(s) {', '.join(dup)} in header", line=line)
    if not any(c in header for c in GYRO_COLUMNS) and all(c in header for c in ACC_COLUMNS):
        return  # accelerometer only
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}; the header must contain "
                              f"{','.join(COLUMNS)} (or {','.join(ACC_COLUMNS)} for an accelerometer-only "
                              f"recording; found {visible(','.join(header))[:200]})", line=line)


def _unique_names(header: List[str]) -> List[str]:
    seen: dict = {}
    out = []
    for h in header:
        n = seen.get(h, 0)
        seen[h] = n + 1
        out.append(h if n == 0 else f"{h}.{n}")
    return out


def _read_csv(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    header = read_csv_header(path)
    cols = table_columns(path, header, line=1)
    names = csv_column_names(header)  # normalised names, so " acc_x" in a header still matches
    try:
        df = pd.read_csv(path, header=0, names=names, usecols=list(cols), dtype={c: np.float64 for c in cols},
                         engine="c", skip_blank_lines=False,
                         encoding="utf-8", na_filter=True)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        diagnose_csv(path, header, columns=cols)  # raises with the line when it can find it
        raise DataError(path, f"cannot parse CSV: {exc}") from None
    if len(df) == 0:
        raise DataError(path, "no data rows after the header", line=2)
    arr = df[list(cols)].to_numpy(dtype=np.float64)  # usecols keeps the file's column order
    # Trailing blank lines are harmless; anything else that is not a finite number is an error.
    finite = np.isfinite(arr)
    if not finite.all():
        ok_rows = finite.all(axis=1)
        last_ok = np.flatnonzero(ok_rows)
        n = (last_ok[-1] + 1) if len(last_ok) else 0
        if n == 0:
            diagnose_csv(path, header, columns=cols)
            raise DataError(path, "no valid data rows", line=2)
        if not ok_rows[:n].all() or not np.isnan(arr[n:]).all():
            bad = int(np.flatnonzero(~ok_rows)[0])
            diagnose_csv(path, header, from_line=bad + 2, single_line=True, columns=cols)
            col = cols[int(np.flatnonzero(~finite[bad])[0])]
            raise DataError(path, f"missing or non-finite value in column {col}", line=bad + 2)
        if n < len(arr) and not _trailing_lines_blank(path, n + 2):
            diagnose_csv(path, header, from_line=n + 2, single_line=True, columns=cols)
            raise DataError(path, "missing values (NaN row)", line=n + 2)
        arr = arr[:n]
    return arr[:, 0].copy(), np.ascontiguousarray(arr[:, 1:])


def _trailing_lines_blank(path: Path, first_line: int) -> bool:
    for lineno, text in _iter_lines(path):
        if lineno >= first_line and text.strip():
            return False
    return True


def _iter_lines(path: Path) -> Iterator[Tuple[int, str]]:
    with open(path, "r", encoding="utf-8", errors="replace", newline="") as fh:
        for lineno, text in enumerate(fh, start=1):
            yield lineno, text


def diagnose_csv(path: Path, header: List[str], *, from_line: Optional[int] = None, single_line: bool = False,
                 allow_missing: bool = False, columns: Optional[Tuple[str, ...]] = None) -> None:
    """Slow path after a fast parser failed: find the first bad line/column and raise a DataError.

    Args:
        from_line: first (1-based) line to check; earlier lines are skipped.
        single_line: check only the first line at or after ``from_line``.
        allow_missing: empty, ``nan`` and ``inf`` cells and blank lines pass (streaming prediction marks
            them as non-finite stretches); otherwise each is an error naming the line.

        columns: the columns read (default :data:`COLUMNS`; :data:`ACC_COLUMNS` for acc-only tables).

    Returns without raising when it finds nothing specific (the caller raises a generic error).
    """
    columns = COLUMNS if columns is None else columns
    idx = {c: header.index(c) for c in columns}
    ncols = len(header)
    with open(path, "r", encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh, skipinitialspace=True)
        next(reader, None)
        for row in reader:
            lineno = reader.line_num
            if from_line is not None and lineno < from_line:
                continue
            if not row or all(not c.strip() for c in row):
                if allow_missing:
                    continue
                raise DataError(path, "empty line inside the data (NaN row)", line=lineno)
            if len(row) != ncols:
                raise DataError(path, f"row has {len(row)} fields, the header has {ncols}", line=lineno)
            for col in columns:
                cell = row[idx[col]].strip()
                if cell == "":
                    if allow_missing:
                        continue
                    raise DataError(path, f"empty value in column {col} (NaN row)", line=lineno)
                try:
                    value = float(cell)
                except ValueError:
                    raise DataError(path, f"cannot parse {quote(cell)} as a number in column {col}",
                                    line=lineno) from None
                if not allow_missing and not np.isfinite(value):
                    raise DataError(path, f"non-finite value {quote(cell)} in column {col} (NaN row)",
                                    line=lineno)
            if single_line:
                return


# ------------------------------------------------------------------------------------- Parquet

def _read_parquet(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"not a valid Parquet file ({exc})") from None
    cols = table_columns(path, list(schema.names), line=None)
    try:
        table = pq.read_table(path, columns=list(cols))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"cannot read Parquet file ({exc})") from None
    arrays = []
    for c in cols:
        col = table.column(c)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise DataError(path, f"column {c} has type {col.type}, expected numbers")
        arrays.append(col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False))
    if not arrays[0].size:
        raise DataError(path, "no data rows")
    arr = np.stack(arrays, axis=1)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.all(axis=1))[0])
        col = cols[int(np.flatnonzero(~finite[bad])[0])]
        raise DataError(path, f"row {bad + 1}: missing or non-finite value in column {col} (NaN row)")
    return arr[:, 0].copy(), np.ascontiguousarray(arr[:, 1:])


# ----------------------------------------------------------------------------------------- time

def _check_time(path: Path, time: np.ndarray, row_to_line: Optional[int]) -> None:
    dt = np.diff(time)
    bad = np.flatnonzero(dt <= 0)
    if not len(bad):
        return
    i = int(bad[0]) + 1  # the offending row

    def where(row: int) -> str:
        return f"line {row + row_to_line}" if row_to_line is not None else f"row {row + 1}"

    line = i + row_to_line if row_to_line is not None else None
    prefix = "" if row_to_line is not None else f"{where(i)}: "
    now, before = float(time[i]), float(time[i - 1])
    if dt[i - 1] == 0:
        msg = f"{prefix}duplicated time {now!r} (same as {where(i - 1)})"
    else:
        msg = f"{prefix}time goes backwards: {now!r} after {before!r} ({where(i - 1)}); " \
              "timestamps must be strictly increasing"
    raise DataError(path, msg, line=line)
