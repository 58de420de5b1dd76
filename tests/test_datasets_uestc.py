"""UESTC-MMEA-CL sensor reader, on small files written in the documented layout."""

import math

import numpy as np
import pytest

from crossmodal_har.errors import DataError
from crossmodal_har.signals import uestc
from crossmodal_har.signals.datasets import load_labelled
from crossmodal_har.signals.types import PreprocessConfig

CFG = PreprocessConfig(window_s=2.0, stride_s=1.0)


def _write_clip(path, n, rng, acc_g=(0.0, 0.0, 1.0), gyro_deg_s=(0.0, 0.0, 0.0)):
    acc = np.array(acc_g) * uestc.ACC_LSB_PER_G + rng.normal(0, 80, size=(n, 3))
    gyro = np.array(gyro_deg_s) * uestc.GYRO_LSB_PER_DEG_S + rng.normal(0, 20, size=(n, 3))
    raw = np.round(np.concatenate([acc, gyro], axis=1)).astype(int)
    path.write_text("\n".join(",".join(str(v) for v in row) for row in raw) + "\n")


def _make_dataset(root, rng):
    s = root / "sensor"
    for cls in ("1_upstairs", "2_downstairs", "32_watch_TV"):
        (s / cls).mkdir(parents=True)
    _write_clip(s / "1_upstairs" / "1_upstairs_2022_04_22_16_04_24.csv", 150, rng, acc_g=(0.1, -0.9, 0.3))
    _write_clip(s / "1_upstairs" / "1_upstairs_2022_05_05_13_16_30.csv", 100, rng, acc_g=(0.1, -0.9, 0.3))
    _write_clip(s / "2_downstairs" / "2_downstairs_2022_04_22_16_06_21.csv", 125, rng, gyro_deg_s=(90, 0, 0))
    _write_clip(s / "32_watch_TV" / "32_watch_TV_2022_05_05_16_05_51.csv", 30, rng)  # 1.2 s: too short
    (root / "train.txt").write_text("x/1_upstairs/1_upstairs_2022_04_22_16_04_24 150 150 0\n")
    return s


def test_reads_documented_layout_and_units(tmp_path):
    rng = np.random.default_rng(0)
    _make_dataset(tmp_path / "UESTC-MMEA-CL", rng)
    names, clips = uestc.list_clips(tmp_path / "UESTC-MMEA-CL")
    assert names == ["upstairs", "downstairs", "watch_TV"]  # dataset order (folder number), not alphabetical
    data = uestc.read_sensor_csv(clips[2][1])
    assert data.shape == (125, 6)
    assert data[:, 3].mean() == pytest.approx(math.pi / 2, abs=0.02)  # 90 deg/s in rad/s
    ws = load_labelled(f"uestc:{tmp_path / 'UESTC-MMEA-CL'}", CFG, cache_dir=tmp_path / "cache", progress=False)
    assert ws.class_names == ["upstairs", "downstairs"]  # watch_TV has no window (clip too short)
    assert ws.report.short_recordings == ["32_watch_TV_2022_05_05_16_05_51"]
    # 150 rows at 25 Hz span 0..5.96 s -> 299 samples at 50 Hz -> 2 s windows every 1 s: 4;
    # 100 rows (0..3.96 s) -> 2; 125 rows (0..4.96 s) -> 3
    counts = {r: int((ws.recording == r).sum()) for r in set(ws.recording)}
    assert counts == {"1_upstairs_2022_04_22_16_04_24": 4, "1_upstairs_2022_05_05_13_16_30": 2,
                      "2_downstairs_2022_04_22_16_06_21": 3}
    assert set(ws.subject) == {"2022-04-22", "2022-05-05"}
    up = ws.x[ws.y == 0]
    np.testing.assert_allclose(up[:, :, :3].mean(axis=(0, 1)), [0.1, -0.9, 0.3], atol=0.02)


