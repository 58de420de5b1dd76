"""predict fails loud (issue 19 item 9): a recording in which no window could be classified is an error
with its cause in one line, and a time unit that contradicts the data is warned about once."""

import logging

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError
from crossmodal_har.signals.recording import time_unit_hint
from helpers.bundles import COLS, make_bundle, make_recording, predict_recording


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("loud")
    return {"bundle": make_bundle(d / "bundle"), "csv": make_recording(d / "rec.csv", seconds=120.0), "dir": d}


def test_ms_times_read_as_seconds_is_an_error_naming_the_cause(env, caplog):
    out = env["dir"] / "s.csv"
    with caplog.at_level(logging.WARNING):
        with pytest.raises(DataError) as e:  # the file's times are ms; declared (by default) s
            predict_recording(env["bundle"], env["csv"], out, chunk_rows=997, **{"units.acc_unit": "m/s^2"})
    msg = str(e.value)
    assert msg.startswith(str(env["csv"])) and "\n" not in msg
    assert "no window could be classified: median step 9.97 s at --time-unit s: is the time unit ms?" in msg
    # the plausibility warning: once, although calibration and prediction both read the file in many chunks
    warned = [r.getMessage() for r in caplog.records if "is the time unit ms?" in r.getMessage()]
    assert len(warned) == 1, warned
    assert out.with_name("s.summary.json").is_file()  # outputs kept for a look


def test_cli_exit_status_and_one_line(env, capsys):
    rc = main(["predict", "--model", str(env["bundle"]), "--input", str(env["csv"]), "--out",
               str(env["dir"] / "cli.csv"), "--acc-unit", "m/s^2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert any("is the time unit ms?" in line and "no window could be classified" in line for line in err)
    assert "Traceback" not in "\n".join(err)


def test_all_windows_unclassifiable_names_what_they_were(env):
    rec = env["dir"] / "flat.csv"  # a sensor lying still: every window flat, nothing to classify
    t = np.arange(0, 60.0, 0.01)
    x = np.zeros((len(t), 6))
    x[:, 2] = 1.0
    pd.DataFrame(np.column_stack([t, x]), columns=COLS).to_csv(rec, index=False)
    with pytest.raises(DataError, match=r"no window could be classified: \d+ window\(s\) in 60 s \(flat_line \d+"):
        predict_recording(env["bundle"], rec, env["dir"] / "flat_out.csv", **{"nonwear.enabled": False})


def test_right_units_pass_and_hint_rules():
    assert time_unit_hint(20.0, "s") == "median step 20 s at --time-unit s: is the time unit ms?"
    assert time_unit_hint(0.02, "ms") == "median step 0.02 ms at --time-unit ms: is the time unit s?"
    assert time_unit_hint(0.02, "s") is None and time_unit_hint(20.0, "ms") is None
    assert time_unit_hint(float("nan"), "s") is None
