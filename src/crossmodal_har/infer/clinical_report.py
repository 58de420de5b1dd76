"""The clinician's report of a prediction run: local days and hours, and one HTML page.

The recording's wall-clock time (:class:`crossmodal_har.signals.clock.TimeBase`) gives the local
calendar days / hours of the summaries. :class:`DayAggregator` is fed every output row while the
predictions stream out (memory: one cell per 5 minutes of recording, a week is ~2,000 cells) and
:func:`write_report` writes

* ``daily_summary.csv``: ``day, valid, wear_hours, wear_min, nonwear_min, <label>_min`` per class,
  one row per local calendar day with data; ``valid`` by :class:`DayRules` (at least
  ``min_wear_hours`` of wear, GGIR's 16 h by default; optionally not the first or last day). ``wear_min`` is the time of windows that are not non-wear (classified ones
  and those failing a quality check); ``<label>_min`` counts classified windows only. Each window
  accounts for one hop (stride) of time, as in the run's summary; gaps count nowhere. Non-wear is
  the detector's and the device's own idle sleep (ActiGraph), both.
* ``hourly_summary.csv``: the same per ``day, hour``.
* ``report.html``: one self-contained page (:mod:`crossmodal_har.infer.report_page`: an autoescaped
  Jinja2 template, inline CSS and SVG, no script, no network).

The aggregator also keeps, per day and class, the sum and count of the top-class probability of the
classified windows (the report's uncertainty).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from crossmodal_har.errors import UserError
from crossmodal_har.infer.csvsafe import csv_cell
from crossmodal_har.infer.report_page import render_html
from crossmodal_har.io import atomic_write, atomic_write_text
from crossmodal_har.signals.clock import TimeBase
from crossmodal_har.signals.status import STATUS_OK, has_window, is_nonwear

SLOT_S = 300  # timeline / aggregation cell (5 min)


class DayAggregator:
    """Seconds per (local day, 5-min slot) and category: each class, non-wear, unlabelled windows."""

    def __init__(self, class_names: List[str], hop_s: float, timebase: Optional[TimeBase] = None):
        self.names = list(class_names)
        self.hop = float(hop_s)
        self.timebase = timebase
        self.cells: Dict[int, np.ndarray] = {}  # day * slots + slot -> [C + 2] seconds
        self.top_p: Dict[int, np.ndarray] = {}  # day -> [C, 2]: sum and count of the top-class probability

    @property
    def slots_per_day(self) -> int:
        return 86400 // SLOT_S

    def add(self, start: np.ndarray, status: np.ndarray, labels: np.ndarray,
            probs: Optional[np.ndarray] = None) -> None:
        """One batch of output rows; ``probs`` [n, C] (NaN rows where no class): the top-class probability of
        each classified window goes to its day and label."""
        if self.timebase is None:
            raise RuntimeError("DayAggregator.add before its timebase is set")
        C = len(self.names)
        status = np.asarray(status).astype(str)
        win = has_window(status)
        if not win.any():
            return
        cat = np.where(status == STATUS_OK, labels, np.where(is_nonwear(status), C, C + 1))[win]
        cat = np.where(cat < 0, C + 1, cat)
        loc = self.timebase.local_s(np.asarray(start, np.float64)[win])
        key = np.floor(loc / SLOT_S).astype(np.int64)
        for k, c, n in zip(*_count_pairs(key, cat, C + 2)):
            cell = self.cells.get(int(k))
            if cell is None:
                cell = self.cells[int(k)] = np.zeros(C + 2)
            cell[int(c)] += n * self.hop
        if probs is not None:
            self._add_top_p(loc, cat, np.asarray(probs, np.float64)[win])

    def _add_top_p(self, loc: np.ndarray, cat: np.ndarray, probs: np.ndarray) -> None:
        C = len(self.names)
        ok = (cat < C) & np.isfinite(probs).all(axis=1)
        if not ok.any():
            return
        day = np.floor(loc[ok] / 86400.0).astype(np.int64)
        top, lab = probs[ok].max(axis=1), cat[ok].astype(np.int64)
        for d in np.unique(day):
            acc = self.top_p.setdefault(int(d), np.zeros((C, 2)))
            sel = day == d
            np.add.at(acc[:, 0], lab[sel], top[sel])
            np.add.at(acc[:, 1], lab[sel], 1.0)

    def days(self) -> Dict[int, np.ndarray]:
        """day -> [slots_per_day, C + 2] seconds."""
        out: Dict[int, np.ndarray] = {}
        S = self.slots_per_day
        for k, v in self.cells.items():
            d, s = divmod(k, S)
            out.setdefault(d, np.zeros((S, len(self.names) + 2)))[s] += v
        return dict(sorted(out.items()))


def _count_pairs(key: np.ndarray, cat: np.ndarray, n_cat: int):
    """The distinct ``(key, cat)`` pairs in order (by key, then category) and their counts; ``cat``
    in ``[0, n_cat)``. One number per pair (a 1-D unique: 6x faster than the unique of rows)."""
    u, n = np.unique(key * n_cat + cat.astype(np.int64), return_counts=True)
    k, c = np.divmod(u, n_cat)
    return k, c, n


# --------------------------------------------------------------------------------- tables

@dataclass
class DayRules:
    """Which calendar days are valid (``--min-wear-hours``, ``--exclude-first-last``).

    Attributes:
        min_wear_hours: a day is valid with at least this much wear (hours): 16 is GGIR's
            ``includedaycrit``; skdh uses 10, stepcount ``--min-wear-per-day`` (in minutes).
        exclude_first_last: the first and last calendar days of the recording are never valid (the
            days of putting the device on and taking it off; GGIR's ``excludefirstlast``).
    """

    min_wear_hours: float = 16.0
    exclude_first_last: bool = False

    def validate(self) -> None:
        if not 0.0 <= self.min_wear_hours <= 24.0:
            raise UserError(f"--min-wear-hours must be within 0..24, got {self.min_wear_hours:g}")


def daily_rows(agg: DayAggregator, rules: Optional[DayRules] = None) -> List[Dict[str, Any]]:
    """One row per local calendar day with data: wear hours, ``valid`` by ``rules`` (default
    :class:`DayRules`), minutes of wear, non-wear and each activity."""
    rules = rules if rules is not None else DayRules()
    C = len(agg.names)
    rows = []
    days = agg.days()
    for i, (d, m) in enumerate(days.items()):
        tot = m.sum(axis=0) / 60.0
        wear = tot[:C].sum() + tot[C + 1]
        edge = rules.exclude_first_last and i in (0, len(days) - 1)
        row = {"day": agg.timebase.day_label(d), "valid": bool(wear / 60.0 >= rules.min_wear_hours - 1e-9 and not edge),
               "wear_hours": wear / 60.0, "wear_min": wear, "nonwear_min": tot[C]}
        row.update({f"{c}_min": tot[j] for j, c in enumerate(agg.names)})
        rows.append(row)
    return rows


def valid_day_summary(daily: List[Dict[str, Any]], names: List[str], rules: DayRules) -> Dict[str, Any]:
    """The summary's ``days``: the rules, days with data, valid days, wear hours (all days and valid
    days), and the mean minutes per valid day of wear, non-wear and every activity (None without a
    valid day)."""
    valid = [r for r in daily if r["valid"]]
    keys = ["wear_min", "nonwear_min"] + [f"{c}_min" for c in names]
    return {"min_wear_hours": rules.min_wear_hours, "exclude_first_last": rules.exclude_first_last,
            "days": len(daily), "valid_days": len(valid),
            "wear_hours": float(sum(r["wear_hours"] for r in daily)),
            "valid_wear_hours": float(sum(r["wear_hours"] for r in valid)),
            "per_valid_day": {k: (float(np.mean([r[k] for r in valid])) if valid else None) for k in keys}}


def hourly_rows(agg: DayAggregator) -> List[Dict[str, Any]]:
    C = len(agg.names)
    per_hour = 3600 // SLOT_S
    rows = []
    for d, m in agg.days().items():
        h = m.reshape(24, per_hour, C + 2).sum(axis=1) / 60.0
        for hour in range(24):
            if not h[hour].any():
                continue
            row = {"day": agg.timebase.day_label(d), "hour": hour,
                   "wear_min": h[hour, :C].sum() + h[hour, C + 1], "nonwear_min": h[hour, C]}
            row.update({f"{c}_min": h[hour, j] for j, c in enumerate(agg.names)})
            rows.append(row)
    return rows


def _write_csv(path: Path, rows: List[Dict[str, Any]], columns: List[str]) -> None:
    def body(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(",".join(csv_cell(c) for c in columns) + "\n")
            for r in rows:
                fh.write(",".join(csv_cell(r[c]) if isinstance(r[c], str) else
                                  (str(r[c]) if isinstance(r[c], int) else f"{r[c]:.2f}") for c in columns) + "\n")

    atomic_write(path, body)


def report_paths(out_dir: Path) -> Dict[str, Path]:
    return {"daily": out_dir / "daily_summary.csv", "hourly": out_dir / "hourly_summary.csv",
            "html": out_dir / "report.html"}


def write_report(out_dir: Path, agg: DayAggregator, summary: Mapping[str, Any],
                 bundle_meta: Mapping[str, Any], rules: Optional[DayRules] = None) -> Dict[str, Path]:
    """Write the three report files into ``out_dir`` (created); returns their paths. ``rules``: which
    days are valid (default :class:`DayRules`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = report_paths(out_dir)
    labels = [f"{c}_min" for c in agg.names]
    daily = daily_rows(agg, rules)
    _write_csv(paths["daily"], daily, ["day", "valid", "wear_hours", "wear_min", "nonwear_min"] + labels)
    _write_csv(paths["hourly"], hourly_rows(agg), ["day", "hour", "wear_min", "nonwear_min"] + labels)
    page = render_html(agg, daily, summary, bundle_meta)
    atomic_write_text(paths["html"], page)
    return paths
