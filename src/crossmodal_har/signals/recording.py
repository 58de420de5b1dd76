"""The one recording front end: any IMU recording in, chunks in canonical units out.

One dispatch picks the reader: CSV and Parquet tables (:mod:`crossmodal_har.signals.tables`) or a
device file (Axivity .cwa, GENEActiv .bin, ...: :mod:`crossmodal_har.signals.devices`, by suffix or
``fmt``). :func:`iter_chunks` yields the recording as :class:`RawChunk` s with bounded memory; the
whole-file read :func:`read_recording` is the concatenation of its chunks. Time must increase
strictly, across chunk borders too (one check, :class:`_TimeCheck`); a table with
``time,acc_x,acc_y,acc_z`` and no gyroscope column is an accelerometer-only recording (gyroscope
columns NaN, ``channels="acc"``), like a device without a gyroscope.

Two policies for missing values, the only thing they change:

* ``strict`` (training data, :func:`read_recording`): a row with a missing or non-finite value is a
  :class:`DataError` naming the file and line (CSV) or row (Parquet); blank lines at the end of a CSV
  are dropped.
* ``lenient`` (``predict``, ``embed``: a long recording from a patient's home has bad stretches):
  such rows come through as NaN/inf for the predictor to mark instead of refusing the file.

Anything that cannot be a number, a missing column, or time that does not strictly increase is an
error under both (rows without a time are skipped by the time check); device files are read the
same under both.

**Units (one rule).** Declared units (:class:`Units`) describe a table's columns. A device file
carries its own: its reader converts to g, rad/s and seconds. Units other than those declared *for a
device file* are refused (:class:`UserError`, by the chunked and the whole-file read alike) rather
than ignored, since a flag that does nothing is a mistake worth stopping for. A collection's units
(``dataset.json``, a paired session's ``session.json``) are declared for its tables, not for a device
file among them: :func:`units_for` gives such a file canonical units and logs that the collection's
do not apply.

A table whose accelerometer looks like m/s² while declared in g gets a warning
(:func:`_warn_implausible_units`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals import devices
from crossmodal_har.signals.clock import MAX_JUMP_S, MAX_TIME_S
from crossmodal_har.signals.devices import DEFAULT_CHUNK_SAMPLES, DeviceInfo
from crossmodal_har.signals.tables import CSV_SUFFIXES, PARQUET_SUFFIXES, Block, iter_csv, iter_parquet
from crossmodal_har.signals.types import ImuRecording
from crossmodal_har.io import read_json
from crossmodal_har.signals.units import UnitSettings, Units, to_canonical

log = logging.getLogger(__name__)

MAX_JUMP_WARNINGS = 5  # per file: the first few jumps are named

PathLike = Union[str, "os.PathLike[str]"]
DEFAULT_CHUNK_ROWS = DEFAULT_CHUNK_SAMPLES  # one default for tables and device files
STRICT = "strict"
LENIENT = "lenient"
POLICIES = (STRICT, LENIENT)


@dataclass
class RawChunk:
    """Consecutive rows of a recording, converted to canonical units.

    Attributes:
        t: [n] float64 seconds (NaN where the time cell was missing: lenient tables only).
        data: [n, 6] float64, acc in g then gyro in rad/s (NaN/inf where bad: lenient tables only).
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


def read_recording(path: PathLike, units: Units, *, subject: Optional[str] = None, name: Optional[str] = None,
                   fmt: Optional[str] = None, tz: str = "UTC", chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   sensor: Optional[str] = None) -> ImuRecording:
    """Read a whole recording, strictly, as the concatenation of its chunks (:func:`iter_chunks`).

    Args:
        path: ``.csv`` or ``.parquet`` table (columns ``time, acc_x, acc_y, acc_z[, gyro_x, gyro_y,
            gyro_z]``, extra columns ignored) or a device file (``.cwa``, ``.bin``, ...).
        units: declared units of a table (time ``s``/``ms``, acc ``g``/``m/s^2``, gyro
            ``rad/s``/``deg/s``); see the module's units rule for device files.
        subject: person id; defaults to ``name``.
        name: recording id; defaults to the file stem.
        fmt: ``csv``, ``parquet`` or a device format name; None = by suffix.
        tz: time zone in which a device clock without zone is read (device files only).
        chunk_rows: rows read at once (the result does not depend on it).
        sensor: which sensor of a device file that holds several (APDM); see :func:`iter_chunks`.

    Returns:
        ImuRecording with ``t`` in seconds (Unix epoch seconds for device files with a start time)
        and ``data`` [T, 6] in g and rad/s; ``channels`` says whether the gyroscope was recorded.

    Raises:
        DataError: missing column, unparsable number, empty/NaN value, non-monotonic or duplicated
            time, empty or binary file, bad device file. The message names the file and the line.
        UserError: units other than g, rad/s, s declared for a device file; unknown ``fmt``.
    """
    path = Path(path)
    name = name or path.stem
    ts, xs = [], []
    channels = "acc+gyro"
    for chunk in iter_chunks(path, units, chunk_rows, fmt=fmt, tz=tz, policy=STRICT, sensor=sensor):
        ts.append(chunk.t)
        xs.append(chunk.data)
        channels = chunk.channels
    t = np.empty(sum(len(c) for c in ts), dtype=np.float64)
    data = np.empty((len(t), 6), dtype=np.float64)  # C order, whatever the blocks' (pandas' are F)
    a = 0
    for tc, xc in zip(ts, xs):
        t[a:a + len(tc)] = tc
        data[a:a + len(tc)] = xc
        a += len(tc)
    return ImuRecording(name=name, t=t, data=data, subject=subject or name, source=path, channels=channels)


