"""What a prediction run saw and decided: :class:`Summary` (``<out>.summary.json``) and its
terminal rendering :func:`format_summary`.

Time per activity counts one hop (stride) per ok window, so it adds up to the recording's covered
time whatever the window length. Non-wear time counts the windows of both non-wear statuses
(:data:`crossmodal_har.signals.status.NONWEAR_STATUSES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from crossmodal_har.signals.clock import TimeBase
from crossmodal_har.signals.recording import time_unit_hint
from crossmodal_har.signals.status import NO_WINDOW_STATUSES, NONWEAR_STATUSES, STATUS_IDLE_SLEEP, STATUS_OK
from crossmodal_har.signals.units import TIME_UNITS


@dataclass
class Summary:
    """What a prediction run saw and decided (written as ``<out>.summary.json``)."""

    class_names: List[str]
    hop_s: float
    rows_read: int = 0
    bad_rows: int = 0
    first_time_s: Optional[float] = None
    last_time_s: Optional[float] = None
    windows: int = 0
    windows_ok: int = 0
    label_counts: Dict[str, int] = field(default_factory=dict)
    skipped: Dict[str, Dict[str, float]] = field(default_factory=dict)  # status -> count, seconds

    def add(self, status: np.ndarray, start: np.ndarray, end: np.ndarray, labels: np.ndarray) -> None:
        for st in np.unique(status):
            m = status == st
            if st == STATUS_OK:
                self.windows_ok += int(m.sum())
                self.windows += int(m.sum())
                for c, k in zip(*np.unique(labels[m], return_counts=True)):
                    name = self.class_names[int(c)]
                    self.label_counts[name] = self.label_counts.get(name, 0) + int(k)
                continue
            d = self.skipped.setdefault(str(st), {"rows": 0, "seconds": 0.0})
            d["rows"] += int(m.sum())
            d["seconds"] += float(np.sum(end[m] - start[m]))
            if st not in NO_WINDOW_STATUSES:
                self.windows += int(m.sum())

    def to_dict(self) -> Dict[str, Any]:
        dur = (self.last_time_s - self.first_time_s) if self.first_time_s is not None else 0.0
        per = {c: self.label_counts.get(c, 0) * self.hop_s for c in self.class_names}
        tot = sum(per.values()) or 1.0
        return {
            "rows_read": self.rows_read,
            "rows_with_missing_values": self.bad_rows,
            "first_time_s": self.first_time_s,
            "last_time_s": self.last_time_s,
            "duration_s": dur,
            "windows": self.windows,
            "windows_ok": self.windows_ok,
            "windows_skipped": {k: v["rows"] for k, v in self.skipped.items()
                                if k not in NO_WINDOW_STATUSES},
            "stretches_without_windows": {k: v for k, v in self.skipped.items()
                                          if k in NO_WINDOW_STATUSES},
            "seconds_per_activity": per,
            "fraction_per_activity": {c: v / tot for c, v in per.items()},
            "seconds_per_activity_note": "each ok window accounts for one hop (stride) of time",
            "hop_s": self.hop_s,
            "nonwear_windows": self.nonwear_windows(),
        }

    def nonwear_windows(self) -> int:
        """Windows counted as non-wear: the detector's and the device's idle sleep."""
        return sum(int(self.skipped.get(s, {}).get("rows", 0)) for s in NONWEAR_STATUSES)


def skipped_parts(device: Any, tb: TimeBase) -> List[Dict[str, Any]]:
    """A device file's damaged parts left out (``DeviceInfo.skipped``), for the summary and report:
    each with its one-line description and the times either side (ISO 8601 when absolute)."""
    out = []
    for s in getattr(device, "skipped", None) or []:
        part = {"line": s.line(), **s.to_dict()}
        if tb.absolute:
            for k in ("after_s", "before_s"):
                part[k.replace("_s", "_time")] = None if part[k] is None else str(tb.iso(np.array([part[k]]))[0])
        out.append(part)
    return out


def no_window_cause(d: Dict[str, Any], time_unit: str = "s") -> str:
    """One line saying why no window of a run (summary dict ``d``) could be classified: a table's time
    unit contradicted by its median step (:func:`~crossmodal_har.signals.recording.time_unit_hint`;
    ``time_unit``: the declared one), else what the windows and stretches were."""
    step = d.get("median_step_s")
    hint = (time_unit_hint(step / TIME_UNITS[time_unit], time_unit)
            if step is not None and d.get("device") is None else None)
    if hint:
        return f"no window could be classified: {hint}"
    if not d.get("rows_read"):
        return "no window could be classified: no rows with a time"
    parts = [f"{k} {v}" for k, v in d.get("windows_skipped", {}).items()]
    parts += [f"{k} {v['rows']} stretch(es) {v['seconds']:.0f} s" for k, v in d.get("stretches_without_windows",
                                                                                      {}).items()]
    return (f"no window could be classified: {d.get('windows', 0)} window(s) in {d.get('duration_s', 0.0):.0f} s"
            + (f" ({', '.join(parts)})" if parts else ""))


def format_summary(d: Dict[str, Any]) -> str:
    """Human-readable summary for the terminal."""
    def hms(s: float) -> str:
        s = int(round(s))
        return f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s"

    lines = [f"rows read: {d['rows_read']:,}  duration: {hms(d['duration_s'])}  "
             f"windows: {d['windows']:,} ({d['windows_ok']:,} ok)"]
    lines.append("time per activity:")
    for c, s in d["seconds_per_activity"].items():
        lines.append(f"  {c:<24} {hms(s):>12}  {100 * d['fraction_per_activity'][c]:5.1f} %")
    if d["windows_skipped"]:
        lines.append("windows skipped: " + ", ".join(f"{k} {v}" for k, v in d["windows_skipped"].items()))
    for part in d.get("skipped_parts") or []:
        lines.append(f"damaged part left out: {part['line']}")
    idle = d["windows_skipped"].get(STATUS_IDLE_SLEEP, 0)
    if idle:
        lines.append(f"device idle sleep: {hms(idle * d.get('hop_s', 0.0))} ({idle} windows; counted as non-wear)")
    for k, v in d["stretches_without_windows"].items():
        lines.append(f"{k}: {v['rows']} stretch(es), {hms(v['seconds'])}")
    nw = d.get("nonwear")
    if nw and nw.get("enabled"):
        lines.append(f"non-wear: {hms(nw.get('seconds', 0.0))} ({nw.get('windows_nonwear', 0)} of "
                     f"{nw.get('windows_evaluated', 0)} 60-min windows; std < {nw['std_g']} g and range < "
                     f"{nw['range_g']} g on >= {nw['min_axes']} axes)")
    cal = d.get("calibration")
    if cal:
        if cal.get("applied"):
            lines.append(f"calibration: applied (offset {[round(v, 4) for v in cal['offset']]} g, scale "
                         f"{[round(v, 4) for v in cal['scale']]}; error {cal['error_before_g']:.4f} -> "
                         f"{cal['error_after_g']:.4f} g on {cal['n_points']} still epochs)")
        else:
            lines.append(f"calibration: not applied ({cal.get('reason', '')})")
    days = d.get("days")
    if days:
        lines.append(f"days: {days['days']} ({days['valid_days']} valid: >= {days['min_wear_hours']:g} h wear"
                     + (", not the first or last" if days["exclude_first_last"] else "") + f"); wear "
                     f"{days['wear_hours']:.1f} h")
    if d.get("start_time"):
        lines.append(f"time: {d['start_time']} .. {d.get('end_time')} ({d['time']['tz']}; "
                     f"from {d['time']['start_source']})")
    return "\n".join(lines)
