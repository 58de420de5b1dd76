"""Every bad-input case gives a DataError naming the file and the line (corpus: tests/data/bad/)."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.errors import ConfigError, DataError
from crossmodal_har.signals.datasets import load_labelled
from crossmodal_har.signals.generic import write_generic_dataset
from crossmodal_har.signals.recording import read_recording
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import Units

BAD = Path(__file__).parent / "data" / "bad"
TINY = PreprocessConfig(window_s=0.1, stride_s=0.1, median_kernel=0)

# file -> (line or None, words the message must contain)
RECORDING_CASES = {
    "missing_column.csv": (1, "missing column(s) gyro_z"),
    "unparsable_number.csv": (4, "'abc'"),
    "nan_row.csv": (3, "NaN row"),
    "nan_literal.csv": (5, "NaN row"),
    "non_monotonic_time.csv": (5, "backwards"),
    "duplicated_time.csv": (4, "duplicated time"),
    "empty.csv": (None, "empty file"),
    "header_only.csv": (2, "no data rows"),
    "binary.csv": (None, "binary file"),
    "short_row.csv": (6, "5 fields"),
}

DATASET_CASES = {
    "unknown_unit": ("dataset.json", 2, "unknown acc_unit 'furlongs/s^2'"),
    "labels_unknown_recording": ("labels.csv", 3, "unknown recording 'ghost'"),
    "labels_start_ge_end": ("labels.csv", 3, "start 0.3 >= end 0.3"),
    "labels_bad_number": ("labels.csv", 2, "cannot parse end 'zero.1'"),
    "labels_missing_column": ("labels.csv", 1, "missing column(s) end"),
}


def test_corpus_is_complete():
    assert sorted(p.name for p in (BAD / "recordings").iterdir()) == sorted(RECORDING_CASES)
    assert sorted(p.name for p in (BAD / "datasets").iterdir()) == sorted(DATASET_CASES)


@pytest.mark.parametrize("name", sorted(RECORDING_CASES))
def test_bad_recording_names_file_and_line(name):
    line, words = RECORDING_CASES[name]
    path = BAD / "recordings" / name
    with pytest.raises(DataError) as info:
        read_recording(path, Units())
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert words in str(err)
    expected_prefix = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(err).startswith(expected_prefix)
    assert "\n" not in str(err)


@pytest.mark.parametrize("case", sorted(DATASET_CASES))
def test_bad_dataset_names_file_and_line(case):
    fname, line, words = DATASET_CASES[case]
    root = BAD / "datasets" / case
    with pytest.raises(DataError) as info:
        load_labelled(root, TINY, progress=False)
    err = info.value
    assert err.path == str(root / fname)
    assert err.line == line
    assert words in str(err)


def test_unknown_unit_in_code_is_config_error():
    with pytest.raises(ConfigError, match="deg/s"):
        Units(gyro_unit="rpm")


def test_parquet_bad_cases(tmp_path):
    t = np.arange(5) * 0.02
    df = pd.DataFrame({"time": t, "acc_x": 0.0, "acc_y": 0.0, "acc_z": 1.0, "gyro_x": 0.0,
                       "gyro_y": 0.0, "gyro_z": 0.0})
    p = tmp_path / "a.parquet"
    df.drop(columns=["acc_y"]).to_parquet(p)
    with pytest.raises(DataError, match="missing column.*acc_y") as info:
        read_recording(p, Units())
    assert info.value.path == str(p)
    df2 = df.copy()
    df2.loc[3, "gyro_x"] = np.nan
    df2.to_parquet(p)
    with pytest.raises(DataError, match="row 4: .*gyro_x"):
        read_recording(p, Units())
    df3 = df.copy()
    df3.loc[2, "time"] = df3.loc[1, "time"]
    df3.to_parquet(p)
    with pytest.raises(DataError, match="row 3: duplicated time"):
        read_recording(p, Units())
    (tmp_path / "b.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a valid Parquet"):
        read_recording(tmp_path / "b.parquet", Units())


def _good_frame(n=40, rate=50.0, t0=0.0):
    t = t0 + np.arange(n) / rate
    return pd.DataFrame({"time": t, "acc_x": np.sin(t), "acc_y": 0.1 * np.cos(3 * t), "acc_z": 1.0,
                         "gyro_x": 0.2 * np.sin(5 * t), "gyro_y": 0.0, "gyro_z": 0.01 * t})


def test_skip_bad_collects_every_bad_recording(tmp_path):
    labels = pd.DataFrame({"recording": ["good1", "good2"], "start": [0.0, 0.0], "end": [0.78, 0.78],
                           "label": ["a", "b"]})
    root = write_generic_dataset(tmp_path / "ds", [("good1", _good_frame()), ("good2", _good_frame())],
                                 labels, Units())
    for name in RECORDING_CASES:
        shutil.copy(BAD / "recordings" / name, root / "recordings" / name)
    with pytest.raises(DataError):
        load_labelled(root, TINY, progress=False)
    ws = load_labelled(root, TINY, skip_bad=True, progress=False)
    skipped = {Path(s["path"]).name: s["error"] for s in ws.report.skipped_recordings}
    assert sorted(skipped) == sorted(RECORDING_CASES)
    for name, (line, words) in RECORDING_CASES.items():
        assert words in skipped[name]
        if line is not None:
            assert f"{name}:{line}:" in skipped[name]
    assert ws.report.recordings_read == 2
    assert set(ws.recording) == {"good1", "good2"}
    assert ws.class_names == ["a", "b"]


def test_skip_bad_skips_bad_label_rows_and_lists_them(tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(BAD / "datasets" / "labels_unknown_recording", root)
    # rec1 is a constant signal: its windows are excluded as a dead sensor and counted, not dropped;
    # a dataset left with no usable window is an error that says why.
    with pytest.raises(DataError, match="1 recording.s. read; 1 skipped as bad; excluded windows flat_line: 4") as info:
        load_labelled(root, TINY, skip_bad=True, progress=False)
    assert info.value.path == str(root)
    f = write_generic_dataset(tmp_path / "ok", [("rec1", _good_frame())],
                              pd.DataFrame({"recording": ["rec1", "ghost"], "start": [0, 0], "end": [0.5, 1],
                                            "label": ["a", "a"]}), Units())
    ws = load_labelled(f, TINY, skip_bad=True, progress=False)
    assert [s["path"] for s in ws.report.skipped_recordings] == [f"{f / 'labels.csv'}:3"]
    assert len(ws) > 0
