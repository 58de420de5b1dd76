"""signals/status.py, the one status vocabulary: predict, the summaries, the report and ingestion
say a window's status in the same words (ingestion's IMU gap is ``gap``, as in predict's output), and
a store written when ingestion called it ``imu_gap`` still reads."""

from __future__ import annotations

import numpy as np
import pytest

from crossmodal_har.pairs.report import build_report, empty_drops, merge_reports
from crossmodal_har.signals.status import (DROP_REASONS, NO_WINDOW_STATUSES, NONWEAR_REPLACES, QUALITY_REASONS,
                                           STATUS_FLAT_LINE, STATUS_GAP, STATUS_NONWEAR, STATUS_OK, has_window)


def test_groups():
    assert NO_WINDOW_STATUSES == ("gap", "non_finite", "short")
    assert QUALITY_REASONS == ("non_finite", "flat_line", "saturation", "gap")
    assert NONWEAR_REPLACES == (STATUS_OK, STATUS_FLAT_LINE) and STATUS_NONWEAR == "nonwear"
    status = np.array(["ok", "gap", "flat_line", "non_finite", "short", "nonwear", "saturation"], dtype=object)
    assert has_window(status).tolist() == [True, False, True, False, False, True, True]
    # ingestion's drop reasons are the quality reasons (gap included) and its own three, in report order
    assert DROP_REASONS == ("gap", "non_finite", "flat_line", "saturation", "desync", "decode_error", "too_short")
    assert set(QUALITY_REASONS) < set(DROP_REASONS) and list(empty_drops()) == list(DROP_REASONS)


def _summary(name, dropped):
    return {"session": name, "subject": None, "status": "ok", "error": None, "error_reason": None,
            "windows_kept": 5, "dropped": dropped, "shards": [], "labels": [], "gravity": None, "video": None,
            "meta": {}}


def test_old_imu_gap_reads_as_gap():
    new = _summary("a", {**empty_drops(), STATUS_GAP: 2, "desync": 1})
    old = _summary("b", {"imu_gap": 3, "non_finite": 0, "flat_line": 1, "saturation": 0, "desync": 0,
                         "decode_error": 0, "too_short": 0})  # a ledger entry written before the rename
    rep = build_report([new, old])
    assert rep["windows_dropped"] == {**empty_drops(), "gap": 5, "flat_line": 1, "desync": 1}
    assert all("imu_gap" not in s["dropped"] for s in rep["sessions"])
    assert rep["sessions"][1]["dropped"]["gap"] == 3
    old_report = {"sessions_total": 1, "windows_kept": 4, "windows_dropped": {"imu_gap": 7, "desync": 2}}
    merged = merge_reports([rep, old_report])
    assert merged["windows_dropped"]["gap"] == 12 and "imu_gap" not in merged["windows_dropped"]
    assert list(merged["windows_dropped"]) == list(DROP_REASONS)
    assert merged["windows_kept"] == 14 and merged["sessions_total"] == 3


def test_idle_sleep_is_its_own_status_counted_as_nonwear():
    """Issue 19 item 5: a window of an ActiGraph's idle sleep is ``idle_sleep``: a window (not a
    gap), not classified, counted as non-wear time by the run's summary and the daily aggregator."""
    from crossmodal_har.infer.clinical_report import DayAggregator, daily_rows
    from crossmodal_har.infer.nonwear import in_stretches
    from crossmodal_har.infer.summary import Summary
    from crossmodal_har.signals.clock import resolve_timebase
    from crossmodal_har.signals.status import NONWEAR_STATUSES, STATUS_IDLE_SLEEP, is_nonwear

    assert STATUS_IDLE_SLEEP == "idle_sleep" and NONWEAR_STATUSES == (STATUS_NONWEAR, STATUS_IDLE_SLEEP)
    status = np.array(["ok", "idle_sleep", "nonwear", "flat_line", "gap"], dtype=object)
    assert has_window(status).tolist() == [True, True, True, True, False]
    assert is_nonwear(status).tolist() == [False, True, True, False, False]
    assert in_stretches(np.array([0.0, 10.0, 15.0, 20.0, 30.0, 41.0]), [(10.0, 20.0), (40.0, 50.0)]).tolist() == \
        [False, True, True, False, False, True]
    # 10 windows of 2.5 s hop: 4 classified, 3 idle sleep, 2 detected non-wear, 1 flat line
    st = np.array(["ok"] * 4 + ["idle_sleep"] * 3 + ["nonwear"] * 2 + ["flat_line"], dtype=object)
    start = 1_700_000_000.0 + 2.5 * np.arange(10)
    labels = np.array([0, 1, 0, 1] + [-1] * 6)
    summary = Summary(class_names=["rest", "walk"], hop_s=2.5)
    summary.add(st, start, start + 5.0, labels)
    d = summary.to_dict()
    assert d["nonwear_windows"] == 5 and d["windows"] == 10 and d["windows_skipped"]["idle_sleep"] == 3
    agg = DayAggregator(["rest", "walk"], 2.5, resolve_timebase(start[0], None, "UTC", "x", None))
    agg.add(start, st, labels)
    (day,) = daily_rows(agg)
    assert day["nonwear_min"] == pytest.approx(5 * 2.5 / 60) and day["wear_min"] == pytest.approx(5 * 2.5 / 60)
