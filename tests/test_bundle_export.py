"""Classifier bundle round trip and strict loading, train-classifier, ONNX export parity."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.cli import main
from helpers.bundles import UNIT_KEYS, UNITS, make_bundle, make_recording, predict_recording, train_bundle


def test_bundle_round_trip_is_exact(tmp_path):
    import torch

    from crossmodal_har.models.bundle import load_bundle

    d = make_bundle(tmp_path / "b", model="convgru-tiny", normalization="zscore")
    b = load_bundle(d)
    assert b.class_names == ["rest", "walk", "turn"] and b.preprocess.normalization == "zscore"
    assert b.meta["metrics"] == {"balanced_accuracy": 0.5} and b.meta["provenance"]["made_by"] == "test"
    x = torch.randn(4, 250, 6)
    b2 = load_bundle(d / "bundle.json")  # a path to the JSON works too
    with torch.no_grad():
        assert torch.equal(b.model(x), b2.model(x))
    assert not b.model.training


def test_bundle_loading_is_strict(tmp_path):
    from safetensors.torch import load_file, save_file

    from crossmodal_har.errors import DataError, UserError
    from crossmodal_har.models.bundle import load_bundle

    d = make_bundle(tmp_path / "b")
    state = load_file(str(d / "model.safetensors"))
    state["head.extra"] = state["head.bias"].clone()
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(DataError, match=r"unexpected 1 \[head.extra\]"):
        load_bundle(d)
    del state["head.extra"], state["head.bias"]
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(DataError, match=r"missing 1 \[head.bias\]"):
        load_bundle(d)
    meta = json.loads((d / "bundle.json").read_text())
    meta["preprocess"]["rate"] = 50
    (d / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="unknown key"):
        load_bundle(d)
    with pytest.raises(UserError, match="not a classifier bundle"):
        load_bundle(tmp_path)


def test_onnx_export_parity_and_runtime_agreement(tmp_path, capsys):
    d = make_bundle(tmp_path / "b", model="patchtst-tiny", normalization="zscore")
    assert main(["export", "--model", str(d), "--format", "onnx", "--out", str(d / "model.onnx")]) == 0
    out = capsys.readouterr().out
    diff = float(out.split("max |torch - onnxruntime| = ")[1].split()[0])
    assert diff <= 1e-4
    rec = make_recording(tmp_path / "rec.csv", seconds=120)
    res = {}
    for rt in ("torch", "onnx"):
        assert predict_recording(d, rec, tmp_path / f"{rt}.csv", **UNIT_KEYS, runtime=rt).summary["runtime"] == rt
        res[rt] = pd.read_csv(tmp_path / f"{rt}.csv", keep_default_na=False)
    a, b = res["torch"], res["onnx"]
    assert a["status"].tolist() == b["status"].tolist() and a["label"].tolist() == b["label"].tolist()
    ok = a["status"] == "ok"
    pa = a.loc[ok, ["p_rest", "p_walk", "p_turn"]].astype(float).to_numpy()
    pb = b.loc[ok, ["p_rest", "p_walk", "p_turn"]].astype(float).to_numpy()
    assert np.abs(pa - pb).max() <= 1e-4
    # the ONNX runtime needs only bundle.json: torch is never imported
    import subprocess
    import sys

    code = ("import sys; from crossmodal_har.cli import main; "
            f"rc = main(['-q', 'predict', '--model', {str(d)!r}, '--input', {str(rec)!r}, '--out', "
            f"{str(tmp_path / 'sub.csv')!r}, '--runtime', 'onnx', *{UNITS!r}]); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300).stdout
    assert out.split()[-2:] == ["0", "False"], out
    assert (tmp_path / "sub.csv").read_bytes() == (tmp_path / "onnx.csv").read_bytes()


def test_export_parity_with_the_small_patchtst(tmp_path):
    from crossmodal_har.infer.export import export_bundle

    d = make_bundle(tmp_path / "b", model="patchtst-small", normalization="none")
    path, diff = export_bundle(d)
    assert path == d / "model.onnx" and diff <= 1e-4


def make_dataset(root: Path, n_subjects: int = 5, rate: float = 50.0, seconds: float = 30.0) -> Path:
    """Three postures that differ by the gravity direction: trivially separable in physical units."""
    from crossmodal_har.signals.generic import write_generic_dataset
    from crossmodal_har.signals.units import Units

    rng = np.random.default_rng(0)
    g = {"upright": [0, 0, 1], "lying": [1, 0, 0], "side": [0, 1, 0]}
    recs, labels = [], []
    for s in range(n_subjects):
        parts = []
        for c, (name, vec) in enumerate(g.items()):
            n = int(seconds * rate)
            x = rng.normal(0, 0.05, (n, 6))
            x[:, :3] += vec
            parts.append(x)
            labels.append({"recording": f"r{s}", "start": c * seconds, "end": (c + 1) * seconds, "label": name,
                           "subject": f"p{s}"})
        data = np.concatenate(parts)
        df = pd.DataFrame(data, columns=["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"])
        df.insert(0, "time", np.arange(len(data)) / rate)
        recs.append((f"r{s}", df))
    return write_generic_dataset(root, recs, pd.DataFrame(labels), Units("g", "rad/s", "s"))


@pytest.mark.slow
def test_train_classifier_writes_a_bundle_that_predicts(tmp_path, capsys):
    from crossmodal_har.models.bundle import load_bundle

    ds = make_dataset(tmp_path / "ds")
    out = tmp_path / "model"
    res = train_bundle(ds, out, encoder="random", model="patchtst-tiny", protocol="linear-probe")
    assert not res.skipped_recordings and res.bundle_json == out / "bundle.json"
    b = load_bundle(out)
    assert sorted(b.class_names) == ["lying", "side", "upright"]
    assert b.meta["head"]["type"] == "standardized-linear"
    assert b.meta["metrics"]["balanced_accuracy"] >= 0.9  # learnt, on held-out validation subjects
    prov = b.meta["provenance"]
    assert set(prov["subjects"]["train"]).isdisjoint(prov["subjects"]["val"])
    assert prov["protocol"] == "linear-probe" and prov["encoder"]["model"] == "patchtst-tiny"
    # the bundle classifies a new recording made of the same postures
    rec = tmp_path / "new.csv"
    df = pd.read_csv(ds / "recordings" / "r0.csv")
    df.to_csv(rec, index=False)
    assert predict_recording(out, rec, tmp_path / "p.csv").summary["windows_ok"] > 0
    p = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    ok = p[p["status"] == "ok"]
    truth = np.array(["upright", "lying", "side"])[np.minimum((ok["start"].to_numpy() // 30).astype(int), 2)]
    inside = (ok["start"] % 30) <= 25  # windows wholly inside one posture
    assert (ok["label"].to_numpy()[inside] == truth[inside]).mean() >= 0.9


def test_stale_onnx_export_is_refused(tmp_path, capsys):
    import shutil

    d = make_bundle(tmp_path / "b", seed=0)
    assert main(["export", "--model", str(d)]) == 0
    shutil.copy(d / "model.onnx", tmp_path / "old.onnx")
    make_bundle(d, seed=1)  # retrained weights: save_bundle removes the old export...
    assert not (d / "model.onnx").exists()
    shutil.copy(tmp_path / "old.onnx", d / "model.onnx")  # ...and a stale copy put back is refused
    rec = make_recording(tmp_path / "rec.csv", seconds=30)
    capsys.readouterr()
    rc = main(["predict", "--model", str(d), "--input", str(rec), "--out", str(tmp_path / "p.csv"), *UNITS,
               "--runtime", "onnx"])
    assert rc == 2 and "stale export" in capsys.readouterr().err


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_unrolled_gru_equals_torch_gru(steps):
    """The export's GRU (the zero state's recurrent product left out, the gates' products regrouped) is
    PyTorch's GRU, in float64."""
    import torch

    from crossmodal_har.models.imu_convgru import gru_last_state

    torch.manual_seed(steps)
    gru = torch.nn.GRU(input_size=7, hidden_size=16, batch_first=True).double()
    with torch.no_grad():
        gru.bias_hh_l0.normal_()  # non-zero recurrent biases: the first step must still use them
        x = torch.randn(4, steps, 7, dtype=torch.float64)
        _, h = gru(x)
        got = gru_last_state(gru, x)
    assert got.shape == (4, 16)
    assert torch.allclose(got, h[-1], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="one layer"):
        gru_last_state(torch.nn.GRU(7, 16, num_layers=2, batch_first=True), x.float())


