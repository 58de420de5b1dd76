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
* ``report.html``: one self-contained page (inline CSS and SVG, no script, no network) with the
  recording's metadata, the wear summary and the non-wear thresholds, a 24 h x days activity
  timeline, minutes per activity per day and the bundle's model card.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from crossmodal_har.errors import UserError
from crossmodal_har.infer.csvsafe import csv_cell
from crossmodal_har.io import atomic_write, atomic_write_text
from crossmodal_har.signals.clock import TimeBase
from crossmodal_har.signals.status import STATUS_IDLE_SLEEP, STATUS_OK, has_window, is_nonwear
from crossmodal_har.signals.text import shown

SLOT_S = 300  # timeline / aggregation cell (5 min)
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]
NONWEAR_COLOUR, OTHER_COLOUR = "#b0b0b0", "#e8e8e8"


class DayAggregator:
    """Seconds per (local day, 5-min slot) and category: each class, non-wear, unlabelled windows."""

    def __init__(self, class_names: List[str], hop_s: float, timebase: Optional[TimeBase] = None):
        self.names = list(class_names)
        self.hop = float(hop_s)
        self.timebase = timebase
        self.cells: Dict[int, np.ndarray] = {}  # day * slots + slot -> [C + 2] seconds

    @property
    def slots_per_day(self) -> int:
        return 86400 // SLOT_S

    def add(self, start: np.ndarray, status: np.ndarray, labels: np.ndarray) -> None:
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
        for k, c, n in zip(*_count_pairs(key, cat)):
            cell = self.cells.get(int(k))
            if cell is None:
                cell = self.cells[int(k)] = np.zeros(C + 2)
            cell[int(c)] += n * self.hop

    def days(self) -> Dict[int, np.ndarray]:
        """day -> [slots_per_day, C + 2] seconds."""
        out: Dict[int, np.ndarray] = {}
        S = self.slots_per_day
        for k, v in self.cells.items():
            d, s = divmod(k, S)
            out.setdefault(d, np.zeros((S, len(self.names) + 2)))[s] += v
        return dict(sorted(out.items()))


def _count_pairs(key: np.ndarray, cat: np.ndarray):
    pairs = np.stack([key, cat.astype(np.int64)], axis=1)
    u, n = np.unique(pairs, axis=0, return_counts=True)
    return u[:, 0], u[:, 1], n


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


