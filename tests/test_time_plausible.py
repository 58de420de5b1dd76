"""Plausible time, or a clear refusal (issue 23, item 1): one rule in signals/clock.py for epochs vs
offsets and for what an absolute time can be; unset device clocks refused (or read with --start);
local times skipped or repeated by a daylight-saving change refused with both readings named; a
jump of years splits the recording and every per-step loop stays bounded by the samples."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from helpers.files_actigraph_apdm_empatica import gt3x_record, write_gt3x
from helpers.files_axivity_geneactiv import make_signal, write_cwa, write_geneactiv
from helpers.bundles import UNITS, make_acc_bundle, make_bundle, make_recording

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError, UserError
from crossmodal_har.infer.nonwear import NonwearConfig, NonwearDetector
from crossmodal_har.signals.clock import EARLIEST_S, LATEST_S, MAX_JUMP_S, parse_start, resolve_timebase
from crossmodal_har.signals.devices import open_device

YEAR_S = 365.25 * 86400


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("clock_bundles")
    return {"six": make_bundle(d / "six"), "acc": make_acc_bundle(d / "acc")}


def one_line(capsys, *words):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_one_rule_for_epochs_offsets_and_plausible_clocks():
    p = Path("rec.cwa")
    dev = SimpleNamespace(start_time_s=946684800.0, start_time_source="header")  # an Axivity reset
    # the reader's times agree with its header: epoch seconds, whatever their size (was: start added twice)
    with pytest.raises(DataError, match=r"^rec.cwa: the device clock \(header\) reads 2000-01-01T00:00:00Z, "
                                        r"outside 2005-01-01 .. 2100-01-01: it was never set: pass --start"):
        resolve_timebase(946684800.0, None, "UTC", p, dev)
    tb = resolve_timebase(946684800.0, 1.7e9, "UTC", p, dev)  # --start replaces an unset clock
    assert tb.origin_s + 946684800.0 == 1.7e9 and "never set" in tb.source
    ok = SimpleNamespace(start_time_s=1.7e9, start_time_source="header")
    assert resolve_timebase(1.7e9 + 0.5, None, "UTC", p, ok).origin_s == 0.0
    assert resolve_timebase(0.0, None, "UTC", p, ok).origin_s == 1.7e9  # offsets from the header's start
    # a table: >= 1e9 s is epoch seconds, and must be plausible; milliseconds are named as the likely cause
    with pytest.raises(DataError, match=r"rec.csv: .* reads .*, outside .*--time-unit ms\|us"):
        resolve_timebase(1.7e12, None, "UTC", Path("rec.csv"))
    with pytest.raises(DataError, match="never set"):
        resolve_timebase(1.05e9, None, "UTC", Path("rec.csv"))  # 2003
    assert resolve_timebase(1.05e9, 1.7e9, "UTC", Path("rec.csv")).origin_s == 1.7e9 - 1.05e9
    assert EARLIEST_S < 1.7e9 < LATEST_S and MAX_JUMP_S == 86400.0


@pytest.mark.parametrize("text,zone,words", [
    ("2024-03-31T01:30", "Europe/London", ["does not exist in Europe/London", "2024-03-31T01:30:00+01:00",
                                           "2024-03-31T01:30:00+00:00"]),
    ("2024-10-27T01:30", "Europe/London", ["is ambiguous in Europe/London", "2024-10-27T01:30:00+01:00",
                                           "2024-10-27T01:30:00+00:00"]),
    ("2024-03-10T02:30", "America/New_York", ["does not exist", "-05:00", "-04:00"]),
    ("0001-01-01T00:00", "UTC", ["outside 2005-01-01 .. 2100-01-01"]),
    ("9999-12-31T23:59", "UTC", ["outside 2005-01-01 .. 2100-01-01"]),
    ("9999-12-31T23:59:59-23:59", "UTC", ["outside"]),
])
def test_start_times_that_do_not_exist_are_refused_naming_the_candidates(text, zone, words):
    with pytest.raises((ValueError, UserError)) as exc:
        parse_start(text, zone)
    for w in words:
        assert w in str(exc.value)
    assert parse_start("2024-03-31T02:30", "Europe/London") == parse_start("2024-03-31T01:30Z", "UTC")
    assert parse_start("2024-10-27T01:30+00:00", "Europe/London") == parse_start("2024-10-27T01:30Z", "UTC")


def test_predict_refuses_a_nonexistent_start_in_one_line(bundles, tmp_path, capsys):
    rec = make_recording(tmp_path / "rec.csv", seconds=20)
    out = tmp_path / "p.csv"
    args = ["predict", "--model", str(bundles["six"]), "--input", str(rec), "--out", str(out), *UNITS]
    for extra, words in ((["--start", "2024-03-31T01:30", "--tz", "Europe/London"], ["does not exist"]),
                         (["--start", "9999-12-31T23:59"], ["outside"]),
                         (["--start", "0001-01-01T00:00"], ["outside"])):
        assert main(args + extra) != 0
        one_line(capsys, *words)
        assert not out.exists()


@pytest.mark.parametrize("fmt", ["cwa", "geneactiv"])
def test_unset_device_clocks_are_refused_or_read_with_start(bundles, tmp_path, capsys, fmt):
    """An Axivity reset to 2000-01-01, a GENEActiv to 1970-01-02: refused naming the file and the clock
    (the old code reported them years away, adding the start twice); --start reads them."""
    sig = make_signal(80 * 120, 100.0)[:, :3]
    if fmt == "cwa":
        f, when = write_cwa(tmp_path / "unset.cwa", sig, 946684800.0, 100.0), "2000-01-01"
    else:
        f, when = write_geneactiv(tmp_path / "unset.bin", sig, 86400.0, 100.0), "1970-01-02"
    before = f.read_bytes()
    out = tmp_path / "p.csv"
    args = ["predict", "--model", str(bundles["acc"]), "--input", str(f), "--out", str(out), "--nonwear", "off"]
    assert main(args) == 2
    one_line(capsys, str(f), "device clock", when, "never set", "--start")
    assert not out.exists()
    assert main(args + ["--start", "2024-05-01T10:00:00Z"]) == 0
    s = json.loads((tmp_path / "p.summary.json").read_text())
    assert s["start_time"].startswith("2024-05-01T10:00:00") and when in s["time"]["start_source"]
    assert f.read_bytes() == before


def test_epoch_milliseconds_without_time_unit_is_one_line(bundles, tmp_path, capsys):
    rec = make_recording(tmp_path / "ms.csv", seconds=20)
    df = pd.read_csv(rec)
    df["time"] += 1.7e12  # epoch milliseconds, read as seconds: year 55840
    df.to_csv(rec, index=False)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(bundles["six"]), "--input", str(rec), "--out", str(out),
                 "--acc-unit", "m/s^2", "--gyro-unit", "rad/s"]) == 2
    one_line(capsys, str(rec), "--time-unit ms")
    assert not out.exists() and not (tmp_path / "p.summary.json").exists()


def test_nonwear_steps_are_bounded_by_samples_not_span():
    det = NonwearDetector(NonwearConfig())
    t = np.arange(0, 7200, 1.0)
    acc = np.tile([0.0, 0.0, 1.0], (len(t), 1))
    t0 = time.perf_counter()
    det.push(t, acc)
    det.push(t + 3000 * YEAR_S, acc)  # a 3000-year jump: ~1e8 15-min steps when walked one by one
    det.finish()
    assert time.perf_counter() - t0 < 5.0
    assert det.windows_nonwear > 0 and det.is_nonwear(np.array([3600.0, 3000 * YEAR_S + 3600.0])).all()
    # the same decisions as a detector fed each part alone
    alone = NonwearDetector(NonwearConfig())
    alone.push(t, acc)
    alone.finish()
    assert det.windows_evaluated == 2 * alone.windows_evaluated


@pytest.mark.timeout(120)
def test_a_3000_year_jump_finishes_with_a_warning(bundles, tmp_path, capsys):
    rec = make_recording(tmp_path / "jump.csv", seconds=60)
    df = pd.read_csv(rec)
    df["time"] = df["time"] / 1000.0 + 1.7e9
    df.loc[len(df) - 1, "time"] += 3000 * YEAR_S
    df.to_csv(rec, index=False)
    out, rep = tmp_path / "p.csv", tmp_path / "rep"
    t0 = time.perf_counter()
    assert main(["predict", "--model", str(bundles["six"]), "--input", str(rec), "--out", str(out),
                 "--acc-unit", "m/s^2", "--gyro-unit", "rad/s", "--report", str(rep)]) == 0
    assert time.perf_counter() - t0 < 30.0
    err = capsys.readouterr().err
    assert "time jumps forward by" in err and "split there" in err and "Traceback" not in err
    assert (rep / "daily_summary.csv").exists()


@pytest.mark.timeout(120)
def test_idle_sleep_of_ten_years_is_not_filled(bundles, tmp_path, caplog):
    """A 21-byte ActiGraph tail (idle sleep entered, one record ten years later) made the reader emit
    ten years of fill samples."""
    rate, start = 30, 1_700_000_000
    acc = np.tile([0.0, 0.0, 1.0], (rate * 60, 1))
    log = bytes(write_gt3x(tmp_path / "a.gt3x", acc, rate, start)["log"])
    tail = gt3x_record(0x03, start + 60, b"\x08") + gt3x_record(0x02, start + 60 + int(10 * YEAR_S), b"\x04\x10")
    f = tmp_path / "sleep.gt3x"
    write_gt3x(f, acc, rate, start, log_bytes=log + tail)
    t0 = time.perf_counter()
    n = sum(len(t) for t, _ in open_device(f).iter_chunks())
    assert time.perf_counter() - t0 < 10.0 and n == len(acc)
    assert "not filled" in caplog.text


@pytest.mark.parametrize("last", [1e20, 1e300, 2.5e11])
def test_a_time_beyond_any_calendar_is_one_line_naming_the_line(bundles, tmp_path, capsys, last):
    """A row at 1e20 s (or 1e300) overflowed the calendar deep inside (a traceback)."""
    rec = make_recording(tmp_path / "far.csv", seconds=20)
    df = pd.read_csv(rec)
    df["time"] = df["time"] / 1000.0 + 1.7e9
    df.loc[len(df) - 1, "time"] = last
    df.to_csv(rec, index=False)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(bundles["six"]), "--input", str(rec), "--out", str(out),
                 "--acc-unit", "m/s^2", "--gyro-unit", "rad/s"]) == 2
    one_line(capsys, f"{rec}:{len(df) + 1}:", "beyond any clock")
    assert not out.exists()
