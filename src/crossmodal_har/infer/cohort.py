"""The cohort table of a study (``crossmodal-har collate OUT_DIR``, and the end of a study run):
one row per recording folder of ``OUT_DIR`` (:mod:`crossmodal_har.infer.study`), in stem order,
written as ``OUT_DIR/cohort.csv`` and ``OUT_DIR/cohort.parquet``.

Columns: ``recording`` (the folder, the input's stem), ``participant`` and ``participant_from``,
``input``, ``device_format`` (``csv``/``parquet`` for tables) and ``device_model``, ``exit_status``
(0 ok, 3 read in part, 2 refused, 1 internal error, empty: not finished) and ``error`` (its one
line), ``start_time``, ``duration_h``, ``days``, ``valid_days``, ``wear_hours``,
``valid_wear_hours`` (:func:`crossmodal_har.infer.clinical_report.valid_day_summary`, with the rules
``min_wear_hours``, ``exclude_first_last``), ``calibration_applied``,
``calibration_error_before_g``, ``calibration_error_after_g``, ``windows``, ``windows_ok``,
``damaged_parts``, then ``wear_min_per_valid_day``, ``nonwear_min_per_valid_day`` and
``<class>_min_per_valid_day`` for every class. A recording that failed has its error and empty
numbers. Nothing in the table depends on timing or on the order recordings finished in, so a study
killed and resumed gives the table an uninterrupted run gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List

from crossmodal_har.errors import DataError
from crossmodal_har.infer.csvsafe import formula_safe
from crossmodal_har.io import atomic_write, read_json

if TYPE_CHECKING:
    import pandas as pd

RECORDING_MARK = "recording.json"
SUMMARY = "predictions.summary.json"
TEXT_COLUMNS = ("recording", "participant", "participant_from", "input", "device_format", "device_model", "error",
                "start_time")


COLUMNS = ("recording", "participant", "participant_from", "input", "device_format", "device_model", "exit_status",
           "error", "start_time", "duration_h", "min_wear_hours", "exclude_first_last", "days", "valid_days",
           "wear_hours", "valid_wear_hours", "calibration_applied", "calibration_error_before_g",
           "calibration_error_after_g", "windows", "windows_ok", "damaged_parts")

INT_COLUMNS = ("exit_status", "days", "valid_days", "windows", "windows_ok", "damaged_parts")
BOOL_COLUMNS = ("exclude_first_last", "calibration_applied")


def _row(folder: Path, mark: Dict[str, Any]) -> Dict[str, Any]:
    row: Dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update({"recording": folder.name, "participant": mark.get("participant"),
                "participant_from": mark.get("participant_from"), "input": mark.get("path"),
                "exit_status": mark.get("exit_status"), "error": mark.get("error")})
    s = read_json(folder / SUMMARY) if (folder / SUMMARY).is_file() and mark.get("exit_status") in (0, 3) else None
    if not isinstance(s, dict):
        return row
    dev = s.get("device") or {}
    cal = s.get("calibration") or {}
    days = s.get("days") or {}
    row.update({
        "device_format": dev.get("format") or Path(str(s.get("input", ""))).suffix.lstrip(".").lower(),
        "device_model": (dev.get("device") or {}).get("model") if isinstance(dev.get("device"), dict) else None,
        "start_time": s.get("start_time"), "duration_h": (s.get("duration_s") or 0.0) / 3600.0,
        "min_wear_hours": days.get("min_wear_hours"), "exclude_first_last": days.get("exclude_first_last"),
        "days": days.get("days"), "valid_days": days.get("valid_days"), "wear_hours": days.get("wear_hours"),
        "valid_wear_hours": days.get("valid_wear_hours"), "calibration_applied": bool(cal.get("applied")),
        "calibration_error_before_g": cal.get("error_before_g"), "calibration_error_after_g": cal.get("error_after_g"),
        "windows": s.get("windows"), "windows_ok": s.get("windows_ok"),
        "damaged_parts": len(s.get("skipped_parts") or [])})
    for k, v in (days.get("per_valid_day") or {}).items():
        row[f"{k[:-len('_min')]}_min_per_valid_day"] = v
    return row


@dataclass
class CohortResult:
    """The cohort table and where it was written."""

    table: pd.DataFrame
    csv: Path
    parquet: Path

    def text(self) -> str:
        ok = int((self.table["exit_status"] == 0).sum()) if len(self.table) else 0
        return (f"cohort: {len(self.table)} recording(s), {ok} ok; wrote {self.csv} and {self.parquet}")


def cohort_table(out_dir: Path) -> pd.DataFrame:
    """One row per recording folder of a study's ``out_dir`` (those with a ``recording.json``)."""
    # pandas is imported here, not at the top: ``predict`` imports this module (through the study) and
    # a device file's predict needs no pandas (its import was 0.3 s of every file's start-up)
    import pandas as pd

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise DataError(out_dir, "not a folder (expected the --out of a predict study)")
    folders = sorted(d for d in out_dir.iterdir() if (d / RECORDING_MARK).is_file())
    if not folders:
        raise DataError(out_dir, f"no recording of a study here (no */{RECORDING_MARK})")
    rows: List[Dict[str, Any]] = []
    for d in folders:
        mark = read_json(d / RECORDING_MARK)
        if not isinstance(mark, dict):
            raise DataError(d / RECORDING_MARK, "expected a JSON object")
        rows.append(_row(d, mark))
    columns: List[str] = list(COLUMNS)
    for r in rows:  # then the minutes per valid day, in the first recording's order of classes
        columns += [k for k in r if k not in columns]
    df = pd.DataFrame(rows, columns=columns)
    return df.astype({**{c: "string" for c in TEXT_COLUMNS}, **{c: "Int64" for c in INT_COLUMNS},
                      **{c: "boolean" for c in BOOL_COLUMNS}, **{c: "Float64" for c in columns if c not in
                                                                   TEXT_COLUMNS + INT_COLUMNS + BOOL_COLUMNS}})


def collate(out_dir: Path) -> CohortResult:
    """Write ``out_dir/cohort.csv`` (text cells formula-safe) and ``out_dir/cohort.parquet``."""
    import pandas as pd

    out_dir = Path(out_dir)
    df = cohort_table(out_dir)
    paths = out_dir / "cohort.csv", out_dir / "cohort.parquet"
    safe = df.copy()
    for c in TEXT_COLUMNS:
        if c in safe:
            safe[c] = safe[c].map(lambda v: v if pd.isna(v) else formula_safe(v))
    atomic_write(paths[0], lambda tmp: safe.to_csv(tmp, index=False))
    atomic_write(paths[1], lambda tmp: df.to_parquet(tmp, index=False))
    return CohortResult(df, *paths)
