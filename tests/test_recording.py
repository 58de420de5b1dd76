"""The one recording front end (``signals/recording.py``): the whole-file read is the concatenation
of strict chunks (same values and the same errors whatever ``chunk_rows``), and one units rule for
device files in both reads."""

import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals.recording import iter_chunks, read_recording, units_for
from crossmodal_har.signals.units import Units

sys.path.insert(0, str(Path(__file__).parent))
from helpers.files_axivity_geneactiv import make_signal, write_cwa  # noqa: E402

HEADER = "time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"


def _rows(n, t0=0.0):
    return [f"{t0 + i * 0.02:.2f},0.1,0,1,0,0,0" for i in range(n)]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_whole_file_read_is_its_chunks(tmp_path, suffix):
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.005, 0.03, 1000))
    df = pd.DataFrame(rng.normal(0, 1, (1000, 6)), columns=HEADER.split(",")[1:])
    df.insert(0, "time", t)
    path = tmp_path / f"r{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path, index=False, row_group_size=300)
    whole = read_recording(path, Units(acc_unit="m/s^2", time_unit="ms"))
    assert whole.data.flags["C_CONTIGUOUS"]
    for rows in (1, 7, 333):
        rec = read_recording(path, Units(acc_unit="m/s^2", time_unit="ms"), chunk_rows=rows)
        np.testing.assert_array_equal(rec.t, whole.t)
        np.testing.assert_array_equal(rec.data, whole.data)
        chunks = list(iter_chunks(path, Units(acc_unit="m/s^2", time_unit="ms"), rows, policy="strict"))
        np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), whole.data)


@pytest.mark.parametrize("tail,line,words", [
    (["", ""], None, None),  # blank lines at the end: dropped
    (["", "9,0,0,1,0,0,0"], 102, "empty line inside the data (NaN row)"),  # a row after a blank line
    (["9,0,,1,0,0,0"], 102, "empty value in column acc_y (NaN row)"),
    ([",,,,,,"], 102, "empty line inside the data (NaN row)"),
    (["9,0,inf,1,0,0,0", ""], 102, "non-finite value 'inf' in column acc_y (NaN row)"),
])
def test_strict_missing_values_across_chunk_borders(tmp_path, tail, line, words):
    path = tmp_path / "r.csv"
    path.write_text("\n".join([HEADER] + _rows(100) + tail) + "\n")
    outcomes = set()
    for rows in (1, 3, 100, 101, 10_000):
        try:
            rec = read_recording(path, Units(), chunk_rows=rows)
            outcomes.add(("ok", len(rec.t)))
        except DataError as e:
            outcomes.add((e.line, str(e).split(": ", 1)[1]))
    assert len(outcomes) == 1, outcomes  # the same result whatever the chunking
    (got,) = outcomes
    if line is None:
        assert got == ("ok", 100)
    else:
        assert got[0] == line and words in got[1], got


def test_lenient_keeps_missing_values_strict_refuses_them(tmp_path):
    path = tmp_path / "r.csv"
    lines = _rows(100)
    lines[50] = "1.00,,0,1,0,0,0"
    path.write_text("\n".join([HEADER] + lines) + "\n")
    data = np.concatenate([c.data for c in iter_chunks(path, Units(), 7)])
    assert len(data) == 100 and np.isnan(data[50, 0]) and np.isfinite(np.delete(data, 50, axis=0)).all()
    with pytest.raises(DataError, match="empty value in column acc_x") as e:
        read_recording(path, Units(), chunk_rows=7)
    assert e.value.line == 52


def test_one_units_rule_for_device_files(tmp_path, caplog):
    sig = make_signal(40 * 30, 50.0)
    path = write_cwa(tmp_path / "rec.cwa", sig[:, :3], 1.7e9, 50.0, gyro_dps=sig[:, 3:])
    for units in (Units(acc_unit="m/s^2"), Units(time_unit="ms")):
        with pytest.raises(UserError, match="a cwa device file carries its own units"):
            read_recording(path, units)
        with pytest.raises(UserError, match="a cwa device file carries its own units"):
            next(iter_chunks(path, units, 100))
    # a collection's units (dataset.json, session.json) are its tables': a device file among them is
    # read in its own units, with a warning
    with caplog.at_level(logging.WARNING, logger="crossmodal_har.signals.recording"):
        assert units_for(path, Units(acc_unit="m/s^2")) == Units()
    assert "carries its own units" in caplog.text and "acc_unit=m/s^2" in caplog.text
    assert units_for(tmp_path / "a.csv", Units(acc_unit="m/s^2")) == Units(acc_unit="m/s^2")
    np.testing.assert_array_equal(read_recording(path, units_for(path, Units(time_unit="ms"))).data,
                                  read_recording(path, Units()).data)


def test_time_check_names_line_row_or_sample(tmp_path):
    csv = tmp_path / "r.csv"
    lines = _rows(10)
    lines[6] = lines[5]
    csv.write_text("\n".join([HEADER] + lines) + "\n")
    for read in (lambda: read_recording(csv, Units(), chunk_rows=3), lambda: list(iter_chunks(csv, Units(), 3))):
        with pytest.raises(DataError, match=r"r\.csv:8: duplicated time 0\.1 \(same as line 7\)"):
            read()
    pq = tmp_path / "r.parquet"
    pd.DataFrame({c: [0.0, 0.02, 0.01] for c in HEADER.split(",")}).to_parquet(pq)
    with pytest.raises(DataError, match=r"row 3: time goes backwards: 0\.01 after 0\.02 \(row 2\)"):
        list(iter_chunks(pq, Units(), 1))
