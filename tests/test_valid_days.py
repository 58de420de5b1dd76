"""Valid days (issue 19 item 7): daily_summary.csv marks exactly the days the rules say on a 4-day
recording with a half first and last day (--min-wear-hours, --exclude-first-last), and the summary
counts them with the minutes per valid day of every activity."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.errors import UserError
from crossmodal_har.infer.clinical_report import (DayAggregator, DayRules, _count_pairs, daily_rows, valid_day_summary,
                                                  write_report)
from crossmodal_har.signals.clock import TimeBase

NAMES = ["rest", "walk"]
HOP = 10.0


def recording():
    """Windows every 10 s from day 1 12:00 to day 4 12:00 (Europe/Berlin, no DST change): day 1 has
    12 h of wear, day 2 all 24 h, day 3 only 15 h (9 h non-wear), day 4 12 h. Walking 08:00-09:00."""
    origin = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))).timestamp()
    tb = TimeBase(origin, "Europe/Berlin", "test")
    start = np.arange(0, 72 * 3600, HOP)
    hour_of_day = (12 + start / 3600.0) % 24
    day = ((12 + start / 3600.0) // 24).astype(int)
    status = np.where((day == 2) & (hour_of_day < 9), "nonwear", "ok")
    labels = np.where(status == "ok", np.where((hour_of_day >= 8) & (hour_of_day < 9), 1, 0), -1)
    agg = DayAggregator(NAMES, HOP, tb)
    for a in range(0, len(start), 997):  # fed as a stream
        agg.add(start[a:a + 997], status[a:a + 997], labels[a:a + 997])
    return agg


@pytest.mark.parametrize("rules, valid", [
    (DayRules(), [False, True, False, False]),  # GGIR: 16 h
    (DayRules(10.0), [True, True, True, True]),  # skdh: 10 h
    (DayRules(10.0, exclude_first_last=True), [False, True, True, False]),
    (DayRules(16.0, exclude_first_last=True), [False, True, False, False]),
])
def test_daily_summary_marks_the_days_the_rules_say(tmp_path, rules, valid):
    agg = recording()
    write_report(tmp_path, agg, {"input": "x"}, {}, rules)
    daily = pd.read_csv(tmp_path / "daily_summary.csv")
    assert daily["day"].tolist() == ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
    assert daily["valid"].tolist() == valid
    assert daily["wear_hours"].tolist() == [12.0, 24.0, 15.0, 12.0]
    assert daily["nonwear_min"].tolist() == [0.0, 0.0, 540.0, 0.0]
    s = valid_day_summary(daily_rows(agg, rules), NAMES, rules)
    assert s["days"] == 4 and s["valid_days"] == sum(valid) and s["wear_hours"] == 63.0
    per = s["per_valid_day"]
    # walking 08:00-09:00 exists on days 2, 3 and 4 (day 3: non-wear until 09:00)
    walk = [0.0, 60.0, 0.0, 60.0]
    assert per["walk_min"] == pytest.approx(np.mean([w for w, v in zip(walk, valid) if v]))
    assert per["wear_min"] == pytest.approx(np.mean([h * 60 for h, v in zip([12, 24, 15, 12], valid) if v]))


def test_no_valid_day_and_bad_rule():
    agg = recording()
    s = valid_day_summary(daily_rows(agg, DayRules(24.0, True)), NAMES, DayRules(24.0, True))
    assert s["valid_days"] == 1
    s = valid_day_summary(daily_rows(agg, DayRules(24.0, True)), NAMES, DayRules(24.0, True))
    none = valid_day_summary([r | {"valid": False} for r in daily_rows(agg)], NAMES, DayRules())
    assert none["valid_days"] == 0 and none["per_valid_day"]["rest_min"] is None
    with pytest.raises(UserError, match="--min-wear-hours"):
        DayRules(25.0).validate()


def test_count_pairs_is_the_unique_of_rows():
    # the day aggregator's (slot, category) counts: the same pairs, in the same order, as numpy's unique
    # of [key, cat] rows (the order the seconds are added in), for negative keys (times before 1970) too
    rng = np.random.default_rng(1)
    for i in range(200):
        C, n = int(rng.integers(1, 10)), int(rng.integers(0, 2000))
        key = rng.integers(-10**7, 10**7, n) if i % 2 else rng.integers(5_900_000, 5_900_050, n)
        cat = rng.integers(0, C + 2, n)
        u, counts = np.unique(np.stack([key, cat], axis=1), axis=0, return_counts=True)
        k, c, m = _count_pairs(key, cat, C + 2)
        assert np.array_equal(k, u[:, 0]) and np.array_equal(c, u[:, 1]) and np.array_equal(m, counts)
