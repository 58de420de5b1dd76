"""The one clock: time zones, UTC offsets, start times and a recording's time base.

Every module that turns a recording's times into wall-clock time imports it from here: the device
readers (a device clock stored in local time), the dataset and session files (their ``tz`` key),
``predict`` (the time base of its output) and the clinician's report (local days and hours).

* :func:`zone` is the one lookup of an IANA zone name; a bad name is a :class:`TimeZoneError`
  (one line on the command line, naming the file when the name came from one).
* UTC offsets are seconds east of UTC (``utc = local - offset``), written ``+01:00``
  (:func:`format_offset`).
* :class:`TimeBase` maps the recording's clock (seconds) to wall-clock time in a zone; which origin a
  recording gets (device header, epoch seconds in the file, ``--start``, or none) is
  :func:`resolve_timebase`'s rule.

The rule for what a recording's time can be (one place, here):

* **Epochs or offsets.** A table's times at or above :data:`EPOCH_THRESHOLD_S` (1e9 s, 2001-09-09) are
  Unix epoch seconds; below it they are offsets from an unknown start (``--start`` gives it). A device
  file's times are epoch seconds when they agree (within :data:`MAX_JUMP_S`) with the start time in
  its header, whatever their size; otherwise they are offsets from that start. Decided once, from
  the first sample, by :func:`resolve_timebase`.
* **Plausible.** An absolute time must lie in [:data:`EARLIEST_S`, :data:`LATEST_S`) (2005-01-01 to
  2100-01-01): earlier is a device clock that was never set (an Axivity reset to 2000-01-01, a
  GENEActiv to 1970-01-02), later is usually milliseconds read as seconds. Such a clock is refused
  (:class:`ClockError`, naming the file and the clock it read) unless ``--start`` gives the real
  time of the first sample, which then replaces it.
* **Local times** given without an offset must exist and be unique in the zone: a time skipped by a
  daylight-saving change, or one that occurs twice, is refused with both candidates named
  (:func:`parse_start`).
* **Jumps.** A step forward larger than :data:`MAX_JUMP_S` splits the recording (a gap, logged as a
  warning); every per-step loop downstream is bounded by the number of samples, not by the span.
  No time may exceed :data:`MAX_TIME_S` (a table's time column beyond it is refused, naming the line).

A leaf module: it imports nothing of the package but :mod:`crossmodal_har.errors` and
:mod:`crossmodal_har.signals.text`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from crossmodal_har.errors import DataError, PathLike, UserError
from crossmodal_har.signals.text import quote

log = logging.getLogger(__name__)

#: times above this (2001-09-09 onwards) are taken as Unix epoch seconds
EPOCH_THRESHOLD_S = 1e9
#: absolute times must lie in [EARLIEST_S, LATEST_S): 2005-01-01 (before it: an unset device clock)
#: to 2100-01-01 (after it: usually milliseconds read as seconds)
EARLIEST_S = 1104537600.0
LATEST_S = 4102444800.0
#: a forward step in time larger than this (s) splits the recording, with a warning
MAX_JUMP_S = 86400.0
#: no time of a recording (s, relative or absolute) may exceed this: about the year 9600 as Unix
#: time, within every calendar the outputs are written in
MAX_TIME_S = 2.4e11
#: the UTC offset is looked up once per bucket of this many seconds (every zone changes offset on
#: a quarter hour)
OFFSET_BUCKET_S = 900.0


class TimeZoneError(DataError):
    """An unknown time zone name. ``path``: the file that named it (``dataset.json``,
    ``session.json``), None for a command-line flag (then the message is printed alone)."""

    def __init__(self, name: Any, path: Optional[PathLike] = None):
        super().__init__(path, f"unknown time zone {quote(name)} (use an IANA name such as Europe/London or UTC)")

    def __str__(self) -> str:
        return self.message if self.path is None else super().__str__()


class ClockError(DataError):
    """An implausible absolute time (:data:`EARLIEST_S`, :data:`LATEST_S`): ``path`` is the file
    whose clock it is (None: a command-line flag, then the message is printed alone)."""

    def __str__(self) -> str:
        return self.message if self.path is None else super().__str__()


def utc_text(epoch_s: float) -> str:
    """``2000-01-01T00:00:00Z`` for any finite epoch second count (numpy's calendar: no year limit)."""
    if not np.isfinite(epoch_s) or abs(epoch_s) > 1e15:
        return f"{epoch_s!r} s"
    return str(np.datetime64(int(np.floor(epoch_s)), "s")) + "Z"


def plausible(epoch_s: float) -> bool:
    """Whether ``epoch_s`` lies in [:data:`EARLIEST_S`, :data:`LATEST_S`)."""
    return bool(np.isfinite(epoch_s) and EARLIEST_S <= epoch_s < LATEST_S)


def check_plausible(epoch_s: float, path: Optional[PathLike], clock: str) -> float:
    """``epoch_s`` if plausible, else a :class:`ClockError` naming ``path`` and ``clock`` (what was
    read: "the device clock in the file header", "--start")."""
    if plausible(epoch_s):
        return float(epoch_s)
    span = f"{utc_text(EARLIEST_S)[:10]} .. {utc_text(LATEST_S)[:10]}"
    if np.isfinite(epoch_s) and epoch_s < EARLIEST_S:
        why = "was never set: pass --start with the real time of the first sample" if path is not None else \
            "is outside"
    else:
        why = "is implausible: are the times milliseconds or microseconds (--time-unit ms|us)?" \
            if path is not None else "is outside"
    raise ClockError(path, f"{clock} reads {utc_text(epoch_s)}, outside {span}: it {why}"
                     if path is not None else f"{clock} is {utc_text(epoch_s)}, outside {span}")


def zone(name: Any, path: Optional[PathLike] = None) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name`` (``UTC``, ``Europe/London``).

    Raises:
        TimeZoneError: unknown name (naming ``path``, the file it came from, when given).
    """
    try:
        return zoneinfo.ZoneInfo(str(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: "Europe" is a folder
        raise TimeZoneError(name, path) from None


def local_to_utc_offset_s(local_naive_s: float, tz: str) -> float:
    """UTC offset (s) of zone ``tz`` at the local wall-clock time ``local_naive_s`` (seconds since
    1970-01-01 00:00 of that wall clock). ``utc = local - offset``."""
    wall = _dt.datetime(1970, 1, 1) + _dt.timedelta(seconds=float(local_naive_s))
    off = wall.replace(tzinfo=zone(tz)).utcoffset()
    return off.total_seconds() if off is not None else 0.0


def format_offset(offset_s: float) -> str:
    """``+01:00`` for 3600 s, ``-05:30`` for -19800 s (rounded to the minute)."""
    m = int(round(offset_s / 60.0))
    sign = "+" if m >= 0 else "-"
    m = abs(m)
    return f"{sign}{m // 60:02d}:{m % 60:02d}"


def parse_start(text: str, tz_name: str) -> float:
    """ISO 8601 start time -> Unix epoch seconds; a time without offset is read in ``tz_name``.

    Raises:
        ValueError: not ISO 8601.
        TimeZoneError: the time has no offset and ``tz_name`` is unknown.
    """
    try:
        dt = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"cannot parse start time {text!r} as ISO 8601 (e.g. 2026-03-01T08:30:00+01:00)") from e
    if dt.tzinfo is None:
        dt = _unique_local(dt, zone(tz_name), text)
    try:
        epoch = dt.timestamp()
    except (OverflowError, ValueError, OSError):
        epoch = float("nan")
    return check_plausible(epoch, None, f"--start {text.strip()}")


def _unique_local(naive: _dt.datetime, tz: zoneinfo.ZoneInfo, text: str) -> _dt.datetime:
    """``naive`` in ``tz``, refused (ValueError naming both readings) when a daylight-saving change
    skips it (it does not exist) or repeats it (it is ambiguous)."""
    a, b = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    try:
        oa, ob = a.utcoffset(), b.utcoffset()
    except (OverflowError, ValueError):
        return a
    if oa == ob:
        return a
    cands = [f"{naive.isoformat()}{format_offset(o.total_seconds())}" for o in sorted({oa, ob}, reverse=True)]
    back = a.astimezone(_dt.timezone.utc).astimezone(tz).replace(tzinfo=None)
    what = "is ambiguous" if back == naive else "does not exist"
    raise ValueError(f"--start {text.strip()} {what} in {tz.key} (a daylight-saving change): give the "
                     f"offset, {cands[0]} or {cands[1]}")


@dataclass
class TimeBase:
    """Recording clock -> wall clock. ``origin_s``: epoch seconds of recording time 0 (None: unknown,
    the outputs then use the recording's own clock: ``day 1`` = its first 24 h)."""

    origin_s: Optional[float]
    tz: str = "UTC"
    source: str = "none"

    def __post_init__(self) -> None:
        self._zone = zone(self.tz)
        self._off: Dict[int, float] = {}

    @property
    def absolute(self) -> bool:
        return self.origin_s is not None

    def offsets(self, t: np.ndarray) -> np.ndarray:
        """UTC offset (s) at recording times ``t`` (constant within 15-min UTC buckets)."""
        if not self.absolute:
            return np.zeros(len(t))
        b = np.floor((np.asarray(t, np.float64) + self.origin_s) / OFFSET_BUCKET_S).astype(np.int64)
        ub, inv = np.unique(b, return_inverse=True)
        vals = np.empty(len(ub))
        for j, k in enumerate(ub):
            k = int(k)
            if k not in self._off:
                dt = _dt.datetime.fromtimestamp(k * OFFSET_BUCKET_S, _dt.timezone.utc).astimezone(self._zone)
                self._off[k] = dt.utcoffset().total_seconds()
            vals[j] = self._off[k]
        return vals[inv]

    def local_s(self, t: np.ndarray) -> np.ndarray:
        """Seconds since 1970-01-01 00:00 *local* time (or the recording clock when not absolute)."""
        t = np.asarray(t, np.float64)
        return t if not self.absolute else t + self.origin_s + self.offsets(t)

    def iso(self, t: np.ndarray) -> np.ndarray:
        """ISO 8601 with offset, millisecond precision, e.g. ``2026-03-01T08:30:00.000+01:00``."""
        t = np.asarray(t, np.float64)
        off = self.offsets(t)
        ms = np.round((t + self.origin_s + off) * 1000.0).astype(np.int64).astype("datetime64[ms]")
        s = np.datetime_as_string(ms, unit="ms").astype(object)
        uo, inv = np.unique(off, return_inverse=True)  # a few offsets (DST), formatted once each
        return (s + np.array([format_offset(o) for o in uo], dtype=object)[inv.ravel()]).astype(str) if len(t) \
            else np.empty(0, str)

    def day_label(self, day: int) -> str:
        if not self.absolute:
            return f"day {day + 1}"
        return str(np.datetime64(int(day), "D"))

    def describe(self, t0: Optional[float]) -> str:
        if t0 is None or not self.absolute:
            return "recording clock (no absolute start time: pass --start)"
        return str(self.iso(np.array([t0]))[0])

    def to_dict(self) -> dict:
        return {"start_source": self.source, "origin_epoch_s": self.origin_s, "tz": self.tz}


def resolve_timebase(first_t: Optional[float], start_s: Optional[float], tz: str, path: Path,
                     device: Optional[Any] = None) -> TimeBase:
    """The recording's absolute time (the rule of the module docstring): a device file's header
    start time, ``--start`` (the first sample's time) for relative times, or epoch seconds detected
    in the file (first time >= 1e9 s); else none.

    Raises:
        ClockError: the clock read (device header, epoch times in the file) is implausible and no
            ``--start`` replaces it.
        UserError: ``--start`` given for a file whose plausible clock already says.
    """
    dev_start = getattr(device, "start_time_s", None) if device is not None else None
    t0 = float(first_t) if first_t is not None else 0.0
    if dev_start is not None:
        src = getattr(device, "start_time_source", "start time")
        # epoch times when they agree with the header's start, else offsets from it
        origin = 0.0 if first_t is not None and abs(t0 - float(dev_start)) <= MAX_JUMP_S else float(dev_start) - t0
        if start_s is not None:
            if plausible(origin + t0):
                raise UserError(f"{path}: the device file has its own start time ({src}); drop --start")
            log.warning("%s: device clock reads %s (never set): --start replaces it", path, utc_text(origin + t0))
            return TimeBase(start_s - t0, tz, f"--start (the device clock read {utc_text(origin + t0)}: never set)")
        check_plausible(origin + t0, path, f"the device clock ({src})")
        return TimeBase(origin, tz, f"device file header: {src}")
    if first_t is not None and first_t >= EPOCH_THRESHOLD_S:
        if start_s is not None and not plausible(t0):
            return TimeBase(start_s - t0, tz, f"--start (the file's epoch times read {utc_text(t0)})")
        check_plausible(t0, path, "its first time, as Unix epoch seconds,")
        if start_s is not None:
            raise UserError(f"{path}: its times are already absolute (epoch seconds, first "
                            f"{first_t:.3f} > 1e9); drop --start")
        log.info("%s: times > 1e9 s: read as Unix epoch seconds (UTC)", path)
        return TimeBase(0.0, tz, "epoch times in the file (values > 1e9 s)")
    if start_s is not None:
        return TimeBase(start_s - (first_t or 0.0), tz, "--start (time of the first sample)")
    return TimeBase(None, tz, "none (relative times and no --start)")