# --------------------------------------------------------------------------------- HTML

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:4px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.note{color:#666;font-size:12px}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border:1px solid #999}
pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto;max-height:320px}
"""


def _e(x: Any) -> str:
    return html.escape(shown(x), quote=True)


def _kv_table(items: List[tuple]) -> str:
    return "<table>" + "".join(f"<tr><th class='l'>{_e(k)}</th><td class='l'>{_e(v)}</td></tr>"
                               for k, v in items) + "</table>"


def _hm(minutes: float) -> str:
    m = int(round(minutes))
    return f"{m // 60}h{m % 60:02d}"


def _pair(d: Any) -> Optional[str]:
    if not isinstance(d, Mapping):
        return None
    return f"{d.get('train', '?')} / {d.get('val', '?')}"


def _channels_text(ch: Any) -> str:
    if not isinstance(ch, Mapping):
        return ""
    return f"recording {ch.get('recording', '?')}, model reads {ch.get('model', '?')}"


def colours(names: List[str]) -> List[str]:
    return [PALETTE[i % len(PALETTE)] for i in range(len(names))] + [NONWEAR_COLOUR, OTHER_COLOUR]


def timeline_svg(agg: DayAggregator) -> str:
    """24 h (x) by days (y); each 5-min cell coloured by its dominant category."""
    days = agg.days()
    cols = colours(agg.names)
    left, w, rowh, top = 110, 864, 22, 20
    S = agg.slots_per_day
    cw = w / S
    height = top + rowh * max(1, len(days)) + 10
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{left + w + 24}' height='{height}' "
             f"role='img' aria-label='activity timeline'>"]
    for h in range(0, 25, 3):
        x = left + h * w / 24
        parts.append(f"<line x1='{x:.1f}' y1='{top - 4}' x2='{x:.1f}' y2='{height - 10}' stroke='#ccc'/>"
                     f"<text x='{x:.1f}' y='{top - 7}' font-size='10' text-anchor='middle'>{h:02d}:00</text>")
    for r, (d, m) in enumerate(days.items()):
        y = top + r * rowh
        parts.append(f"<text x='{left - 6}' y='{y + rowh * 0.65:.1f}' font-size='11' text-anchor='end'>"
                     f"{_e(agg.timebase.day_label(d))}</text>")
        parts.append(f"<rect x='{left}' y='{y + 2}' width='{w}' height='{rowh - 4}' fill='#fafafa' stroke='#ddd'/>")
        tot = m.sum(axis=1)
        dom = np.argmax(m, axis=1)
        s = 0
        while s < S:  # runs of equal dominant category -> one rect each
            if tot[s] <= 0:
                s += 1
                continue
            e = s + 1
            while e < S and tot[e] > 0 and dom[e] == dom[s]:
                e += 1
            parts.append(f"<rect x='{left + s * cw:.2f}' y='{y + 2}' width='{(e - s) * cw:.2f}' "
                         f"height='{rowh - 4}' fill='{cols[dom[s]]}'/>")
            s = e
    parts.append("</svg>")
    return "".join(parts)


def _damage_html(summary: Mapping[str, Any]) -> str:
    """The damaged parts of a device file that were left out (``skipped_parts``), if any."""
    parts = summary.get("skipped_parts") or []
    if not parts:
        return ""
    rows = [(p["line"], f"{p.get('after_time') or p.get('after_s') or 'file start'} .. "
                        f"{p.get('before_time') or p.get('before_s') or 'file end'}") for p in parts]
    return (f"<h2>Damaged parts left out</h2><p class='note'>{len(parts)} damaged part(s) of the file could not be "
            "read and were left out (a gap in the recording); the rest was read.</p>" + _kv_table(rows))


def render_html(agg: DayAggregator, daily: List[Dict[str, Any]], summary: Mapping[str, Any],
                meta: Mapping[str, Any]) -> str:
    names = agg.names
    cols = colours(names)
    tb = agg.timebase
    nw = summary.get("nonwear") or {}
    first = summary.get("first_time_s")
    last = summary.get("last_time_s")
    meta_items = [
        ("input", summary.get("input", "")),
        ("start", tb.describe(first)),
        ("end", tb.describe(last)),
        ("time zone", tb.tz),
        ("start time from", tb.source),
        ("channels", _channels_text(summary.get("channels"))),
        ("duration", _hm((summary.get("duration_s") or 0.0) / 60.0)),
        ("rows read", f"{summary.get('rows_read', 0):,}"),
        ("units (declared)", json.dumps(summary.get("units", {}))),
        ("windows", f"{summary.get('windows', 0):,} ({summary.get('windows_ok', 0):,} classified)"),
        ("model", summary.get("model", "")), ("runtime", summary.get("runtime", "")),
        ("smoothing", summary.get("smooth", 0)),
    ]
    dev = summary.get("device")
    if isinstance(dev, Mapping):
        meta_items += [("device format", dev.get("format", "")), ("device sample rate", f"{dev.get('rate_hz')} Hz")]
        meta_items += [(f"device: {k}", v if isinstance(v, str) else json.dumps(v, default=str))
                       for k, v in (dev.get("device") or {}).items()]
    tot_wear = sum(r["wear_min"] for r in daily)
    tot_nw = sum(r["nonwear_min"] for r in daily)
    wear_items = [("wear time", _hm(tot_wear)), ("non-wear time", _hm(tot_nw)),
                  ("non-wear fraction", f"{100 * tot_nw / max(tot_wear + tot_nw, 1e-9):.1f} %")]
    idle = (summary.get("windows_skipped") or {}).get(STATUS_IDLE_SLEEP, 0)
    if idle:
        wear_items.append(("of which device idle sleep", f"{_hm(idle * agg.hop / 60.0)} ({idle} windows in "
                                                         "the device's idle-sleep mode, counted as non-wear)"))
    if nw:
        wear_items += [("non-wear method", nw.get("method", "")),
                       ("thresholds", f"std < {nw.get('std_g')} g and range < {nw.get('range_g')} g on >= "
                                      f"{nw.get('min_axes')} of 3 axes; {nw.get('window_s', 0) / 60:.0f}-min "
                                      f"windows every {nw.get('step_s', 0) / 60:.0f} min (approach "
                                      f"{nw.get('approach')})"),
                       ("60-min windows judged / non-wear", f"{nw.get('windows_evaluated', 0)} / "
                                                            f"{nw.get('windows_nonwear', 0)}")]
        if nw.get("edge_step_s"):
            wear_items.append(("edge refinement", f"stretch edges refined every {nw['edge_step_s']:g} s "
                                                  f"(+{nw.get('edge_refinement_min', 0):.0f} min)"))
        if nw.get("settings_from"):
            wear_items.append(("settings from", nw["settings_from"]))
    else:
        wear_items.append(("non-wear detection", "off"))
    calib = summary.get("calibration")
    calib_html = (_kv_table([(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in calib.items()])
                  if isinstance(calib, Mapping) else "<p class='note'>no autocalibration in this run</p>")
    if isinstance(calib, Mapping):
        verdict = ("applied" if calib.get("applied") else "not applied") + (
            f": {calib['reason']}" if calib.get("reason") else "")
        calib_html = f"<p>Autocalibration {_e(verdict)}.</p>" + calib_html
    legend = "".join(f"<span><i style='background:{c}'></i>{_e(n)}</span>"
                     for n, c in zip(names + ["non-wear", "unlabelled window"], cols))
    head = "".join(f"<th>{_e(c)}</th>" for c in ["wear", "non-wear"] + names)
    body = "".join("<tr><td class='l'>" + _e(r["day"]) + "</td>" +
                   "".join(f"<td>{r[k]:.0f}</td>" for k in ["wear_min", "nonwear_min"] + [f"{c}_min" for c in names])
                   + "</tr>" for r in daily)
    minutes_table = f"<table><tr><th class='l'>day</th>{head}</tr>{body}</table>"
    pre = meta.get("preprocess", {})
    prov = meta.get("provenance", {})
    card_items = [("classes", ", ".join(meta.get("class_names", names))),
                  ("encoder", (meta.get("encoder") or {}).get("name", (meta.get("encoder") or {}).get("model", ""))),
                  ("head", (meta.get("head") or {}).get("type", "")),
                  ("training data", prov.get("dataset", "") if isinstance(prov, Mapping) else ""),
                  ("protocol", prov.get("protocol", "") if isinstance(prov, Mapping) else "")]
    if isinstance(prov, Mapping):
        subj = prov.get("subjects") if isinstance(prov.get("subjects"), Mapping) else {}
        card_items += [(k, v) for k, v in (
            ("created", prov.get("created")), ("seed", prov.get("seed")),
            ("training / validation windows", _pair(prov.get("windows"))),
            ("training / validation subjects", _pair({k: len(v) for k, v in subj.items()
                                                      if isinstance(v, list)} or None)),
            ("note", prov.get("note"))) if v not in (None, "")]
    metrics = meta.get("metrics", {})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Activity report</title>
<style>{CSS}</style></head><body>
<h1>Activity report</h1>
<p class="note">Generated by crossmodal-har predict. Times are local to {_e(tb.tz)}; each window accounts
for one hop ({agg.hop:g} s) of time; gaps count nowhere.</p>
<h2>Recording</h2>{_kv_table(meta_items)}
{_damage_html(summary)}<h2>Wear</h2>{_kv_table(wear_items)}
<h2>Calibration</h2>{calib_html}
<h2>Activity timeline (24 h &times; days)</h2>
<div class="legend">{legend}</div>{timeline_svg(agg)}
<h2>Minutes per activity per day</h2>{minutes_table}
<h2>Model card</h2>{_kv_table(card_items)}
<h3>Validation metrics</h3><p class="note">From the bundle: used for model selection, optimistic.</p>
<pre>{_e(json.dumps(metrics, indent=2, default=str))}</pre>
<h3>Preprocessing</h3><pre>{_e(json.dumps(pre, indent=2, default=str))}</pre>
<h3>Training data and provenance</h3><pre>{_e(json.dumps(prov, indent=2, default=str))}</pre>
</body></html>
"""
