"""The one interface every device-file reader implements (Axivity, GENEActiv, APDM, ActiGraph, Empatica).

A reader opens a file, checks it and exposes :class:`DeviceInfo` (units, rate and start time taken
from the file) before any sample is read; :meth:`DeviceReader.iter_chunks` then yields the samples
in bounded memory, already in canonical units (acc in g, gyro in rad/s; see
:mod:`crossmodal_har.signals.types`). Times are Unix epoch seconds (UTC, float64) when the file
carries a start time, else seconds from the first sample. A device without a gyroscope yields the
6-column layout with NaN gyroscope columns and ``channels="acc"``.

Every problem with the file (truncated, corrupt, not that format, missing fields) is a
:class:`crossmodal_har.errors.DataError` naming the file, never a traceback from a third-party reader.

Damaged files. A reader opened with ``damaged="skip"`` leaves out the parts of a file it can tell
are damaged (a ``.cwa`` sector with a bad checksum, a cut last GENEActiv page, a ``.gt3x`` record
with a bad checksum) and lists each stretch as a :class:`Skipped` in ``info.skipped``; with
``damaged="refuse"`` (the default) the first one is a DataError. The samples around a skipped part
keep their own times, so what was left out is a gap in ``t``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Tuple

import numpy as np

from crossmodal_har.errors import DataError

#: samples (rows) read at once, by default, everywhere a recording is streamed (``--chunk-rows``): results
#: never depend on it; memory does. 100,000 (not 500,000): each chunk is copied a few times on its way to
#: the windows, and a reader paused mid-file holds its last chunk, so with 500,000 predict's peak RSS grew
#: from 415 MB (a 1-day .cwa, read whole by the calibration pass) to 503 MB (7 days); with 100,000 it is
#: 224 vs 251 MB at the same speed (benchmarks/RESULTS.md, issue 20)
DEFAULT_CHUNK_SAMPLES = 100_000
#: highest sample rate a header may state (Axivity's maximum is 3200 Hz): loops and fill blocks
#: are sized by it
MAX_RATE_HZ = 10_000.0
#: what a reader does with a damaged part of a file: refuse the file, or skip the part and list it
DAMAGE_POLICIES = ("refuse", "skip")


@dataclass
class Skipped:
    """A damaged stretch of a device file left out of the samples (``damaged="skip"``).

    Attributes:
        reason: what is wrong, in words (``checksum mismatch``, ``cut off at the end of the file``).
        unit: what the file is made of (``sector``, ``page``, ``record``).
        first: index of the first damaged unit, counted as in the reader's error messages (sectors and
            records from 0, pages from 1).
        count: damaged units in the stretch.
        at_sample: samples of the file before the stretch (the index of the first sample after it).
        after_s: time (s, as ``t``) of the last sample before the stretch; None at the file's start.
        before_s: time of the first sample after the stretch; None at the file's end. Both are
            filled by :func:`crossmodal_har.signals.recording.iter_chunks` as the samples pass.
        missing_samples: samples the file announced for the stretch, where it says (else None).
    """

    reason: str
    unit: str
    first: int
    count: int
    at_sample: int
    after_s: Optional[float] = None
    before_s: Optional[float] = None
    missing_samples: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"reason": self.reason, "unit": self.unit, "first": self.first, "count": self.count,
                "at_sample": self.at_sample, "after_s": self.after_s, "before_s": self.before_s,
                "missing_samples": self.missing_samples}

    def line(self) -> str:
        """One line for a summary: ``2 sectors (13-14) skipped: checksum mismatch``."""
        what = f"{self.unit} {self.first}" if self.count == 1 else \
            f"{self.count} {self.unit}s ({self.first}-{self.first + self.count - 1})"
        return f"{what} skipped: {self.reason}"


@dataclass
class DeviceInfo:
    """What the file says about the recording, known before any sample is read.

    Attributes:
        format: registry name (``cwa``, ``geneactiv``, ``apdm``, ``gt3x``, ``empatica``).
        path: the file.
        rate_hz: nominal sample rate from the file's header.
        channels: ``acc`` (no gyroscope) or ``acc+gyro``.
        start_time_s: Unix epoch seconds (UTC) of the first sample, or None when the file has none.
        start_time_source: how the start time was read, for the summary (e.g. "file header, UTC
            offset +01:00" or "file header, local time read in --tz Europe/London").
        n_samples: samples in the file when the header says, else None.
        device: free-form facts for the report (model, serial, firmware, sensor ranges, units as stored).
        skipped: damaged stretches left out of the samples (``damaged="skip"``), in file order;
            complete once the file has been read to the end.
        idle_sleep: ``(start_s, end_s)`` stretches (times as ``t``, end exclusive) in which the
            device says it slept (ActiGraph idle-sleep mode) and its reader filled the samples;
            each is listed before its samples are yielded.
    """

    format: str
    path: Path
    rate_hz: float
    channels: str
    start_time_s: Optional[float] = None
    start_time_source: str = "none"
    n_samples: Optional[int] = None
    device: Dict[str, Any] = field(default_factory=dict)
    skipped: List[Skipped] = field(default_factory=list)
    idle_sleep: List[Tuple[float, float]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"format": self.format, "path": str(self.path), "rate_hz": self.rate_hz,
                "channels": self.channels, "start_time_s": self.start_time_s,
                "start_time_source": self.start_time_source, "n_samples": self.n_samples,
                "device": dict(self.device), "skipped": [s.to_dict() for s in self.skipped],
                "idle_sleep_stretches": len(self.idle_sleep),
                "idle_sleep_s": float(sum(b - a for a, b in self.idle_sleep))}


class DeviceReader:
    """Base class: subclasses set ``info`` in ``__init__`` (after validating the header) and
    implement :meth:`iter_chunks`."""

    #: registry name and file-name suffixes (lower case, with the dot) that select this reader
    format: str = ""
    suffixes: Tuple[str, ...] = ()
    #: whether a file may hold several sensors, chosen by ``sensor=`` (a label or id)
    multi_sensor: bool = False
    #: the first bytes that choose this reader among the readers of one suffix (GENEA's ``GENEA/``
    #: among ``.bin`` files); empty for the suffix's default reader
    magic: bytes = b""

    def __init__(self, path: Path, *, tz: str = "UTC", damaged: str = "refuse"):
        if damaged not in DAMAGE_POLICIES:
            raise ValueError(f"damaged must be one of {DAMAGE_POLICIES}, got {damaged!r}")
        self.path = Path(path)
        self.tz = tz
        self.damaged = damaged
        self.info: DeviceInfo  # set by subclasses

    def _open(self) -> BinaryIO:
        """The file opened for binary reading; a DataError naming it when it cannot be."""
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise DataError(self.path, f"cannot read file: {exc.strerror or exc}") from None

    def _read_head(self, n_bytes: int) -> Tuple[bytes, int]:
        """The file's first ``n_bytes`` bytes (fewer when it is shorter) and its size; a DataError
        naming the file when it is missing or cannot be read."""
        if not self.path.is_file():
            raise DataError(self.path, "file not found")
        with self._open() as fh:
            head = fh.read(n_bytes)
            size = os.fstat(fh.fileno()).st_size
        return head, size

    def _damage(self, message: str, *, reason: str, unit: str, first: int, count: int, at_sample: int,
                missing_samples: Optional[int] = None) -> None:
        """A damaged part: a DataError (``message``, naming the file) when refusing, else listed in
        ``info.skipped`` (joined to the stretch before when it continues it)."""
        if self.damaged == "refuse":
            raise DataError(self.path, message)
        skipped = self.info.skipped
        last = skipped[-1] if skipped else None
        if (last is not None and last.reason == reason and last.unit == unit and last.first + last.count == first
                and last.at_sample == at_sample):
            last.count += count
            return
        skipped.append(Skipped(reason=reason, unit=unit, first=first, count=count, at_sample=at_sample,
                               missing_samples=missing_samples))

    def iter_chunks(self, chunk_samples: int = DEFAULT_CHUNK_SAMPLES) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """Yield ``(t [n] float64 seconds, data [n, 6] float64 canonical)`` with at most
        ``chunk_samples`` rows each, in time order. Raises DataError naming the file."""
        raise NotImplementedError


# ------------------------------------------------------------------------- shared helpers

def days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of the proleptic Gregorian dates (vectorised integer arithmetic)."""
    y = np.asarray(y, np.int64) - (np.asarray(m) <= 2)
    m = np.asarray(m, np.int64)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + np.asarray(d, np.int64) - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def split_rows(t: np.ndarray, data: np.ndarray, chunk_samples: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Pieces of at most ``chunk_samples`` rows."""
    for a in range(0, len(t), chunk_samples):
        yield t[a:a + chunk_samples], data[a:a + chunk_samples]


def check_rate(path: Path, rate: Any, what: str) -> float:
    """``rate`` (Hz, from the file's ``what``) as a float, or a DataError naming the file: it must be
    a finite number in (0, :data:`MAX_RATE_HZ`]."""
    try:
        r = float(rate)
    except (TypeError, ValueError, OverflowError):
        r = float("nan")
    if not (np.isfinite(r) and 0 < r <= MAX_RATE_HZ):
        raise DataError(path, f"{what}: sample rate {rate!r} Hz is not valid (expected 0 < rate <= {MAX_RATE_HZ:g})")
    return r


def check_chunk_samples(chunk_samples: int) -> int:
    if int(chunk_samples) < 1:
        raise ValueError("chunk_samples must be >= 1")
    return int(chunk_samples)
