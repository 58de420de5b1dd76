"""IMU tables (CSV, Parquet) read in blocks of rows, in the declared units, with file-and-line errors.

The table half of the one recording front end (:mod:`crossmodal_har.signals.recording`, which
dispatches, checks time and converts units). Columns: ``time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z``,
or ``time,acc_x,acc_y,acc_z`` for an accelerometer-only recording; extra columns are ignored.

Fast path: pandas' C parser with float64 columns and ``chunksize`` (CSV), one Parquet row group at a
time (bounded memory whatever the file's length). Only when the fast parser fails does a slow
line-by-line pass (:func:`diagnose_csv`) run to say *which* line and column is bad. Every problem is
a :class:`DataError` naming the file and, for CSV, the 1-based line (the header is line 1) or, for
Parquet, the 1-based row.

Missing values (empty cells, ``nan``, blank lines): the ``strict`` rule (training data) refuses them
except blank lines at the end of a file; otherwise they pass as NaN rows for the caller to mark.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np

from crossmodal_har.errors import DataError
from crossmodal_har.signals.containers import MAX_LINE_BYTES, BoundedReader
from crossmodal_har.signals.text import quote, strip_bom, visible
from crossmodal_har.signals.types import ACC_CHANNELS, CHANNELS

COLUMNS = ("time",) + CHANNELS
#: the columns of an accelerometer-only table (no gyroscope column at all)
ACC_COLUMNS = ("time",) + ACC_CHANNELS
GYRO_COLUMNS = CHANNELS[3:]
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
RECORDING_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES
#: CSV data row ``r`` (0-based) is on line ``r + CSV_LINE_OFFSET`` (blank lines are kept as NaN rows)
CSV_LINE_OFFSET = 2

#: rows of one table block: ``(values [n, 4 | 7] float64 in the declared units, time first; first row's
#: 0-based index in the file; line offset for CSV, None for Parquet)``
Block = Tuple[np.ndarray, int, Optional[int]]


def table_columns(path: Path, names: List[str], line: Optional[int]) -> Tuple[str, ...]:
    """The columns a table with these column names is read with: :data:`COLUMNS`, or
    :data:`ACC_COLUMNS` when it has no gyroscope column at all (accelerometer only). Some but
    not all gyroscope columns, or a missing time/acc column, is a DataError naming them."""
    _check_header(path, names, line=line)
    return COLUMNS if any(c in names for c in GYRO_COLUMNS) else ACC_COLUMNS


def header_names(cells: List[str]) -> List[str]:
    """The one header rule: a column name is its cell without surrounding white space
    (``time ,acc_x`` names ``time`` and ``acc_x``); the file's leading BOM is not part of it."""
    return [c.strip() for c in cells]


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


# ----------------------------------------------------------------------------------------- CSV

def read_csv_header(path: Path) -> List[str]:
    """Check that ``path`` is a non-empty UTF-8 text file whose header (line 1) names every column
    of :data:`COLUMNS` (or of :data:`ACC_COLUMNS`, accelerometer only) once, and return the
    header's column names, normalised by :func:`header_names`.

    Raises:
        DataError: empty or binary file, empty header line, duplicated or missing columns.
    """
    _sniff_text(path)
    with open(path, "r", encoding="utf-8", errors="replace", newline="") as fh:
        first = fh.readline(MAX_LINE_BYTES + 1)
    if len(first) > MAX_LINE_BYTES:
        raise DataError(path, f"the header line is longer than {MAX_LINE_BYTES} characters", line=1)
    if not first.strip():
        raise DataError(path, "empty header line (expected " + ",".join(COLUMNS) + ")", line=1)
    header = header_names(next(csv.reader([strip_bom(first)])))
    table_columns(path, header, line=1)
    return header


def _sniff_text(path: Path) -> None:
    """Reject empty and binary files before pandas gets a chance to misreport them."""
    if path.stat().st_size == 0:
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


def _unique_names(header: List[str]) -> List[str]:
    """pandas ``names`` for a header: a repeated extra column made unique (``x``, ``x.1``), so that
    ``usecols`` finds :data:`COLUMNS` whatever spaces the file's header had."""
    seen: dict = {}
    out = []
    for h in header:
        n = seen.get(h, 0)
        seen[h] = n + 1
        out.append(h if n == 0 else f"{h}.{n}")
    return out