def iter_chunks(path: PathLike, units: Units, chunk_rows: int = DEFAULT_CHUNK_ROWS, *, fmt: Optional[str] = None,
                tz: str = "UTC", policy: str = LENIENT, damaged: Optional[str] = None,
                sensor: Optional[str] = None) -> Iterator[RawChunk]:
    """Yield the recording at ``path`` as :class:`RawChunk` s of at most ``chunk_rows`` rows.

    Args:
        units: declared units of a table; with a device file anything but g, rad/s, s is a UserError.
        fmt: ``csv``, ``parquet`` or a device format name (:data:`devices.READERS`); None = by suffix.
        tz: time zone for device clocks that store local time without a zone (Axivity).
        policy: ``lenient`` (missing values pass as NaN rows) or ``strict`` (they are errors); see
            the module docstring.
        damaged: a device file's damaged parts: ``refuse`` or ``skip`` (listed in
            ``chunk.device.skipped`` with their times); None = ``refuse`` under ``strict``, ``skip``
            under ``lenient``.
        sensor: which sensor of a device file that holds several (APDM ``.h5``: a label or id;
            :func:`crossmodal_har.signals.devices.open_device`); None = the reader's default. A table,
            which holds one, refuses it (UserError).

    Problems raise :class:`DataError` with the global line (CSV) or row (Parquet) or sample (device).
    """
    path = Path(path)
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    dev = devices.device_format(path, fmt)
    if not (path.exists() if dev is not None else path.is_file()):
        raise DataError(path, "file not found")
    if sensor is not None and dev is None:
        raise UserError(f"{path}: sensor {sensor!r} chosen, but a table holds one sensor")
    if dev is not None:
        check_device_units(path, dev, units)
        if damaged is None:
            damaged = "refuse" if policy == STRICT else "skip"
        yield from _iter_device(path, dev, tz, chunk_rows, damaged, sensor)
        return
    check = _TimeCheck(path)
    checked_units = False
    for arr, first_row, line_offset in _table_blocks(path, fmt, chunk_rows, policy == STRICT):
        channels = "acc+gyro"
        if arr.shape[1] == 4:  # accelerometer-only table: the canonical 6 columns, gyroscope NaN
            arr = np.concatenate([arr, np.full((len(arr), 3), np.nan)], axis=1)
            channels = "acc"
        time = arr[:, 0]
        check.push(time, first_row, line_offset)
        if not checked_units:
            checked_units = _warn_implausible_units(path, arr, units)
        if units == Units():  # already canonical: no copies
            t, data = time, arr[:, 1:7]
        else:
            t, data = to_canonical(time, arr[:, 1:4], arr[:, 4:7], units)
        beyond = np.flatnonzero(np.abs(t) > MAX_TIME_S)  # NaN compares False: those rows are marked later
        if len(beyond):
            k = int(beyond[0])
            raise DataError(path, f"time {float(time[k])!r} ({t[k]:.4g} s) is beyond any clock (more than "
                                  f"{MAX_TIME_S:.3g} s, about the year 9600 as Unix time): are the times "
                                  "milliseconds or microseconds (--time-unit ms|us)?",
                            line=first_row + k + line_offset if line_offset is not None else None)
        yield RawChunk(t=t, data=data, first_row=first_row, line_offset=line_offset, channels=channels)


