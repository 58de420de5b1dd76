"""signals/clock.py, the one clock: one zone lookup and one exception type for a bad zone wherever the
name comes from (--tz, a device file's reader, dataset.json, session.json, --start), one offset
format, and the rule that gives a recording its time base."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from helpers.files_axivity_geneactiv import make_signal, write_cwa

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.pairs.sources import read_session_json
from crossmodal_har.signals.clock import (TimeBase, TimeZoneError, format_offset,
                                          local_to_utc_offset_s, parse_start, resolve_timebase, zone)
from crossmodal_har.signals.devices import open_device
from crossmodal_har.signals.generic import read_meta

WORDS = "unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/London or UTC)"


def test_zone_lookup_and_one_error():
    assert str(zone("Europe/London")) == "Europe/London"
    for bad in ("Mars/Olympus", "Europe", "", "../etc/passwd", "a" * 5000, "a\x00b", None):
        with pytest.raises(TimeZoneError) as exc:  # "Europe" is a folder of the zone database
            zone(bad)
        assert str(exc.value).startswith("unknown time zone ") and "\n" not in str(exc.value)
        assert isinstance(exc.value, UserError) and isinstance(exc.value, DataError)
    with pytest.raises(TimeZoneError) as exc:
        zone("Mars/Olympus")
    assert str(exc.value) == WORDS  # from a flag: no file named
    with pytest.raises(TimeZoneError) as exc:
        zone("Mars/Olympus", Path("x") / "dataset.json")
    assert str(exc.value) == str(Path("x") / "dataset.json") + ": " + WORDS


def test_every_bad_zone_is_the_same_error(tmp_path):
    cwa = write_cwa(tmp_path / "r.cwa", make_signal(800, 100.0)[:, :3], 1.7e9, 100.0)
    with pytest.raises(TimeZoneError, match="^" + WORDS.replace("(", r"\(").replace(")", r"\)") + "$"):
        open_device(cwa, tz="Mars/Olympus")
    (tmp_path / "dataset.json").write_text(json.dumps({"acc_unit": "g", "gyro_unit": "rad/s", "time_unit": "s",
                                                       "tz": "Mars/Olympus"}))
    with pytest.raises(TimeZoneError, match="dataset.json: unknown time zone 'Mars/Olympus'"):
        read_meta(tmp_path)
    (tmp_path / "session.json").write_text(json.dumps({"tz": "Mars/Olympus"}))
    with pytest.raises(TimeZoneError, match="session.json: unknown time zone 'Mars/Olympus'"):
        read_session_json(tmp_path / "session.json")
    with pytest.raises(TimeZoneError, match="unknown time zone"):
        parse_start("2026-03-01T08:30:00", "Mars/Olympus")
    with pytest.raises(TimeZoneError, match="unknown time zone"):
        TimeBase(0.0, "Mars/Olympus")
    # a start time with its own offset needs no zone; a bad one is a ValueError (the command says it)
    assert parse_start("2026-03-01T08:30:00+01:00", "Mars/Olympus") == pytest.approx(1772350200.0)
    with pytest.raises(ValueError, match="cannot parse start time 'soon' as ISO 8601"):
        parse_start("soon", "UTC")


def test_offsets_and_their_text():
    assert [format_offset(s) for s in (0, 3600, -19800, 20700, -0.0, 3599.6)] == \
        ["+00:00", "+01:00", "-05:30", "+05:45", "+00:00", "+01:00"]
    summer = (dt.datetime(2024, 7, 1, 12) - dt.datetime(1970, 1, 1)).total_seconds()
    winter = (dt.datetime(2024, 1, 1, 12) - dt.datetime(1970, 1, 1)).total_seconds()
    assert local_to_utc_offset_s(summer, "Europe/Berlin") == 7200.0
    assert local_to_utc_offset_s(winter, "Europe/Berlin") == 3600.0
    assert local_to_utc_offset_s(summer, "UTC") == 0.0
    # the time base writes the same offsets across a DST change (London, 2026-03-29 01:00 UTC)
    tb = TimeBase(parse_start("2026-03-29T00:30:00Z", "UTC"), "Europe/London")
    assert list(tb.iso(np.array([0.0, 3600.0]))) == ["2026-03-29T00:30:00.000+00:00",
                                                     "2026-03-29T02:30:00.000+01:00"]


def test_resolve_timebase_rules():
    path = Path("rec.csv")
    device = SimpleNamespace(start_time_s=1.7e9, start_time_source="file header")
    tb = resolve_timebase(0.0, None, "UTC", path, device)
    assert tb.origin_s == 1.7e9 and tb.source == "device file header: file header"
    assert resolve_timebase(1.7e9, None, "UTC", path, device).origin_s == 0.0  # epoch times already
    with pytest.raises(UserError, match="rec.csv: the device file has its own start time .*drop --start"):
        resolve_timebase(0.0, 1.7e9, "UTC", path, device)
    tb = resolve_timebase(1.7e9, None, "Europe/London", path)  # (1e9 + 1 is 2001: an unset clock now)
    assert tb.origin_s == 0.0 and tb.tz == "Europe/London" and "epoch" in tb.source
    with pytest.raises(UserError, match="already absolute .*drop --start"):
        resolve_timebase(1.7e9 + 1, 1.7e9, "UTC", path)
    assert resolve_timebase(5.0, 1.7e9, "UTC", path).origin_s == 1.7e9 - 5.0
    tb = resolve_timebase(5.0, None, "UTC", path)
    assert not tb.absolute and tb.day_label(0) == "day 1"
