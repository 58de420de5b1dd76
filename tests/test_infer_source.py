"""The inference source (``infer/source.py``): ``predict`` and ``embed`` read a recording through one
reader, one channel rule and one autocalibration, so ``embed`` embeds exactly the windows ``predict``
classifies — also on a recording that needs calibration (issue 18: ``embed`` used to skip it)."""

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.cli import main
from helpers.bundles import COLS, embed_recording, make_bundle

G_UNITS = ["--acc-unit", "g", "--gyro-unit", "rad/s", "--time-unit", "s"]
G_UNIT_KEYS = {"units.acc_unit": "g", "units.gyro_unit": "rad/s", "units.time_unit": "s"}


def miscalibrated(path, minutes=30.0, rate=50.0, n_orient=20, seed=0):
    """Still minutes in ``n_orient`` orientations (so the sphere fit applies) between moving minutes;
    the accelerometer with a per-axis gain and offset error (as tests/test_calibration.py builds it)."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * rate)
    t = np.arange(n) / rate
    x = np.zeros((n, 6))
    v = rng.normal(size=(n_orient, 3))
    dirs = v / np.linalg.norm(v, axis=1, keepdims=True)
    seg = np.arange(n) // int(60 * rate)
    for s in np.unique(seg):
        m = seg == s
        x[m, :3] = dirs[(s // 2) % n_orient] + rng.normal(0, 0.003, (int(m.sum()), 3))
        if s % 2 == 1:
            x[m, :3] += 0.3 * np.sin(2 * np.pi * 1.7 * t[m])[:, None] * rng.uniform(0.5, 1, 3)
            x[m, 3:] = rng.normal(0, 0.5, (int(m.sum()), 3))
    x[:, :3] = x[:, :3] * [1.04, 0.96, 1.03] + [0.05, -0.04, 0.03]
    pd.DataFrame(np.column_stack([t, x]), columns=COLS).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("source")
    return {"dir": d, "bundle": make_bundle(d / "bundle"), "rec": miscalibrated(d / "rec.parquet")}


def predicted_windows(case, mode):
    """The windows ``predict`` classifies (as the model receives them) and the output's ok rows."""
    from crossmodal_har.infer.calibration import CalibrationConfig
    from crossmodal_har.infer.predict import predict_file
    from crossmodal_har.infer.runtime import TorchRunner
    from crossmodal_har.models.bundle import load_bundle
    from crossmodal_har.signals.units import Units

    bundle = load_bundle(case["bundle"])
    model = TorchRunner(bundle.model)
    seen = []

    def runner(w):
        seen.append(np.array(w, copy=True))
        return model(w)

    out = case["dir"] / f"pred_{mode}.csv"
    summary = predict_file(case["rec"], out, runner, bundle.preprocess, bundle.class_names, Units(), progress=False,
                           calibration=CalibrationConfig(mode=mode))
    df = pd.read_csv(out, keep_default_na=False)
    return np.concatenate(seen), df[df["status"] == "ok"], summary, bundle


def encoder_embeddings(bundle, windows):
    from crossmodal_har.infer.runtime import TorchRunner
    from crossmodal_har.models.classifier import NormalizedEncoder

    return TorchRunner(NormalizedEncoder(bundle.model.encoder, bundle.preprocess.normalization).eval())(windows)


def test_embed_sees_the_windows_predict_classifies_on_a_recording_that_needs_calibration(case):
    windows, ok, summary, bundle = predicted_windows(case, "auto")
    assert summary["calibration"]["applied"], summary["calibration"]  # the fit changes the windows
    out = case["dir"] / "emb.npy"
    # embed's defaults, as predict's: --calibrate auto
    assert main(["embed", "--model", str(case["bundle"]), "--input", str(case["rec"]), "--out", str(out),
                 *G_UNITS, "--chunk-rows", "7000"]) == 0
    emb = np.load(out)
    assert len(emb) == len(ok) == len(windows) > 50
    np.testing.assert_allclose(emb[:, 0], ok["start"].to_numpy(), rtol=0, atol=1e-6)  # the CSV's %.6f
    np.testing.assert_allclose(emb[:, 2:], encoder_embeddings(bundle, windows), rtol=0, atol=1e-6)


def test_embed_calibrate_off_matches_predict_calibrate_off(case):
    windows, ok, summary, bundle = predicted_windows(case, "off")
    assert not summary["calibration"]["applied"]
    out = case["dir"] / "emb_off.npy"
    res = embed_recording(case["rec"], out, model=case["bundle"], **G_UNIT_KEYS, **{"calibration.mode": "off"})
    assert res.info["calibration"] == summary["calibration"]
    emb = np.load(out)
    np.testing.assert_allclose(emb[:, 0], ok["start"].to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(emb[:, 2:], encoder_embeddings(bundle, windows), rtol=0, atol=1e-6)


def test_embed_windows_are_predict_windows(case, tmp_path):
    """An embedder that returns its window unchanged: what ``embed`` writes is, value for value,
    what ``predict``'s model received (calibrated: the defaults of both)."""
    import torch

    from crossmodal_har.infer.embed import embed_file
    from crossmodal_har.signals.units import Units

    class Flat(torch.nn.Module):
        def forward(self, x):
            return x.reshape(len(x), -1)

    windows, ok, summary, bundle = predicted_windows(case, "auto")
    assert summary["calibration"]["applied"]
    flat = windows.reshape(len(windows), -1)
    res = embed_file(case["rec"], tmp_path / "w.npy", Flat(), bundle.preprocess, Units(), flat.shape[1],
                     chunk_rows=5000)
    emb = np.load(tmp_path / "w.npy")
    assert res["windows"] == len(ok) == len(emb)
    np.testing.assert_allclose(emb[:, 0], ok["start"].to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(emb[:, 2:], flat.astype(np.float32))