def test_bad_sensor_file_names_file_and_line_and_skip_bad(tmp_path):
    rng = np.random.default_rng(1)
    s = _make_dataset(tmp_path / "U", rng)
    bad = s / "2_downstairs" / "2_downstairs_2022_04_22_16_07_00.csv"
    _write_clip(bad, 60, rng)
    lines = bad.read_text().splitlines()
    lines[6] = "12,abc,8100,1,2,3"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="'abc'") as info:
        load_labelled(f"uestc:{tmp_path / 'U'}", CFG, cache_dir=tmp_path / "cache", progress=False)
    assert info.value.path == str(bad) and info.value.line == 7
    ws = load_labelled(f"uestc:{tmp_path / 'U'}", CFG, skip_bad=True, cache_dir=tmp_path / "cache", progress=False)
    assert [d["path"] for d in ws.report.skipped_recordings] == [str(bad)]
    assert len(ws) == 9


def test_not_a_uestc_directory(tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="no sensor/<k>_<class>/ folders"):
        uestc.list_clips(tmp_path)


def _make_paper_dataset(root, rng, skip=()):
    """Clips of the paper's 5 classes and of 3 others, with the list files of the documented shape
    (``<path>/<k>_<class>/<k>_<class>_<date> <frames> <sensor rows> <label>``)."""
    folders = {"2_downstairs": (0.0, -0.5, 0.8), "4_fall": (0.7, 0.0, 0.7), "12_standing": (0.0, 0.0, 1.0),
               "20_walking": (0.0, 0.3, 0.9), "29_sit_stand": (0.3, 0.3, 0.9), "1_upstairs": (0.1, -0.9, 0.3),
               "13_sitting": (0.5, 0.0, 0.8), "32_watch_TV": (0.0, 0.6, 0.8)}
    lines = []
    for i, (folder, acc) in enumerate(folders.items()):
        if folder in skip:
            continue
        (root / "sensor" / folder).mkdir(parents=True)
        for j, date in enumerate(("2022_04_22_16_04_24", "2022_05_05_13_16_30")):
            stem = f"{folder}_{date}"
            n = 100 + 25 * j
            _write_clip(root / "sensor" / folder / f"{stem}.csv", n, rng, acc_g=acc)
            lines.append(f"video/{folder}/{stem} {n} {n} {int(folder.split('_')[0]) - 1}")
    (root / "train.txt").write_text("\n".join(lines[::2]) + "\n")
    (root / "test.txt").write_text("\n".join(lines[1::2]) + "\n")


def test_uestc5_keeps_the_papers_five_classes(tmp_path):
    rng = np.random.default_rng(3)
    _make_paper_dataset(tmp_path / "U", rng)
    full = load_labelled(f"uestc:{tmp_path / 'U'}", CFG, cache_dir=tmp_path / "cache", progress=False)
    five = load_labelled(f"uestc5:{tmp_path / 'U'}", CFG, cache_dir=tmp_path / "cache", progress=False)
    assert len(full.class_names) == 8  # the 32-class reading stays the default
    assert five.class_names == ["downstairs", "fall", "standing", "walking", "sit_stand"]  # folder order
    assert sorted(five.class_names) == sorted(uestc.PAPER_CLASSES)
    assert five.name == "uestc5" and full.name == "uestc"
    # the same windows as the full reading for those clips, labelled with the 5-class indices
    keep = np.isin(np.array(full.class_names)[full.y], uestc.PAPER_CLASSES)
    assert len(five) == int(keep.sum()) == 5 * (2 + 3)  # 100 rows (0..3.96 s) -> 2 windows, 125 rows -> 3
    np.testing.assert_array_equal(five.x, full.x[keep])
    assert [five.class_names[k] for k in five.y] == [full.class_names[k] for k in full.y[keep]]
    assert not any(r.startswith(("1_upstairs", "13_sitting", "32_watch_TV")) for r in five.recording)


def test_uestc5_names_a_missing_class_folder(tmp_path):
    _make_paper_dataset(tmp_path / "U", np.random.default_rng(4), skip=("4_fall",))
    with pytest.raises(DataError, match="fall"):
        load_labelled(f"uestc5:{tmp_path / 'U'}", CFG, cache_dir=tmp_path / "cache", progress=False)
