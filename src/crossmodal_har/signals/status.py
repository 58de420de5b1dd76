"""The one status vocabulary: what a window (or a stretch without one) is, by name.

These words are written into ``predictions.csv``'s ``status`` column, the run summary, the
clinician's report and a store's ``report.json`` (``windows_dropped``); every module imports them
from here. A row of ``predict``'s output is one of:

* classified: ``ok`` (:data:`STATUS_OK`), the only status with a label;
* excluded: a window was cut but fails a quality check (:data:`QUALITY_REASONS`: ``flat_line``,
  ``saturation``, ``non_finite``); no label, counted as worn time;
* non-wear: ``nonwear`` (:data:`STATUS_NONWEAR`), a window (``ok`` or ``flat_line``:
  :data:`NONWEAR_REPLACES`) inside a stretch the non-wear detector flagged; ``idle_sleep``
  (:data:`STATUS_IDLE_SLEEP`), a window (of the same statuses) whose middle lies in a stretch the
  device itself says it slept through (ActiGraph idle-sleep mode: the reader filled it with the last
  sample). Both are :data:`NONWEAR_STATUSES`: not wear, not a gap, counted as non-wear time;
* no window (:data:`NO_WINDOW_STATUSES`): a stretch of the recording where no window could be cut,
  ``gap`` (a time step longer than ``gap_tolerance_s``), ``non_finite`` (rows with missing or
  non-finite values) or ``short`` (a gap-free stretch shorter than one window).

Ingestion (:mod:`crossmodal_har.pairs`) drops windows for the same quality reasons and for three of
its own (:data:`DROP_REASONS`). A leaf module.
"""

from __future__ import annotations

import numpy as np

STATUS_OK = "ok"
STATUS_GAP = "gap"
STATUS_NON_FINITE = "non_finite"
STATUS_SHORT = "short"  # a gap-free stretch shorter than one window
STATUS_FLAT_LINE = "flat_line"
STATUS_SATURATION = "saturation"
STATUS_NONWEAR = "nonwear"
STATUS_IDLE_SLEEP = "idle_sleep"  # the device slept (ActiGraph idle-sleep mode): no samples were measured

#: why a window is excluded (not classified; not stored by ingestion). Every report counts
#: exclusions by these names.
QUALITY_REASONS = (STATUS_NON_FINITE, STATUS_FLAT_LINE, STATUS_SATURATION, STATUS_GAP)
#: stretches without a window: they count neither as windows nor as worn time
NO_WINDOW_STATUSES = (STATUS_GAP, STATUS_NON_FINITE, STATUS_SHORT)
#: window statuses that non-wear replaces (a still device may read flat)
NONWEAR_REPLACES = (STATUS_OK, STATUS_FLAT_LINE)
#: windows counted as non-wear time (detected, or the device's own idle sleep)
NONWEAR_STATUSES = (STATUS_NONWEAR, STATUS_IDLE_SLEEP)

# ingestion's own reasons to drop a window (or a session: ``error_reason``)
DROP_DESYNC = "desync"  # the IMU does not cover the video's time (or the video ends first)
DROP_DECODE_ERROR = "decode_error"  # the video frames of the window could not be decoded
DROP_TOO_SHORT = "too_short"  # the session is shorter than one window
#: ``report.json``'s ``windows_dropped`` keys, in that order
DROP_REASONS = (STATUS_GAP, STATUS_NON_FINITE, STATUS_FLAT_LINE, STATUS_SATURATION,
                DROP_DESYNC, DROP_DECODE_ERROR, DROP_TOO_SHORT)
#: old names of drop reasons, as stores and ingest ledgers written before the one vocabulary have them
LEGACY_DROP_REASONS = {"imu_gap": STATUS_GAP}


def has_window(status: np.ndarray) -> np.ndarray:
    """True where a row's ``status`` is a window's (not one of :data:`NO_WINDOW_STATUSES`)."""
    return ~np.isin(np.asarray(status).astype(str), NO_WINDOW_STATUSES)


def is_nonwear(status: np.ndarray) -> np.ndarray:
    """True where a row's ``status`` counts as non-wear time (:data:`NONWEAR_STATUSES`)."""
    return np.isin(np.asarray(status).astype(str), NONWEAR_STATUSES)