def _table_blocks(path: Path, fmt: Optional[str], chunk_rows: int, strict: bool) -> Iterator[Block]:
    suffix = path.suffix.lower() if fmt is None else {"csv": ".csv", "parquet": ".parquet"}[fmt]
    if suffix in PARQUET_SUFFIXES:
        blocks = iter_parquet(path, chunk_rows, strict)
    elif suffix in CSV_SUFFIXES:
        blocks = iter_csv(path, chunk_rows, strict)
    else:
        raise DataError(path, f"unsupported recording format {suffix!r} (expected .csv or .parquet, or a device "
                              f"file: {', '.join(f'{k} ({v})' for k, v in devices.device_suffixes().items())})")
    try:
        yield from blocks
    except OSError as exc:  # permissions, I/O errors: bad input, not a bug
        raise DataError(path, f"cannot read file: {exc.strerror or exc}") from None


def _iter_device(path: Path, fmt: str, tz: str, chunk_rows: int, damaged: str,
                 sensor: Optional[str] = None) -> Iterator[RawChunk]:
    reader = devices.open_device(path, fmt, tz=tz, damaged=damaged, sensor=sensor)
    info = reader.info
    check = _TimeCheck(path, unit="sample")
    first_row = 0
    for t, data in reader.iter_chunks(chunk_rows):
        if not len(t):
            continue
        check.push(t, first_row, None)
        _time_skipped(info.skipped, t, first_row, check.last_before)
        yield RawChunk(t=t, data=data, first_row=first_row, line_offset=None, channels=info.channels, device=info)
        first_row += len(t)
    if first_row == 0:
        raise DataError(path, "no samples in the device file")


def _time_skipped(skipped: "list[devices.Skipped]", t: np.ndarray, first_row: int, before: Optional[float]) -> None:
    """Fill the times around each skipped stretch from the samples that pass (``before``: the time
    of the sample before this chunk)."""
    for s in skipped:
        if s.after_s is None and first_row <= s.at_sample - 1 < first_row + len(t):
            s.after_s = float(t[s.at_sample - 1 - first_row])
        elif s.after_s is None and s.at_sample == first_row and before is not None:
            s.after_s = before
        if s.before_s is None and first_row <= s.at_sample < first_row + len(t):
            s.before_s = float(t[s.at_sample - first_row])


class _TimeCheck:
    """Time must increase strictly, across chunks; rows without a (finite) time are skipped. A step
    forward larger than :data:`~crossmodal_har.signals.clock.MAX_JUMP_S` is logged (the windows
    treat it as a gap: the recording is split there).

    Errors locate the offending row by CSV line (``line_offset``), else by 1-based ``unit`` number
    (``row`` for Parquet, ``sample`` for device files)."""

    def __init__(self, path: Path, unit: str = "row"):
        self.path, self.unit = path, unit
        self.last_t: Optional[float] = None
        self.last_row = -1
        #: ``last_t`` before the latest push
        self.last_before: Optional[float] = None
        self.jumps = 0

    def push(self, time: np.ndarray, first_row: int, line_offset: Optional[int]) -> None:
        self.last_before = self.last_t
        idx = np.flatnonzero(np.isfinite(time))
        if not len(idx):
            return
        tt = time[idx]
        rows = idx + first_row
        if self.last_t is not None:
            tt = np.concatenate([[self.last_t], tt])
            rows = np.concatenate([[self.last_row], rows])
        dt = np.diff(tt)
        bad = np.flatnonzero(~(dt > 0))
        if len(bad):
            k = int(bad[0])
            self._fail(float(tt[k + 1]), float(tt[k]), int(rows[k + 1]), int(rows[k]), line_offset)
        for k in np.flatnonzero(dt > MAX_JUMP_S)[:MAX_JUMP_WARNINGS - self.jumps]:
            r = int(rows[k + 1])
            log.warning("%s: %s: time jumps forward by %.4g days (%r -> %r): the recording is split there",
                        self.path, f"line {r + line_offset}" if line_offset is not None else f"{self.unit} {r + 1}",
                        dt[k] / 86400.0, float(tt[k]), float(tt[k + 1]))
        self.jumps = min(MAX_JUMP_WARNINGS, self.jumps + int(np.count_nonzero(dt > MAX_JUMP_S)))
        self.last_t = float(tt[-1])
        self.last_row = int(rows[-1])

    def _fail(self, now: float, before: float, row: int, prev: int, line_offset: Optional[int]) -> None:
        def where(r: int) -> str:
            return f"line {r + line_offset}" if line_offset is not None else f"{self.unit} {r + 1}"

        prefix = "" if line_offset is not None else f"{where(row)}: "
        if now == before:
            msg = f"{prefix}duplicated time {now!r} (same as {where(prev)})"
        else:
            msg = f"{prefix}time goes backwards: {now!r} after {before!r} ({where(prev)}); " \
                  "timestamps must be strictly increasing"
        raise DataError(self.path, msg, line=row + line_offset if line_offset is not None else None)


