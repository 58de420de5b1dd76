"""Autocalibration against gravity (van Hees et al. 2014) and its use in `predict --calibrate`."""

import json

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.infer.calibration import (CalibrationConfig, StillPointAccumulator, apply_calibration,
                                              calibration_error, fit_sphere)
from helpers.bundles import COLS, make_bundle, predict_recording

G_UNIT_KEYS = {"units.acc_unit": "g", "units.gyro_unit": "rad/s", "units.time_unit": "s"}


def orientations(k, rng):
    v = rng.normal(size=(k, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def recording(rng, minutes=120, rate=20.0, n_orient=40, still_min=1.0, lying_z_only=False):
    """Alternating still minutes (in ``n_orient`` random orientations, 3 mg noise) and moving minutes
    (gait-like, 0.3 g); true acceleration in g. Returns (t, x [n, 6])."""
    n = int(minutes * 60 * rate)
    t = np.arange(n) / rate
    x = np.zeros((n, 6))
    per = int(still_min * 60 * rate)
    dirs = np.tile([0.0, 0.0, 1.0], (n_orient, 1)) if lying_z_only else orientations(n_orient, rng)
    seg = np.arange(n) // per
    for s in np.unique(seg):
        m = seg == s
        g = dirs[(s // 2) % n_orient]
        x[m, :3] = g + rng.normal(0, 0.003, (int(m.sum()), 3))
        if s % 2 == 1:  # moving
            x[m, :3] += 0.3 * np.sin(2 * np.pi * 1.7 * t[m])[:, None] * rng.uniform(0.5, 1, 3)
            x[m, 3:] = rng.normal(0, 0.5, (int(m.sum()), 3))
    return t, x


def distort(x, gain, bias):
    y = x.copy()
    y[:, :3] = x[:, :3] * gain + bias  # raw = true * gain + bias  <=>  true = (raw - bias) / gain
    return y


def fit(t, x, cfg=None, chunk=None):
    cfg = cfg or CalibrationConfig()
    acc = StillPointAccumulator(cfg)
    step = chunk or len(t)
    for a in range(0, len(t), step):
        acc.push(t[a:a + step], x[a:a + step, :3])
    acc.finish()
    return acc, fit_sphere(acc.array(), cfg)


def test_recovers_known_offsets_and_scales():
    rng = np.random.default_rng()
    gain = 1 + rng.uniform(-0.05, 0.05, 3)
    bias = rng.uniform(-0.06, 0.06, 3)
    t, x = recording(rng)
    raw = distort(x, gain, bias)
    acc, res = fit(t, raw)
    assert res.applied, res.reason
    np.testing.assert_allclose(res.offset, -bias, atol=3e-3)
    np.testing.assert_allclose(res.scale, 1 / gain, atol=3e-3)
    assert res.error_after_g < 0.2 * res.error_before_g and res.error_after_g < 0.005
    cal = apply_calibration(raw[:, :3], res)
    still = np.abs(np.linalg.norm(x[:, :3], axis=1) - 1) < 0.02

    def error(a):  # mean | |a| - 1 g | over the still samples
        return np.abs(np.linalg.norm(a[still], axis=1) - 1).mean()

    # the error the distortion added is removed: measured against the samples' own error (their 3 mg
    # noise), not against the raw error, which a small random distortion leaves near that floor
    # (the raw-error form failed 3 of 200 seeds; the removed share is >= 99.996 % on all 200)
    floor = error(x[:, :3])
    assert error(cal) - floor < 0.05 * (error(raw[:, :3]) - floor)
    # still points do not depend on the chunking (epochs straddle chunk borders)
    acc2, res2 = fit(t, raw, chunk=1_237)
    np.testing.assert_allclose(acc2.array(), acc.array(), atol=1e-12)
    np.testing.assert_allclose(res2.offset, res.offset, atol=1e-9)
    # the moving minutes are not still points: about one 10-s epoch in two of the recording
    assert 0.4 * len(t) / 200 < len(acc.array()) < 0.55 * len(t) / 200


def test_too_few_orientations_is_skipped_with_reason():
    rng = np.random.default_rng()
    t, x = recording(rng, lying_z_only=True)
    raw = distort(x, np.array([1.03, 0.98, 1.02]), np.array([0.03, -0.02, 0.04]))
    _, res = fit(t, raw)
    assert not res.applied and "sphere not covered" in res.reason and "x -" in res.reason
    assert res.error_before_g > 0.01 and res.error_after_g is None and res.n_points > 100
    assert apply_calibration(raw[:, :3], res) is raw[:, :3] or np.array_equal(apply_calibration(raw[:, :3], res),
                                                                              raw[:, :3])
    _, empty = fit(t[:100], raw[:100])
    assert not empty.applied and "too few still" in empty.reason


def test_memory_bound_thins_points_deterministically():
    rng = np.random.default_rng()
    t, x = recording(rng, minutes=60)
    cfg = CalibrationConfig(max_points=50)
    acc, res = fit(t, distort(x, np.ones(3) * 1.02, np.zeros(3)), cfg=cfg, chunk=5_000)
    assert acc.n_points <= 50 and acc.keep_every >= 2 and res.applied
    assert calibration_error(acc.array(), np.array(res.offset), np.array(res.scale)) < 0.005


# --------------------------------------------------------------------------------- predict

@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("cal") / "bundle")  # physical units (normalization none)


def write(path, t, x):
    pd.DataFrame(np.column_stack([t, x]), columns=COLS).to_parquet(path, index=False)
    return path


def predict(bundle, rec, out, **keys):
    res = predict_recording(bundle, rec, out, **G_UNIT_KEYS, **{"nonwear.enabled": False}, **keys)
    assert res.summary_path == out.with_name(out.stem + ".summary.json")
    probs = pd.read_csv(out, keep_default_na=False)
    return probs, json.loads(res.summary_path.read_text())


def p_cols(df):
    return df[[c for c in df.columns if c.startswith("p_")]].replace("", np.nan).astype(float).to_numpy()


def test_predict_calibrates_before_windowing(bundle, tmp_path):
    rng = np.random.default_rng()
    t, x = recording(rng, minutes=40, rate=50.0, n_orient=20)
    gain, bias = np.array([1.04, 0.96, 1.03]), np.array([0.05, -0.04, 0.03])
    clean = write(tmp_path / "clean.parquet", t, x)
    raw = write(tmp_path / "raw.parquet", t, distort(x, gain, bias))
    ref, s_ref = predict(bundle, clean, tmp_path / "ref.csv", **{"calibration.mode": "off"})
    cal, s_cal = predict(bundle, raw, tmp_path / "cal.csv", report=tmp_path / "rep")
    off, s_off = predict(bundle, raw, tmp_path / "off.csv", **{"calibration.mode": "off"})
    c = s_cal["calibration"]
    assert c["applied"] and c["mode"] == "auto" and c["n_points"] > 50
    np.testing.assert_allclose(c["offset"], -bias, atol=5e-3)
    np.testing.assert_allclose(c["scale"], 1 / gain, atol=5e-3)
    assert c["error_after_g"] < 0.3 * c["error_before_g"]
    page = (tmp_path / "rep" / "report.html").read_text()
    # the page says it in words and mg: the offset of x and the error before -> after
    assert "OK: error" in page and f"{1000 * c['offset'][0]:.1f} mg" in page
    assert f"{1000 * c['error_before_g']:.1f} mg → {1000 * c['error_after_g']:.1f} mg" in page
    assert s_off["calibration"] == {"mode": "off", "applied": False, "reason": "off (--calibrate off)"}
    # the model sees the calibrated signal: a runner whose logits are each window's mean |acc| (g)
    from crossmodal_har.infer.predict import predict_file
    from crossmodal_har.signals.types import PreprocessConfig
    from crossmodal_har.signals.units import Units

    def runner(w):
        m = np.linalg.norm(w[:, :, :3], axis=2).mean(axis=1)
        return np.stack([20 * (m - 1), np.zeros_like(m)], axis=1).astype(np.float32)

    pre = PreprocessConfig(normalization="none", stride_s=5.0)
    p = {}
    for name, rec, mode in (("ref", clean, "off"), ("cal", raw, "auto"), ("off", raw, "off")):
        predict_file(rec, tmp_path / f"{name}_lin.csv", runner, pre, ["a", "b"], Units(), progress=False,
                     calibration=CalibrationConfig(mode=mode))
        p[name] = pd.read_csv(tmp_path / f"{name}_lin.csv")["p_a"].to_numpy()
    d_cal, d_off = np.abs(p["cal"] - p["ref"]).mean(), np.abs(p["off"] - p["ref"]).mean()
    assert d_cal < 0.2 * d_off, (d_cal, d_off)


def test_skipped_calibration_is_identical_to_off(bundle, tmp_path):
    rng = np.random.default_rng()
    t, x = recording(rng, minutes=20, rate=50.0, lying_z_only=True)
    raw = write(tmp_path / "raw.parquet", t, distort(x, np.array([1.03, 1.0, 1.0]), np.array([0.0, 0.0, 0.02])))
    res = predict_recording(bundle, raw, tmp_path / "auto.csv", **G_UNIT_KEYS, **{"nonwear.enabled": False})
    s_auto = json.loads(res.summary_path.read_text())
    off, _ = predict(bundle, raw, tmp_path / "off.csv", **{"calibration.mode": "off"})
    assert not s_auto["calibration"]["applied"] and "sphere not covered" in s_auto["calibration"]["reason"]
    assert "calibration: not applied (sphere not covered" in res.text()  # what the command prints
    assert (tmp_path / "auto.csv").read_bytes() == (tmp_path / "off.csv").read_bytes()