def iter_csv(path: Path, chunk_rows: int, strict: bool) -> Iterator[Block]:
    """Blocks of at most ``chunk_rows`` rows of a CSV table (see :data:`Block`).

    ``strict``: a row with a missing or non-finite value is a DataError naming its line, unless it
    and every row after it are blank lines at the end of the file (those are dropped). Otherwise
    such rows come through as NaN/inf values.
    """
    import pandas as pd

    header = read_csv_header(path)
    cols = table_columns(path, header, line=1)
    errors = (ValueError, pd.errors.ParserError, UnicodeDecodeError)
    rows = _StrictCsvRows(path, header, cols) if strict else None
    # strict: a block is passed on once the next one is checked (or the file ended), so that a file of
    # one block fails on its missing values before any time check, as a whole-file read would
    pending: Optional[Block] = None
    first_row = 0
    frames = _csv_frames(path, header, cols, chunk_rows)
    try:
        while True:
            try:
                df = next(frames)
            except StopIteration:
                break
            except _OpenError as exc:
                diagnose_csv(path, header, from_line=None if strict else CSV_LINE_OFFSET, allow_missing=not strict,
                             columns=cols)
                raise DataError(path, f"cannot parse CSV: {exc.args[0]}") from None
            except errors as exc:
                # strict: earlier lines may hold the first problem (held NaN rows), as a whole-file read says
                diagnose_csv(path, header, from_line=None if strict else first_row + CSV_LINE_OFFSET,
                             allow_missing=not strict, columns=cols)
                raise DataError(path, f"cannot parse CSV near line {first_row + CSV_LINE_OFFSET}: {exc}") from None
            arr = df[list(cols)].to_numpy(dtype=np.float64)  # usecols keeps the file's column order
            n = len(arr)
            if rows is None:
                yield arr, first_row, CSV_LINE_OFFSET
            else:
                arr = rows.push(arr, first_row)
                if pending is not None:
                    yield pending
                pending = (arr, first_row, CSV_LINE_OFFSET) if len(arr) else None
            first_row += n
    finally:
        frames.close()  # the file, also when the caller stops early
    if first_row == 0:
        raise DataError(path, "no data rows after the header", line=CSV_LINE_OFFSET)
    if rows is not None:
        rows.finish()
        if pending is not None:
            yield pending


class _QuoteSeen(Exception):
    """The fast CSV pass met a quote character after the header line: the exact pass takes over."""


class _QuoteFreeReader(BoundedReader):
    """A :class:`BoundedReader` that stops (:class:`_QuoteSeen`) at a ``"`` byte after the first line
    feed (the header line's quotes are allowed: :func:`_fast_pass_header` checked that line)."""

    in_header = True

    def _seen(self, data: bytes) -> None:
        if self.in_header:
            nl = data.find(b"\n")
            if nl < 0:
                return
            self.in_header = False
            data = data[nl + 1:]
        if b'"' in data:
            raise _QuoteSeen()


def _fast_pass_header(path: Path) -> bool:
    """Whether the fast pass may read the file: its header line (line 1) ends in a line feed (a
    carriage return alone ends a line for pandas, and only line feeds are looked for here) and is
    tokenized alike with and without ``skipinitialspace`` (no quote, or no white space at all)."""
    with open(path, "rb") as fh:
        first = fh.readline(MAX_LINE_BYTES + 2)
    if not first.endswith(b"\n") or b"\r" in first[:-2]:
        return False
    return b'"' not in first or not any(c in first[:-1].rstrip(b"\r") for c in (b" ", b"\t"))


def _csv_frames(path: Path, header: List[str], cols: Tuple[str, ...], chunk_rows: int) -> Iterator:
    """The data rows in DataFrames of ``chunk_rows`` rows, exactly as pandas' C parser gives them with
    ``skipinitialspace`` (a cell's leading spaces are not part of it). Its errors (ValueError,
    ParserError, UnicodeDecodeError) are raised by the ``next`` that reaches them, wrapped in
    :class:`_OpenError` when the parser could not even start.

    A first pass parses without ``skipinitialspace``, 0.75x the time: its numbers are the same (the
    float conversion skips leading white space), and a cell that it would read differently raises an
    error instead (a missing-value word or a quote after spaces: `` nan``, `` NA``, `` "1.5"``, a cell
    of spaces), as does any quote character after the header line (a quote changes how fields and
    lines are cut). On an error or a quote, the exact pass starts again from the top and takes over
    from the first block the first pass did not yield (both cut the same rows into the same blocks:
    without quotes a line is a row); an error that is really in the file is then raised by the exact
    pass, as before. Both passes read the header line through pandas; a header line that is not
    tokenized alike by both, or that does not end in a line feed, goes to the exact pass from the
    start (:func:`_fast_pass_header`).
    """
    import pandas as pd

    errors = (ValueError, pd.errors.ParserError, UnicodeDecodeError)
    done = 0  # blocks yielded
    for exact in (False, True) if _fast_pass_header(path) else (True,):
        # the whole file, the header included, through a stream that refuses a line longer than
        # MAX_LINE_BYTES (a file with no newline would otherwise be read whole by the parser): pandas
        # reads line 1 (its byte-order mark, its encoding, its length) the same way in both passes
        stream = io.BufferedReader((BoundedReader if exact else _QuoteFreeReader)(open(path, "rb"), path, what="CSV",
                                                                                  max_line=MAX_LINE_BYTES))
        with stream:
            try:
                reader = pd.read_csv(stream, header=0, names=_unique_names(header),
                                     usecols=list(cols), dtype={c: np.float64 for c in cols}, engine="c",
                                     skip_blank_lines=False, skipinitialspace=exact, encoding="utf-8",
                                     chunksize=chunk_rows, low_memory=False)  # (a block at once: 0.95x the time)
            except errors + (_QuoteSeen,) as exc:
                if exact:
                    raise _OpenError(exc) from None
                continue
            with reader:
                for k, df in enumerate(_guarded(reader, None if exact else errors + (_QuoteSeen,))):
                    if df is None:  # the fast pass stops here
                        break
                    if k >= done:
                        done += 1
                        yield df
                else:
                    return