# ----------------------------------------------------------------------------------------- units

def check_device_units(path: Path, fmt: str, units: Units) -> None:
    """The units rule for a device file: declared units other than g, rad/s, s are a UserError."""
    if units != Units():
        raise UserError(f"{path}: a {fmt} device file carries its own units; drop --acc-unit/--gyro-unit/"
                        "--time-unit/--meta (they apply to CSV/Parquet tables only)")


def declared_units(settings: UnitSettings, path: PathLike, fmt: Optional[str] = None) -> Units:
    """The declared units of the recording ``path`` as ``predict`` and ``embed`` are given them: from
    ``settings`` (``meta``: a ``dataset.json``; missing units default to g, rad/s, s, with a warning
    when none was given), or canonical for a device file given none (it carries its own; the reader
    refuses others: the one units rule above).

    Raises:
        UserError: both ``meta`` and units given; ``meta`` is not a JSON object.
        DataError: ``meta`` cannot be read, or names an unknown unit.
    """
    if not settings.given() and devices.device_format(path, fmt) is not None:
        return Units()
    flags = {k: getattr(settings, k) for k in ("acc_unit", "gyro_unit", "time_unit")}
    if settings.meta:
        if any(v is not None for v in flags.values()):
            raise UserError("give either --meta or --acc-unit/--gyro-unit/--time-unit, not both")
        data = read_json(settings.meta)
        if not isinstance(data, dict):
            raise UserError(f"{settings.meta}: expected a JSON object with acc_unit, gyro_unit, time_unit")
        return Units.from_mapping(data, path=settings.meta)
    if all(v is None for v in flags.values()):
        log.warning("no units given: assuming acc in g, gyro in rad/s, time in s "
                    "(pass --acc-unit/--gyro-unit/--time-unit or --meta)")
    return Units(**{k: v for k, v in flags.items() if v is not None})


def units_for(path: PathLike, units: Units, *, fmt: Optional[str] = None) -> Units:
    """The units to read one file of a collection with, when ``units`` were declared for the
    collection (``dataset.json``, ``session.json``): ``units`` for a table; canonical units for a
    device file, which carries its own (logged when the collection declared others)."""
    dev = devices.device_format(path, fmt)
    if dev is None:
        return units
    if units != Units():
        log.warning("%s: a %s device file carries its own units; the declared units (%s) are ignored", path, dev,
                    ", ".join(f"{k}={v}" for k, v in units.to_dict().items()))
    return Units()


def time_unit_hint(step: float, time_unit: str) -> Optional[str]:
    """Why a table's median time step (in its declared ``time_unit``) looks like the other unit, or None.

    Body-worn IMUs sample at 1 Hz .. 10 kHz: a step of 1 or more "seconds" (20 s at 50 Hz in ms) is a
    millisecond clock declared as seconds; a step under 0.1 "ms" (0.02 ms) is seconds declared as ms.
    """
    if not np.isfinite(step) or step <= 0:
        return None
    if time_unit == "s" and step >= 1.0:
        return f"median step {step:.3g} s at --time-unit s: is the time unit ms?"
    if time_unit == "ms" and step < 0.1:
        return f"median step {step:.3g} ms at --time-unit ms: is the time unit s?"
    return None


def _warn_implausible_units(path: Path, arr: np.ndarray, units: Units) -> bool:
    """Warn (once per file) when the accelerometer's typical magnitude or the time's typical step
    contradicts the declared unit.

    A worn sensor's median |acc| is about 1 g with gravity (and below ~2 g without). Declared
    ``g`` with a median of 4 or more looks like m/s^2. The time step: :func:`time_unit_hint`.
    Returns True once enough rows were seen.
    """
    acc = arr[:, 1:4]
    acc = acc[np.isfinite(acc).all(axis=1)]
    if len(acc) < 50:
        return False
    med = float(np.median(np.linalg.norm(acc[:5000], axis=1)))
    if units.acc_unit == "g" and med >= 4.0:
        _warn_once(f"{path}: median |acc| is {med:.1f}, implausible in g: is the accelerometer in m/s^2? "
                   "(pass --acc-unit m/s^2, or acc_unit in dataset.json)")
    t = arr[:5001, 0]
    t = t[np.isfinite(t)]
    hint = time_unit_hint(float(np.median(np.diff(t))) if len(t) > 1 else float("nan"), units.time_unit)
    if hint:
        _warn_once(f"{path}: {hint} (pass --time-unit, or time_unit in dataset.json)")
    return True


_WARNED: "set[str]" = set()


def _warn_once(message: str) -> None:
    """Log a units warning once per process, however many passes read the file (calibration,
    statistics, prediction)."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning("%s", message)