def test_convgru_export_unrolls_the_gru(tmp_path):
    import onnx

    from crossmodal_har.infer.export import export_bundle

    d = make_bundle(tmp_path / "b", model="convgru-tiny", normalization="zscore")
    path, diff = export_bundle(d)
    nodes = onnx.load(str(path)).graph.node
    ops = {n.op_type for n in nodes}
    # the GRU unrolled into matrix products (with their biases: Gemm), no gate vector split at each step
    assert "GRU" not in ops and "Split" not in ops and "Gemm" in ops and diff <= 1e-4
    # 2-D convolutions (ONNX Runtime's blocked kernels), not 1-D ones
    kernels = [list(a.ints) for n in nodes if n.op_type == "Conv" for a in n.attribute if a.name == "kernel_shape"]
    assert kernels and all(len(k) == 2 and k[0] == 1 for k in kernels)
    # the model runs its own forward (PyTorch's GRU) again after an export
    import torch

    from crossmodal_har.infer.export import export_onnx
    from crossmodal_har.models.bundle import load_bundle
    from crossmodal_har.models.imu_convgru import ConvGRUEncoder

    model = load_bundle(d).model
    export_onnx(model, tmp_path / "again.onnx", 250)
    enc = [m for m in model.modules() if isinstance(m, ConvGRUEncoder)]
    assert enc and all("forward" not in vars(m) for m in enc)
    with torch.no_grad():
        x = torch.randn(2, 250, 6)
        _, h = enc[0].gru(enc[0].conv(x.transpose(1, 2)).transpose(1, 2))
        assert torch.equal(enc[0](x), h[-1])
        # the export's forward is the same function (float64: equal to rounding)
        e64 = enc[0].double()
        assert torch.allclose(e64.export_forward(x.double()), e64(x.double()), rtol=0, atol=1e-12)


