"""report.html of ``predict --report``: what a clinician reads, from an autoescaped Jinja2 template.

:func:`render_html` turns the day aggregator (``clinical_report.DayAggregator``), the daily rows, the
run's summary (as in ``<out>.summary.json``) and the bundle's metadata into the page's context —
numbers already formatted (hh:mm, %, mg) — and renders ``templates/report.html`` with autoescaping on:
every name, label and path reaches the page escaped. Only the SVG drawings made here from numbers are
marked safe, and their text (day labels) is escaped when they are drawn.

The page (self-contained: inline CSS and SVG, no script, no network; printable): a headline block
(recording, participant, days / valid days, wear, calibration, data quality, exit status), warnings,
per-day activity bars with an hourly profile, the 24 h x days timeline with weekends marked, the
uncertainty (mean top-class probability per day and per class), the model card in words, and the
device, calibration, non-wear, preprocessing and provenance details folded in ``<details>``.
"""

from __future__ import annotations

import datetime as dt
import html
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import jinja2
import numpy as np
from markupsafe import Markup

from crossmodal_har.signals.status import NONWEAR_STATUSES, STATUS_IDLE_SLEEP
from crossmodal_har.signals.text import shown

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]
NONWEAR_COLOUR, OTHER_COLOUR = "#b0b0b0", "#e8e8e8"
NONWEAR_NAME, OTHER_NAME = "non-wear", "unclassified window"
LOW_CONFIDENCE = 0.6  # mean top-class probability below which a day or class is flagged
# where the sensor sat in the labelled datasets the project reads by name (a bundle says its dataset)
PLACEMENT = {"hapt": "waist (smartphone on a belt, UCI HAPT)"}



def _finalize(value: Any) -> Any:
    """Every text reaches the page as it can be shown in UTF-8 (:func:`shown`), then escaped; drawings pass."""
    return value if isinstance(value, Markup) or not isinstance(value, str) else shown(value)


_ENV = jinja2.Environment(loader=jinja2.PackageLoader("crossmodal_har.infer", "templates"), finalize=_finalize,
                          autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def colours(names: Sequence[str]) -> List[str]:
    """One colour per class, then non-wear and unclassified windows."""
    return [PALETTE[i % len(PALETTE)] for i in range(len(names))] + [NONWEAR_COLOUR, OTHER_COLOUR]


def hhmm(minutes: Optional[float]) -> str:
    """Minutes as ``h:mm`` (``25:03`` for a day and more)."""
    if minutes is None or not np.isfinite(minutes):
        return "–"
    if 0 < minutes < 0.5:
        return "< 0:01"
    m = int(round(float(minutes)))
    return f"{m // 60}:{m % 60:02d}"


def pct(x: Optional[float], digits: int = 0) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100.0 * float(x):.{digits}f} %"


def mg(g: Optional[float]) -> str:
    return "–" if g is None else f"{1000.0 * float(g):.1f} mg"


def _weekday(label: str) -> Optional[dt.date]:
    try:
        return dt.date.fromisoformat(label)
    except ValueError:
        return None  # "day N": the recording's own clock


def _when(tb: Any, t: Optional[float]) -> str:
    """A time as ``Mon 2026-03-02 08:30`` on the recording's local clock (the ISO text without an absolute start)."""
    text = tb.describe(t)
    try:
        return f"{dt.datetime.fromisoformat(text):%a %Y-%m-%d %H:%M}"
    except ValueError:
        return text


def _find(d: Any, keys: Sequence[str]) -> Optional[str]:
    """The first non-empty value of any of ``keys`` anywhere in nested dicts (participant ids in device headers)."""
    if isinstance(d, Mapping):
        for k in keys:
            if d.get(k) not in (None, ""):
                return str(d[k])
        for v in d.values():
            found = _find(v, keys)
            if found:
                return found
    return None


