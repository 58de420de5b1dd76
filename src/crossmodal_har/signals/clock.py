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
        dt = dt.replace(tzinfo=zone(tz_name))
    return dt.timestamp()


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
        return (s + np.array([format_offset(o) for o in off], dtype=object)).astype(str) if len(t) else \
            np.empty(0, str)

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
    """The recording's absolute time: a device file's header start time, ``--start`` (the first
    sample's time) for relative times, or epoch seconds detected in the file (first time > 1e9 s);
    else none."""
    dev_start = getattr(device, "start_time_s", None) if device is not None else None
    if dev_start is not None:
        if start_s is not None:
            raise UserError(f"{path}: the device file has its own start time "
                            f"({getattr(device, 'start_time_source', 'file header')}); drop --start")
        origin = 0.0 if first_t is not None and first_t > EPOCH_THRESHOLD_S else float(dev_start)
        return TimeBase(origin, tz, f"device file header: {getattr(device, 'start_time_source', 'start time')}")
    if first_t is not None and first_t > EPOCH_THRESHOLD_S:
        if start_s is not None:
            raise UserError(f"{path}: its times are already absolute (epoch seconds, first "
                            f"{first_t:.3f} > 1e9); drop --start")
        log.info("%s: times > 1e9 s: read as Unix epoch seconds (UTC)", path)
        return TimeBase(0.0, tz, "epoch times in the file (values > 1e9 s)")
    if start_s is not None:
        return TimeBase(start_s - (first_t or 0.0), tz, "--start (time of the first sample)")
    return TimeBase(None, tz, "none (relative times and no --start)")
