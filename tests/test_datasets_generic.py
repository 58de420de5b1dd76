"""The generic labelled format: label assignment, subjects, short recordings, caching."""

import json

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.errors import ConfigError, DataError
from crossmodal_har.signals.datasets import load_labelled
from crossmodal_har.signals.generic import LabelSegment, assign_labels, sort_classes, write_generic_dataset
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import Units
from crossmodal_har.signals.generic import read_meta

CFG = PreprocessConfig(rate_hz=10.0, window_s=1.0, stride_s=0.5, median_kernel=0)


def _frame(duration_s, rate, t0=0.0, time_scale=1.0, acc_scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate))
    t = t0 + np.arange(n) / rate
    return pd.DataFrame({"time": t * time_scale, "acc_x": rng.normal(0, 0.1, n) * acc_scale,
                         "acc_y": rng.normal(0, 0.1, n) * acc_scale, "acc_z": (1.0 + rng.normal(0, 0.1, n)) * acc_scale,
                         "gyro_x": rng.normal(0, 0.1, n), "gyro_y": 0.0, "gyro_z": 0.0})


def test_assign_labels_wholly_inside_rule():
    segs = [LabelSegment(0.0, 2.0, "a", 2), LabelSegment(2.0, 3.0, "b", 3), LabelSegment(5.0, 9.0, "a", 4)]
    idx = {"a": 0, "b": 1}
    start = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 4.5, 5.0, 8.0, 8.5])
    y = assign_labels(start, start + 1.0, segs, idx)
    #             [0,1] [.5,1.5] [1,2] [1.5,2.5] [2,3] [4.5,5.5] [5,6] [8,9] [8.5,9.5]
    assert list(y) == [0, 0, 0, -1, 1, -1, 0, 0, -1]