def _plain(v: Any) -> str:
    """A metadata value in words: lists joined, floats rounded, nested dicts as key=value."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_plain(x) for x in v)
    if isinstance(v, Mapping):
        return "; ".join(f"{k} = {_plain(x)}" for k, x in v.items())
    return "–" if v is None else str(v)


# --------------------------------------------------------------------------------- drawings (SVG, escaped text)

def timeline_svg(agg: Any, weekend: Sequence[bool]) -> Markup:
    """24 h (x, clock time) by days (y); each 5-min cell coloured by its dominant category; weekend days shaded."""
    days = agg.days()
    cols = colours(agg.names)
    left, w, rowh, top = 130, 840, 22, 22
    S = agg.slots_per_day
    cw = w / S
    height = top + rowh * max(1, len(days)) + 10
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{left + w + 24}' height='{height}' "
             f"role='img' aria-label='activity timeline, 24 hours by days'>"]
    for r, we in enumerate(weekend):
        if we:
            parts.append(f"<rect x='0' y='{top + r * rowh}' width='{left + w + 24}' height='{rowh}' fill='#fff4d6'/>")
    for h in range(0, 25, 3):
        x = left + h * w / 24
        parts.append(f"<line x1='{x:.1f}' y1='{top - 4}' x2='{x:.1f}' y2='{height - 10}' stroke='#ccc'/>"
                     f"<text x='{x:.1f}' y='{top - 8}' font-size='10' text-anchor='middle'>{h:02d}:00</text>")
    for r, (d, m) in enumerate(days.items()):
        y = top + r * rowh
        label = agg.timebase.day_label(d)
        date = _weekday(label)
        text = f"{date:%a} {label}" if date else label
        parts.append(f"<text x='{left - 6}' y='{y + rowh * 0.65:.1f}' font-size='11' text-anchor='end'>"
                     f"{html.escape(shown(text))}</text>")
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
    return Markup("".join(parts))


def hourly_svg(hours: np.ndarray, cols: Sequence[str]) -> Markup:
    """24 stacked bars of minutes per category (``hours`` [24, K]); y up to 60 min."""
    w, h, bw = 360, 70, 15
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h + 14}' role='img' "
             f"aria-label='minutes per hour'>", f"<line x1='0' y1='{h}' x2='{w}' y2='{h}' stroke='#999'/>"]
    for hr in range(24):
        x, y = hr * bw, float(h)
        for k in range(hours.shape[1]):
            hk = hours[hr, k] / 60.0 * h
            if hk > 0:
                y -= hk
                parts.append(f"<rect x='{x + 1}' y='{y:.2f}' width='{bw - 2}' height='{hk:.2f}' fill='{cols[k]}'/>")
        if hr % 6 == 0:
            parts.append(f"<text x='{x}' y='{h + 12}' font-size='9'>{hr:02d}:00</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


# --------------------------------------------------------------------------------- the page's context

def _headline(summary: Mapping[str, Any], daily: List[Dict[str, Any]], agg: Any) -> List[Dict[str, Any]]:
    dev = summary.get("device") if isinstance(summary.get("device"), Mapping) else {}
    inner = dev.get("device") if isinstance(dev.get("device"), Mapping) else {}
    name = os.path.basename(str(summary.get("input", ""))) or "–"
    what = " ".join(str(x) for x in (inner.get("model"), dev.get("format") and f"({dev.get('format')})") if x)
    participant = _find(inner, ("subject", "subject_code", "Subject Code", "participant", "_sc")) or "not recorded"
    wear = sum(r["wear_min"] for r in daily)
    nonwear = sum(r["nonwear_min"] for r in daily)
    days = summary.get("days") if isinstance(summary.get("days"), Mapping) else None
    if days is not None:
        edges = ", first and last excluded" if days.get("exclude_first_last") else ""
        days_text = (f"{days.get('days', len(daily))} day(s), {days.get('valid_days')} valid "
                     f"(>= {days.get('min_wear_hours'):g} h wear{edges})")
        days_warn = not days.get("valid_days")
    else:
        valid = [r.get("valid") for r in daily if "valid" in r]
        days_text = (f"{len(daily)} day(s), {sum(bool(v) for v in valid)} valid" if valid
                     else f"{len(daily)} calendar day(s); valid-day rules not applied")
        days_warn = bool(valid) and not any(valid)
    cal = summary.get("calibration") if isinstance(summary.get("calibration"), Mapping) else None
    if cal is None or cal.get("mode") == "off":
        cal_text, cal_warn = "off", False
    elif cal.get("applied"):
        cal_text = f"OK: error {mg(cal.get('error_before_g'))} → {mg(cal.get('error_after_g'))}"
        cal_warn = False
    else:
        cal_text, cal_warn = f"not applied: {cal.get('reason') or 'no reason given'}", True
    skipped_all = summary.get("windows_skipped") or {}
    # non-wear is not a quality problem: the share of the worn windows that were classified
    n = int(summary.get("windows") or 0) - sum(int(skipped_all.get(k) or 0) for k in NONWEAR_STATUSES)
    ok = int(summary.get("windows_ok") or 0)
    skipped = {k: v for k, v in skipped_all.items() if v and k not in NONWEAR_STATUSES}
    parts = summary.get("skipped_parts") or []
    quality = f"{pct(ok / n if n else None, 1)} of {n:,} worn windows classified"
    if skipped:
        quality += " (" + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in sorted(skipped.items())) + ")"
    if parts:
        quality += f"; {len(parts)} damaged part(s) of the file left out"
    exit_text = f"3 (partial: {len(parts)} damaged part(s) left out)" if parts else "0 (complete)"
    return [
        {"label": "Recording", "value": f"{name}" + (f" — {what}" if what else ""), "warn": False},
        {"label": "Participant", "value": participant, "warn": False},
        {"label": "Period", "value": f"{_when(agg.timebase, summary.get('first_time_s'))} → "
                                     f"{_when(agg.timebase, summary.get('last_time_s'))} ({agg.timebase.tz}; "
                                     f"{hhmm((summary.get('duration_s') or 0.0) / 60.0)} h:mm)",
         "warn": not agg.timebase.absolute},
        {"label": "Days / valid days", "value": days_text, "warn": days_warn},
        {"label": "Wear", "value": f"{hhmm(wear)} worn, {hhmm(nonwear)} not worn "
                                   f"({pct(wear / (wear + nonwear) if wear + nonwear else None)} worn)",
         "warn": wear + nonwear > 0 and wear / (wear + nonwear) < 0.5},
        {"label": "Calibration", "value": cal_text, "warn": cal_warn},
        {"label": "Data quality", "value": quality, "warn": bool(parts) or (n > 0 and ok / n < 0.9)},
        {"label": "Exit status", "value": exit_text, "warn": bool(parts)},
    ]


def _days(agg: Any, daily: List[Dict[str, Any]], cols: List[str]) -> List[Dict[str, Any]]:
    names = agg.names
    out = []
    for (d, m), row in zip(agg.days().items(), daily):
        C = len(names)
        mins = [row[f"{c}_min"] for c in names] + [row["nonwear_min"], max(0.0, row["wear_min"] - sum(
            row[f"{c}_min"] for c in names))]
        total = sum(mins)
        date = _weekday(row["day"])
        acc = agg.top_p.get(d)
        conf = float(acc[:, 0].sum() / acc[:, 1].sum()) if acc is not None and acc[:, 1].sum() else None
        per_hour = 3600 // (86400 // agg.slots_per_day)
        hours = m.reshape(24, per_hour, C + 2).sum(axis=1) / 60.0
        out.append({
            "label": row["day"], "weekday": f"{date:%A}" if date else "", "weekend": bool(date and date.weekday() >= 5),
            "valid": row.get("valid"), "wear": hhmm(row["wear_min"]), "nonwear": hhmm(row["nonwear_min"]),
            "segments": [{"name": n, "colour": c, "minutes": hhmm(v), "width": 100.0 * v / total if total else 0.0}
                         for n, c, v in zip(names + [NONWEAR_NAME, OTHER_NAME], cols, mins) if v > 0],
            "minutes": [hhmm(v) for v in mins[:C]], "confidence": pct(conf),
            "low_confidence": conf is not None and conf < LOW_CONFIDENCE, "hourly": hourly_svg(hours, cols)})
    return out


def _classes(agg: Any, daily: List[Dict[str, Any]], cols: List[str]) -> List[Dict[str, Any]]:
    acc = sum(agg.top_p.values()) if agg.top_p else np.zeros((len(agg.names), 2))
    out = []
    for j, c in enumerate(agg.names):
        minutes = sum(r[f"{c}_min"] for r in daily)
        conf = acc[j, 0] / acc[j, 1] if acc[j, 1] else None
        out.append({"name": c, "colour": cols[j], "minutes": hhmm(minutes), "zero": minutes <= 0.0,
                    "confidence": pct(conf), "low_confidence": conf is not None and conf < LOW_CONFIDENCE,
                    "windows": int(acc[j, 1])})
    return out


def _model_card(meta: Mapping[str, Any], summary: Mapping[str, Any], names: List[str]) -> Dict[str, Any]:
    prov = meta.get("provenance") if isinstance(meta.get("provenance"), Mapping) else {}
    enc = prov.get("encoder") if isinstance(prov.get("encoder"), Mapping) else {}
    pre = meta.get("preprocess") if isinstance(meta.get("preprocess"), Mapping) else {}
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), Mapping) else {}
    subjects = prov.get("subjects") if isinstance(prov.get("subjects"), Mapping) else {}
    n_subj = {k: len(v) for k, v in subjects.items() if isinstance(v, list)}
    windows = prov.get("windows") if isinstance(prov.get("windows"), Mapping) else {}
    dataset = str(prov.get("dataset") or "not recorded in the bundle")
    arch = (meta.get("encoder") or {}).get("model") if isinstance(meta.get("encoder"), Mapping) else None
    start = ("a pretrained encoder" if enc.get("pretrained") else "a randomly initialised encoder") if enc else None
    trained = f"on {dataset}"
    if n_subj:
        trained += f" ({n_subj.get('train', '?')} training and {n_subj.get('val', '?')} validation subjects"
        trained += f"; {windows.get('train', '?')} / {windows.get('val', '?')} windows)" if windows else ")"
    trained += f", protocol {prov.get('protocol', '?')}" + (f" from {start} ({arch})" if start and arch else "")
    recall = metrics.get("per_class_recall") if isinstance(metrics.get("per_class_recall"), list) else []
    cm = metrics.get("confusion_matrix") if isinstance(metrics.get("confusion_matrix"), list) else None
    channels = pre.get("channels", (summary.get("channels") or {}).get("model", "?"))
    return {
        "classes": ", ".join(str(c) for c in meta.get("class_names", names)),
        "n_classes": len(meta.get("class_names", names)),
        "trained": trained,
        "balanced_accuracy": pct(metrics.get("balanced_accuracy"), 1) if "balanced_accuracy" in metrics else None,
        "macro_f1": f"{metrics['macro_f1']:.2f}" if isinstance(metrics.get("macro_f1"), float) else None,
        "n_val": metrics.get("n"),
        "channels": {"acc": "the accelerometer only (3 axes)",
                     "acc+gyro": "accelerometer and gyroscope (6 axes)"}.get(str(channels), str(channels)),
        "windows": f"{pre.get('window_s', '?')} s windows every {pre.get('stride_s', '?')} s at "
                   f"{pre.get('rate_hz', '?')} Hz",
        "placement": prov.get("placement") or PLACEMENT.get(dataset.lower()) or "not recorded in the bundle",
        "recall": [{"name": c, "recall": pct(r)} for c, r in zip(meta.get("class_names", names), recall)],
        "confusion": cm, "created": prov.get("created"), "note": prov.get("note"),
    }


def _details(summary: Mapping[str, Any], meta: Mapping[str, Any], agg: Any) -> Dict[str, List[tuple]]:
    dev = summary.get("device") if isinstance(summary.get("device"), Mapping) else {}
    inner = dev.get("device") if isinstance(dev.get("device"), Mapping) else {}
    device = [("format", dev.get("format")),
              ("sample rate", f"{dev.get('rate_hz')} Hz" if dev.get("rate_hz") else None),
              ("channels", dev.get("channels")), ("start time from", summary.get("time", {}).get("start_source")),
              ("file", summary.get("input"))]
    device += [(k, _plain(v)) for k, v in inner.items() if k != "metadata"]
    meta_fields = inner.get("metadata") if isinstance(inner.get("metadata"), Mapping) else {}
    device += [(f"header field {k}", _plain(v)) for k, v in meta_fields.items()]
    idle = (summary.get("windows_skipped") or {}).get(STATUS_IDLE_SLEEP, 0)
    if idle:
        device.append(("of which device idle sleep", f"{hhmm(idle * agg.hop / 60.0)} ({idle} windows in the device's "
                                                     "idle-sleep mode, counted as non-wear)"))
    cal = summary.get("calibration") if isinstance(summary.get("calibration"), Mapping) else {}
    calib = []
    if cal:
        calib = [("Autocalibration", ("applied" if cal.get("applied") else "not applied")
                  + (f": {cal['reason']}" if cal.get("reason") else "")),
                 ("error before → after", f"{mg(cal.get('error_before_g'))} → {mg(cal.get('error_after_g'))}"),
                 ("offset (x, y, z)", ", ".join(mg(v) for v in cal.get("offset") or [])),
                 ("scale (x, y, z)", ", ".join(f"{100.0 * (v - 1.0):+.2f} %" for v in cal.get("scale") or [])),
                 ("still points / iterations", f"{cal.get('n_points')} / {cal.get('iterations')}"),
                 ("sphere coverage", "; ".join(f"{a}: {lo:+.2f} .. {hi:+.2f} g" for a, (lo, hi) in
                                               zip("xyz", cal.get("sphere_coverage_g") or []))),
                 ("hours scanned", hhmm(60.0 * float(cal.get("hours_scanned") or 0.0))),
                 ("method", cal.get("method")), ("formula", cal.get("formula"))]
    nw = summary.get("nonwear") if isinstance(summary.get("nonwear"), Mapping) else {}
    nonwear = [("non-wear detection", "off")] if not nw or not nw.get("enabled", True) else [
        ("method", nw.get("method")),
        ("thresholds", f"std < {nw.get('std_g')} g and range < {nw.get('range_g')} g on >= {nw.get('min_axes')} "
                       f"of 3 axes; {hhmm((nw.get('window_s') or 0) / 60)} windows every "
                       f"{hhmm((nw.get('step_s') or 0) / 60)} (approach {nw.get('approach')})"),
        ("60-min windows judged / non-wear", f"{nw.get('windows_evaluated', 0)} / {nw.get('windows_nonwear', 0)}"),
        ("settings from", nw.get("settings_from"))]
    pre = meta.get("preprocess") if isinstance(meta.get("preprocess"), Mapping) else {}
    preprocess = [(k.replace("_", " "), _plain(v)) for k, v in pre.items()]
    preprocess += [("smoothing", _plain(summary.get("smooth"))), ("runtime", summary.get("runtime")),
                   ("units declared", _plain(summary.get("units")))]
    prov = meta.get("provenance") if isinstance(meta.get("provenance"), Mapping) else {}
    provenance = [(k.replace("_", " "), _plain(v)) for k, v in prov.items()
                  if k in ("created", "dataset", "protocol", "seed", "best_epoch", "versions", "note")]
    if prov.get("fit_seconds") is not None:
        provenance.append(("training time", f"{hhmm(float(prov['fit_seconds']) / 60.0)} (h:mm)"))
    provenance.append(("predicted with", f"crossmodal-har predict; model {summary.get('model')}"))
    clean = lambda rows: [(k, v) for k, v in rows if v not in (None, "", "–")]  # noqa: E731
    return {"device": clean(device), "calibration": clean(calib), "nonwear": clean(nonwear),
            "preprocess": clean(preprocess), "provenance": clean(provenance)}


def render_html(agg: Any, daily: List[Dict[str, Any]], summary: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """The page (a string) for ``clinical_report.write_report``; see the module docstring."""
    names = list(agg.names)
    cols = colours(names)
    days = _days(agg, daily, cols)
    classes = _classes(agg, daily, cols)
    warnings = [f"{c['name']}: 0 minutes over the whole recording — the model never chose this activity "
                "(check the placement and channels against the model card)" for c in classes if c["zero"]]
    warnings += [f"{d['label']}: below the valid-day rules ({d['wear']} worn)" for d in days if d["valid"] is False]
    warnings += [f"{d['label']}: mean top-class probability {d['confidence']} (below {pct(LOW_CONFIDENCE)}): "
                 "the model was unsure on this day" for d in days if d["low_confidence"]]
    parts = summary.get("skipped_parts") or []
    damaged = [(p.get("line"), f"{p.get('after_time') or p.get('after_s') or 'file start'} .. "
                               f"{p.get('before_time') or p.get('before_s') or 'file end'}") for p in parts]
    legend = [{"name": n, "colour": c} for n, c in zip(names + [NONWEAR_NAME, OTHER_NAME], cols)]
    name = os.path.basename(str(summary.get("input", ""))) or "recording"
    return _ENV.get_template("report.html").render(
        title=f"Activity report: {name}", headline=_headline(summary, daily, agg), warnings=warnings, days=days,
        classes=classes, legend=legend, timeline=timeline_svg(agg, [d["weekend"] for d in days]),
        card=_model_card(meta, summary, names), details=_details(summary, meta, agg), damaged=damaged,
        tz=agg.timebase.tz, hop=f"{agg.hop:g}", names=names, valid_known=any(d["valid"] is not None for d in days))