def test_convgru_export_forward_falls_back_on_other_conv_blocks():
    """A conv block that is not the plain one the 2-D rewrite assumes (here: padded) is computed by
    the 1-D stack: the export's forward still equals the model's."""
    import torch

    from crossmodal_har.models.imu_convgru import _plain_block
    from crossmodal_har.models.registry import create_model

    enc = create_model("convgru-tiny").double().eval()
    block = list(enc.conv)[2]
    block[0].padding = (2,)
    assert not _plain_block(block)
    with torch.no_grad():
        x = torch.randn(3, enc.window, 6, dtype=torch.float64)
        assert torch.allclose(enc.export_forward(x), enc(x), rtol=0, atol=1e-12)


def test_export_puts_every_module_back():
    """An instance's own ``forward`` is restored after an export, the class's where it had none."""
    import torch

    from crossmodal_har.infer.export import _export_friendly
    from crossmodal_har.models.registry import create_model

    enc = create_model("convgru-tiny")
    other = create_model("convgru-tiny")
    own = other.forward
    other.forward = own  # an instance attribute (as a wrapper would set)
    model = torch.nn.Sequential(enc, other)
    with _export_friendly(model):
        assert vars(enc)["forward"] == enc.export_forward and vars(other)["forward"] == other.export_forward
    assert "forward" not in vars(enc) and vars(other)["forward"] == own