class _OpenError(Exception):
    """pandas could not start parsing (``args[0]``: its error)."""


def _guarded(reader: Iterator, stop: Optional[tuple]) -> Iterator:
    """``reader``'s items; with ``stop`` (exception types), None instead of raising one of them."""
    while True:
        try:
            item = next(reader)
        except StopIteration:
            return
        except Exception as exc:
            if stop is not None and isinstance(exc, stop):
                yield None
                return
            raise
        yield item


class _StrictCsvRows:
    """The strict rule over consecutive blocks: the rows to pass on, and the error of a whole-file
    read at the same place. Non-finite rows are held back while nothing but such rows follows them:
    a finite row later is an error at the first held row; at the end of the file they must be
    blank lines (dropped)."""

    def __init__(self, path: Path, header: List[str], cols: Tuple[str, ...]):
        self.path, self.header, self.cols = path, header, cols
        self.ok_rows = 0
        self.held: Optional[int] = None  # global row of the first non-finite row of a trailing run
        self.held_col = ""
        self.held_values = False  # the run holds a value that is not NaN (inf, or a number beside an empty cell)

    def push(self, arr: np.ndarray, first_row: int) -> np.ndarray:
        finite = np.isfinite(arr)
        ok = finite.all(axis=1)
        if self.held is not None:
            if ok.any():
                self._bad_row()
            self.held_values = self.held_values or not np.isnan(arr).all()
            return arr[:0]
        if ok.all():
            self.ok_rows += len(arr)
            return arr
        b = int(np.flatnonzero(~ok)[0])
        self.held = first_row + b
        self.held_col = self.cols[int(np.flatnonzero(~finite[b])[0])]
        if ok[b:].any():
            self._bad_row()
        self.held_values = not np.isnan(arr[b:]).all()
        self.ok_rows += b
        return arr[:b]

    def finish(self) -> None:
        if self.held is None:
            return
        if self.ok_rows == 0:
            diagnose_csv(self.path, self.header, columns=self.cols)
            raise DataError(self.path, "no valid data rows", line=CSV_LINE_OFFSET)
        if self.held_values:
            self._bad_row()
        line = self.held + CSV_LINE_OFFSET
        if not _lines_blank_from(self.path, line):
            diagnose_csv(self.path, self.header, from_line=line, single_line=True, columns=self.cols)
            raise DataError(self.path, "missing values (NaN row)", line=line)

    def _bad_row(self) -> None:
        line = self.held + CSV_LINE_OFFSET
        diagnose_csv(self.path, self.header, from_line=line, single_line=True, columns=self.cols)
        raise DataError(self.path, f"missing or non-finite value in column {self.held_col}", line=line)


def _lines_blank_from(path: Path, first_line: int) -> bool:
    with open(path, "r", encoding="utf-8", errors="replace", newline="") as fh:
        for lineno, text in enumerate(fh, start=1):
            if lineno >= first_line and text.strip():
                return False
    return True


def diagnose_csv(path: Path, header: List[str], *, from_line: Optional[int] = None, single_line: bool = False,
                 allow_missing: bool = False, columns: Optional[Tuple[str, ...]] = None) -> None:
    """Slow path after a fast parser failed: find the first bad line/column and raise a DataError.

    Args:
        from_line: first (1-based) line to check; earlier lines are skipped.
        single_line: check only the first line at or after ``from_line``.
        allow_missing: empty, ``nan`` and ``inf`` cells and blank lines pass (the lenient rule of
            streaming prediction, which marks them as non-finite stretches); otherwise each is an
            error naming the line.
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

def iter_parquet(path: Path, chunk_rows: int, strict: bool) -> Iterator[Block]:
    """Blocks of at most ``chunk_rows`` rows of a Parquet table, one row group at a time (see
    :data:`Block`). ``strict``: a missing (null) or non-finite value is a DataError naming its row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"not a valid Parquet file ({exc})") from None
    cols = table_columns(path, list(pf.schema_arrow.names), line=None)
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
            if strict:
                finite = np.isfinite(arr)
                if not finite.all():
                    bad = int(np.flatnonzero(~finite.all(axis=1))[0])
                    col_name = cols[int(np.flatnonzero(~finite[bad])[0])]
                    raise DataError(path, f"row {first_row + bad + 1}: missing or non-finite value in column "
                                          f"{col_name} (NaN row)")
            yield arr, first_row, None
            first_row += len(arr)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"cannot read Parquet file near row {first_row + 1} ({exc})") from None
    if first_row == 0:
        raise DataError(path, "no data rows")
