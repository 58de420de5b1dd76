"""The one interface every device-file reader implements (Axivity, GENEActiv, APDM, ActiGraph, Empatica).

A reader opens a file, checks it and exposes :class:`DeviceInfo` (units, rate and start time taken
from the file) before any sample is read; :meth:`DeviceReader.iter_chunks` then yields the samples
in bounded memory, already in canonical units (acc in g, gyro in rad/s; see
:mod:`crossmodal_har.signals.types`). Times are Unix epoch seconds (UTC, float64) when the file
carries a start time, else seconds from the first sample. A device without a gyroscope yields the
6-column layout with NaN gyroscope columns and ``channels="acc"``.

Every problem with the file (truncated, corrupt, not that format, missing fields) is a
:class:`crossmodal_har.errors.DataError` naming the file, never a traceback from a third-party reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

#: default samples per chunk: ~24 MB of float64 [n, 7] per chunk
DEFAULT_CHUNK_SAMPLES = 500_000


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
    """

    format: str
    path: Path
    rate_hz: float
    channels: str
    start_time_s: Optional[float] = None
    start_time_source: str = "none"
    n_samples: Optional[int] = None
    device: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"format": self.format, "path": str(self.path), "rate_hz": self.rate_hz,
                "channels": self.channels, "start_time_s": self.start_time_s,
                "start_time_source": self.start_time_source, "n_samples": self.n_samples,
                "device": dict(self.device)}


class DeviceReader:
    """Base class: subclasses set ``info`` in ``__init__`` (after validating the header) and
    implement :meth:`iter_chunks`."""

    #: registry name and file-name suffixes (lower case, with the dot) that select this reader
    format: str = ""
    suffixes: Tuple[str, ...] = ()

    def __init__(self, path: Path, *, tz: str = "UTC"):
        self.path = Path(path)
        self.tz = tz
        self.info: DeviceInfo  # set by subclasses

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


def check_chunk_samples(chunk_samples: int) -> int:
    if int(chunk_samples) < 1:
        raise ValueError("chunk_samples must be >= 1")
    return int(chunk_samples)
