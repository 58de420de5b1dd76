"""Timing of GoPro IMU samples: every sample of a stream gets a time on the video clock (s).

    * Sample indices come from ``TSMP`` (total samples so far) when present, else from counting.
    * With ``STMP`` (microsecond timestamp of each payload's first sample; MAX, HERO6+ and later):
      sample times are interpolated between consecutive STMPs (extrapolated with the last local
      rate after the last one), then moved onto the video clock by the offset between a
      frame-locked stream's STMP (SHUT/ISOE/ISOG, one sample per video frame) and the payload's
      presentation time; without a frame-locked stream, by the median offset of the IMU stream's
      own STMPs to its payload times.
    * Without STMP (HERO5): a least-squares line through (first sample index, payload start time)
      of every payload gives the rate and the time of sample 0. The last payload's duration is
      not used: it is often padded past the end of the video.
    * ``TIMO`` (a declared delay of a stream) is subtracted.

Pure functions of the decoded chunks (no file access); :mod:`.telemetry` calls them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from crossmodal_har.errors import DataError
from crossmodal_har.pairs import gpmf

log = logging.getLogger(__name__)

# Streams with one sample per video frame: their STMP ties the camera clock to the video clock.
FRAME_LOCKED_KEYS = ("SHUT", "ISOE", "ISOG")


@dataclass
class Chunk:
    """One stream's samples in one payload (times in s on the video clock; values scaled, stored axis order)."""

    pts_s: float
    duration_s: float
    values: np.ndarray  # [n, e] scaled, stored order
    tsmp: Optional[int]
    stmp_us: Optional[float]
    timo_s: float


def _fit_line(x: np.ndarray, y: np.ndarray) -> Tuple[float, float]:
    """Least-squares y = a + b x; returns (a, b)."""
    xm, ym = x.mean(), y.mean()
    b = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
    return float(ym - b * xm), b


def _first_indices(chunks: Sequence[Chunk]) -> np.ndarray:
    n = np.array([len(c.values) for c in chunks], dtype=np.int64)
    counted = np.concatenate([[0], np.cumsum(n)[:-1]])
    if all(c.tsmp is not None for c in chunks):
        first = np.array([c.tsmp for c in chunks], dtype=np.int64) - n
        # TSMP counts from record start; payloads dropped from the file leave a gap in the count,
        # which keeps later samples at their right place. Inconsistent counters: count instead.
        if first[0] >= 0 and np.all(first[1:] >= first[:-1] + n[:-1]):
            return first - first[0]
        log.debug("TSMP inconsistent with sample counts; counting samples instead")
    return counted


def stream_times(key: str, chunks: Sequence[Chunk], clock_offset_s: Optional[float],
                  source: Optional[Path]) -> Tuple[np.ndarray, str]:
    """Per-sample times (s, video clock) of one stream, and the method used."""
    first = _first_indices(chunks).astype(np.float64)
    n = np.array([len(c.values) for c in chunks], dtype=np.int64)
    idx = np.concatenate([f + np.arange(k) for f, k in zip(first, n)])
    pts = np.array([c.pts_s for c in chunks])
    stmp = [c.stmp_us for c in chunks]
    t: Optional[np.ndarray] = None
    method = "payload"
    if len(chunks) >= 2 and all(s is not None for s in stmp):
        y = np.array(stmp, dtype=np.float64) * 1e-6
        if np.all(np.diff(y) > 0):
            local = (y[-1] - y[-2]) / (first[-1] - first[-2])
            t_cam = np.where(idx <= first[-1], np.interp(idx, first, y), y[-1] + (idx - first[-1]) * local)
            offset = clock_offset_s if clock_offset_s is not None else float(np.median(pts - y))
            t = t_cam + offset
            method = "stmp"
        else:
            log.warning("%s: %s STMP not increasing; timing from payload times instead", source, key)
    if t is None:
        if len(chunks) >= 2:
            a, b = _fit_line(first, pts)
        else:
            dur = chunks[0].duration_s
            if not dur > 0:
                raise DataError(source, f"{key}: one telemetry payload with no duration; cannot time samples")
            b = dur / n[0]
            a = pts[0]
        if not b > 0:
            raise DataError(source, f"{key}: telemetry payload times do not increase with the sample count")
        t = a + idx * b
    timo = chunks[-1].timo_s
    if timo:
        t = t - timo
    if not np.all(np.diff(t) > 0):
        raise DataError(source, f"{key}: derived sample times are not strictly increasing")
    return t, method


def frame_locked_offset(payload_blocks: Sequence[Dict[str, gpmf.SensorBlock]],
                         pts: Sequence[float]) -> Optional[float]:
    """Video-clock minus STMP-clock offset (s) from a stream with one sample per video frame."""
    for key in FRAME_LOCKED_KEYS:
        offs = []
        for blocks, p in zip(payload_blocks, pts):
            b = blocks.get(key)
            if b is None or b.repeat == 0:
                continue
            s = b.prop_number("STMP")
            if s is not None:
                offs.append(p - s * 1e-6)
        if offs:
            return float(np.median(offs))
    return None