def test_load_generic_labels_subjects_and_short_recordings(tmp_path):
    labels = pd.DataFrame({
        "recording": ["r1", "r1", "r2", "r3"],
        "start": [0.0, 4.0, 1.0, 0.0], "end": [4.0, 10.0, 6.0, 0.5],
        "label": ["walk", "sit", "walk", "walk"], "subject": ["alice", "alice", "", "bob"]})
    root = write_generic_dataset(tmp_path / "ds", [("r1", _frame(10, 10)), ("r2", _frame(6, 10, seed=1)),
                                                   ("r3", _frame(0.5, 10, seed=2))], labels, Units())
    ws = load_labelled(root, CFG, progress=False)
    assert ws.class_names == ["sit", "walk"]
    assert ws.x.shape[1:] == (10, 6) and ws.x.dtype == np.float32
    r1 = ws.recording == "r1"
    # r1: windows [0,1]..[3,4] are walk, [4,5]..[9,10) sit (last full window starts at 8.9 s grid)
    np.testing.assert_allclose(ws.start_s[r1 & (ws.y == 1)], [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    assert (ws.start_s[r1 & (ws.y == 0)] >= 4.0).all()
    assert set(ws.subject[r1]) == {"alice"}
    assert set(ws.subject[ws.recording == "r2"]) == {"r2"}  # subject defaults to the recording name
    assert ws.report.short_recordings == ["r3"]
    assert ws.report.recordings_read == 3
    assert ws.report.unlabelled_windows == 1 + 2  # r1 [3.5,4.5]; r2 [0,1], [0.5,1.5]
    assert ws.report.windows_kept == len(ws)
    assert np.all(ws.end_s - ws.start_s == pytest.approx(1.0))


def test_units_and_rates_give_same_windows(tmp_path):
    """Same motion recorded at 100 Hz in m/s^2 and ms vs 50 Hz in g and s -> same windows."""
    cfg = PreprocessConfig(window_s=2.0, stride_s=1.0, median_kernel=5)
    t100 = np.arange(0, 12, 0.01)
    t50 = np.arange(0, 12, 0.02)

    def motion(t):
        return np.stack([0.3 * np.sin(2 * np.pi * 1.2 * t), 0.1 * np.cos(2 * np.pi * 0.4 * t),
                         1 + 0.2 * np.sin(2 * np.pi * 2 * t), np.sin(t), np.cos(t) * 0.2, 0.1 * t], 1)

    m100, m50 = motion(t100), motion(t50)
    cols = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    df_a = pd.DataFrame(m50, columns=cols)
    df_a.insert(0, "time", t50)
    df_b = pd.DataFrame(np.concatenate([m100[:, :3] * 9.80665, np.degrees(m100[:, 3:])], 1), columns=cols)
    df_b.insert(0, "time", t100 * 1000)
    la = pd.DataFrame({"recording": ["x"], "start": [0.0], "end": [12.0], "label": ["move"]})
    lb = la.assign(start=0.0, end=12000.0)
    a = load_labelled(write_generic_dataset(tmp_path / "a", [("x", df_a)], la, Units()), cfg, progress=False)
    b = load_labelled(write_generic_dataset(tmp_path / "b", [("x", df_b)], lb, Units("m/s^2", "deg/s", "ms"),
                                            fmt="parquet"), cfg, progress=False)
    assert len(a) == len(b) == 11
    np.testing.assert_allclose(a.start_s, b.start_s)
    np.testing.assert_allclose(a.x, b.x, atol=0.01)


def test_window_cache_roundtrip(tmp_path):
    labels = pd.DataFrame({"recording": ["r1"], "start": [0.0], "end": [10.0], "label": ["3"]})
    root = write_generic_dataset(tmp_path / "ds", [("r1", _frame(10, 10))], labels, Units())
    cache = tmp_path / "cache"
    a = load_labelled(root, CFG, cache_dir=cache, progress=False)
    files = list((cache / "windows").glob("*.npz"))
    assert len(files) == 1
    b = load_labelled(root, CFG, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(a.x, b.x)
    assert list(b.subject) == list(a.subject) and b.subject.dtype == object
    assert b.class_names == ["3"] and b.report.windows_kept == a.report.windows_kept
    # a different preprocessing config is a different cache entry; normalisation is not
    load_labelled(root, PreprocessConfig(rate_hz=10.0, window_s=1.0, stride_s=1.0, median_kernel=0),
                  cache_dir=cache, progress=False)
    load_labelled(root, PreprocessConfig(rate_hz=10.0, window_s=1.0, stride_s=0.5, median_kernel=0,
                                         normalization="none"), cache_dir=cache, progress=False)
    assert len(list((cache / "windows").glob("*.npz"))) == 2


def test_dataset_json_classes_order_and_unknown_keys(tmp_path):
    labels = pd.DataFrame({"recording": ["r1", "r1"], "start": [0.0, 5.0], "end": [5.0, 10.0],
                           "label": ["walk", "sit"]})
    root = write_generic_dataset(tmp_path / "ds", [("r1", _frame(10, 10))], labels, Units(),
                                 classes=["walk", "sit", "run"])
    ws = load_labelled(root, CFG, progress=False)
    assert ws.class_names == ["walk", "sit"]  # natural order kept; absent class dropped
    meta = json.loads((root / "dataset.json").read_text())
    meta["acc_units"] = "g"
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="unknown key.*acc_units"):
        load_labelled(root, CFG, progress=False)


def test_overlapping_labels_are_an_error(tmp_path):
    labels = pd.DataFrame({"recording": ["r1", "r1"], "start": [0.0, 4.0], "end": [5.0, 10.0],
                           "label": ["walk", "sit"]})
    root = write_generic_dataset(tmp_path / "ds", [("r1", _frame(10, 10))], labels, Units())
    with pytest.raises(DataError, match="overlaps the one on line 2") as info:
        load_labelled(root, CFG, progress=False)
    assert info.value.line == 3


def test_write_generic_dataset_refuses_to_overwrite(tmp_path):
    labels = pd.DataFrame({"recording": ["r1"], "start": [0.0], "end": [1.0], "label": ["a"]})
    write_generic_dataset(tmp_path / "ds", [("r1", _frame(2, 10))], labels, Units())
    with pytest.raises(ConfigError, match="already exists"):
        write_generic_dataset(tmp_path / "ds", [("r1", _frame(2, 10))], labels, Units())
    write_generic_dataset(tmp_path / "ds", [("r1", _frame(2, 10))], labels, Units(), overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sort_classes_numeric():
    assert sort_classes(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert sort_classes(["b", "a"]) == ["a", "b"]


def test_missing_dataset_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_labelled(tmp_path / "nope", CFG, progress=False)
    with pytest.raises(DataError, match="dataset.json not found"):
        load_labelled(tmp_path, CFG, progress=False)


def test_dataset_tz_is_validated_and_read(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"acc_unit": "g", "gyro_unit": "rad/s", "time_unit": "s",
                                                       "tz": "Europe/London"}))
    assert read_meta(tmp_path).tz == "Europe/London"
    (tmp_path / "dataset.json").write_text(json.dumps({"acc_unit": "g", "gyro_unit": "rad/s", "time_unit": "s",
                                                       "tz": "Mars/Olympus"}))
    with pytest.raises(DataError, match="IANA"):
        read_meta(tmp_path)
