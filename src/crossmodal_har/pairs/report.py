"""The ingestion report (``STORE/report.json``): what each session kept and dropped, summed.

One builder serves both a single run (:func:`build_report`, from the per-session summaries that
:mod:`crossmodal_har.pairs.process` returns) and merged stores (:func:`merge_reports`, from the
reports of several runs): a run's report is the merge of its sessions' one-session reports.
A leaf of :mod:`crossmodal_har.pairs`: ingestion and the store import it. Why a window was dropped
is said in the one status vocabulary (:data:`crossmodal_har.signals.status.DROP_REASONS`); the
older name ``imu_gap`` (for ``gap``), in summaries of sessions ingested before, is read as ``gap``.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

from crossmodal_har.signals.status import DROP_REASONS, LEGACY_DROP_REASONS

# Per-session fields copied into the report's ``sessions`` rows.
SESSION_FIELDS = ("session", "subject", "status", "windows_kept", "dropped", "gravity", "video", "imu_coverage",
                  "too_short", "seconds")


def empty_drops() -> Dict[str, int]:
    """``{reason: 0}`` for every reason of :data:`DROP_REASONS`, in that order."""
    return {r: 0 for r in DROP_REASONS}


def drop_counts(counts: Mapping[str, Any]) -> Dict[str, int]:
    """``counts`` ({reason: windows}) in today's names (:data:`LEGACY_DROP_REASONS` renamed, summed),
    every reason of :data:`DROP_REASONS` present, in that order."""
    out = empty_drops()
    for k, v in counts.items():
        k = LEGACY_DROP_REASONS.get(k, k)
        out[k] = out.get(k, 0) + int(v)
    return out


def session_report(summary: Dict[str, Any]) -> Dict[str, Any]:
    """The report of a run that ingested only this session (``summary``: see
    :func:`crossmodal_har.pairs.process.process_session`)."""
    row = {k: summary.get(k) for k in SESSION_FIELDS}
    row["dropped"] = drop_counts(summary["dropped"])
    fixes = (summary.get("meta") or {}).get("imu_fixes")
    if fixes:
        row["imu_fixes"] = fixes
    failed = summary["status"] == "error"
    errors = [{"session": summary["session"], "error": summary["error"], "reason": summary["error_reason"]}] \
        if failed else []
    return {
        "sessions_total": 1,
        "sessions_ok": int(summary["status"] == "ok"),
        "sessions_failed": len(errors),
        "windows_kept": int(summary["windows_kept"]),
        "windows_dropped": row["dropped"],
        # only counts are summed (a source may record other details of its repairs)
        "imu_fixes": {k: v for k, v in (fixes or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        "units_suspect": [summary["session"]] if (summary.get("gravity") or {}).get("verdict") == "suspect" else [],
        "errors": errors,
        "partial": bool(errors),
        "sessions": [row],
    }


def build_report(summaries: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The run report from per-session summaries (sessions and errors ordered by session name)."""
    return merge_reports([session_report(sm) for sm in summaries])


def merge_reports(reports: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Sum several reports (of runs, or of single sessions) into one."""
    sessions = sorted((s for r in reports for s in r.get("sessions", [])), key=lambda s: s["session"])
    dropped = empty_drops()
    imu_fixes: Dict[str, Any] = {}
    for r in reports:
        for k, v in drop_counts(r.get("windows_dropped", {})).items():
            dropped[k] = dropped.get(k, 0) + v
        for k, v in r.get("imu_fixes", {}).items():
            imu_fixes[k] = imu_fixes.get(k, 0) + v
    errors = sorted((e for r in reports for e in r.get("errors", [])), key=lambda e: e["session"])
    return {
        "sessions_total": sum(int(r.get("sessions_total", 0)) for r in reports),
        "sessions_ok": sum(int(r.get("sessions_ok", 0)) for r in reports),
        "sessions_failed": len(errors),
        "windows_kept": sum(int(r.get("windows_kept", 0)) for r in reports),
        "windows_dropped": dropped,
        "imu_fixes": imu_fixes,
        "units_suspect": sorted(s for r in reports for s in r.get("units_suspect", [])),
        "errors": errors,
        "partial": bool(errors),
        "sessions": sessions,
    }
