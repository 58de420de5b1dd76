"""predict / embed end to end (through the library; the CLI for its one-line errors) on a tiny random
bundle and simulated recordings."""

import json

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.cli import main
from helpers.bundles import (CLASSES, COLS, UNIT_KEYS, embed_recording, make_bundle, make_recording,
                             predict_recording)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("predict")
    return {"bundle": make_bundle(d / "bundle"), "csv": make_recording(d / "rec.csv"), "dir": d}


def predict(env, out, **keys):
    res = predict_recording(env["bundle"], env["csv"], out, **UNIT_KEYS, **keys)
    assert res.summary_path == out.with_name(out.stem + ".summary.json")
    return pd.read_csv(out, keep_default_na=False), json.loads(res.summary_path.read_text())


def test_chunked_prediction_is_identical_and_marks_bad_stretches(env):
    d = env["dir"]
    one, s1 = predict(env, d / "one.csv", chunk_rows=1000000, batch_size=16, smooth="3")
    many, s2 = predict(env, d / "many.csv", chunk_rows=97, batch_size=16, smooth="3")
    # chunking never changes a byte; the batch size may only move float rounding
    assert len(one) > 50 and (d / "one.csv").read_bytes() == (d / "many.csv").read_bytes()
    b256, _ = predict(env, d / "b256.csv", chunk_rows=1000, smooth="3")
    assert b256["label"].tolist() == one["label"].tolist()
    for k in ("rows_read", "windows", "windows_ok", "windows_skipped", "seconds_per_activity"):
        assert s1[k] == s2[k]
    assert list(one.columns) == ["start", "end", "status", "label", "label_raw"] + [f"p_{c}" for c in CLASSES]
    st = one["status"]
    assert set(st) == {"ok", "gap", "non_finite", "flat_line"}
    gap = one[st == "gap"].iloc[0]
    assert gap["start"] == pytest.approx(60.0, abs=0.02) and gap["end"] == pytest.approx(63.0, abs=0.02)
    bad = one[st != "ok"]
    assert (bad["label"] == "").all() and (bad["p_rest"] == "").all()
    flat = one[st == "flat_line"]
    assert flat["start"].min() >= 150.0 - 1e-6 and flat["end"].max() <= 170.0 + 1e-6 and len(flat) >= 5
    ok = one[st == "ok"]
    assert set(ok["label"]) <= set(CLASSES)
    assert np.allclose(ok[[f"p_{c}" for c in CLASSES]].astype(float).sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.diff(one["start"].to_numpy()) >= 0)
    # summary: windows by reason, time per activity = ok windows x hop
    assert s1["windows_skipped"] == {"flat_line": len(flat)}
    assert s1["stretches_without_windows"]["gap"]["rows"] == 1
    assert sum(s1["seconds_per_activity"].values()) == pytest.approx(len(ok) * 2.5)
    assert s1["rows_read"] == len(pd.read_csv(env["csv"]))


def test_parquet_input_and_timeline(env):
    d = env["dir"]
    pq = make_recording(d / "rec.parquet")
    csv_out, _ = predict(env, d / "p_csv.csv")
    res = predict_recording(env["bundle"], pq, d / "p_pq.csv", **UNIT_KEYS, chunk_rows=5000, timeline=d / "tl.png")
    assert res.timeline == str(d / "tl.png")
    pq_out = pd.read_csv(d / "p_pq.csv", keep_default_na=False)
    assert pq_out["status"].tolist() == csv_out["status"].tolist()
    assert (d / "tl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stride_override_and_meta_units(env, tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"acc_unit": "m/s^2", "gyro_unit": "rad/s", "time_unit": "ms"}))
    out = tmp_path / "s.csv"
    res = predict_recording(env["bundle"], env["csv"], out, **{"units.meta": tmp_path / "dataset.json"}, stride_s=5)
    assert res.summary["stride_s"] == 5.0 and res.summary["units"]["acc_unit"] == "m/s^2"
    df = pd.read_csv(out, keep_default_na=False)
    ok = df[df["status"] == "ok"]
    assert np.allclose(np.diff(ok["start"].to_numpy()[:5]), 5.0)


@pytest.mark.parametrize("body,line,words", [
    ("0,0,0,1,0,0,0\n0.02,0,0,1,0,0,0\n0.04,0,abc,1,0,0,0\n", 4, "cannot parse 'abc'"),
    ("0,0,0,1,0,0,0\n0.02,0,0,1,0,0,0\n0.01,0,0,1,0,0,0\n", 4, "time goes backwards"),
    ("0,0,0,1,0,0,0\n0.02,0,0,1,0,0,0\n0.02,0,0,1,0,0,0\n", 4, "duplicated time"),
])
def test_bad_input_names_file_and_global_line(env, tmp_path, capsys, body, line, words):
    good = "".join(f"{-10 + i * 0.02:.2f},0,0,1,0,0,0\n" for i in range(400))  # lines 2..401
    # shift the bad rows after the good ones so the error lies in a later chunk
    shifted = "".join(f"{float(r.split(',')[0]) + 100:.2f}," + r.split(",", 1)[1] for r in body.splitlines(True))
    f = tmp_path / "bad.csv"
    f.write_text(",".join(COLS) + "\n" + good + shifted)
    rc = main(["predict", "--model", str(env["bundle"]), "--input", str(f), "--out", str(tmp_path / "o.csv"),
               "--chunk-rows", "64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith(f"error: {f}:{line + 400}: ") and words in err[-1], err
    assert not (tmp_path / "o.csv").exists()


def test_missing_column_and_missing_onnx(env, tmp_path, capsys):
    f = tmp_path / "cols.csv"
    f.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y\n0,0,0,1,0,0\n")
    rc = main(["predict", "--model", str(env["bundle"]), "--input", str(f), "--out", str(tmp_path / "o.csv")])
    assert rc == 2 and "missing column(s) gyro_z" in capsys.readouterr().err
    rc = main(["predict", "--model", str(env["bundle"]), "--input", str(env["csv"]), "--out",
               str(tmp_path / "o.csv"), "--runtime", "onnx", "--onnx", str(tmp_path / "none.onnx")])
    assert rc == 2 and "export" in capsys.readouterr().err


def test_embed_npy_and_parquet_agree(env):
    d = env["dir"]
    for ext in ("npy", "parquet"):
        res = embed_recording(env["csv"], d / f"emb.{ext}", model=env["bundle"], **UNIT_KEYS, chunk_rows=777)
        assert res.out == str(d / f"emb.{ext}") and res.windows > 50
    a = np.load(d / "emb.npy")
    b = pd.read_parquet(d / "emb.parquet")
    pred, _ = predict(env, d / "for_embed.csv")
    ok = pred[pred["status"] == "ok"]
    dim = json.loads((env["bundle"] / "bundle.json").read_text())["encoder"]["embed_dim"]
    assert a.shape == (len(ok), 2 + dim) and list(b.columns[:3]) == ["start", "end", "e0"]
    np.testing.assert_allclose(a[:, 0], ok["start"].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(a[:, 2:], b.iloc[:, 2:].to_numpy(), atol=1e-6)


def test_embed_from_a_saved_encoder(env, tmp_path):
    import torch

    from crossmodal_har.models.bundle import load_bundle
    from crossmodal_har.models.encoder_file import save_encoder

    b = load_bundle(env["bundle"])
    save_encoder(b.model.encoder, tmp_path / "run", b.preprocess)
    out = tmp_path / "e.npy"
    res = embed_recording(env["csv"], out, encoder=tmp_path / "run", **UNIT_KEYS)
    assert res.embed_dim == b.model.encoder.embed_dim
    a = np.load(out)
    ref = np.load(env["dir"] / "emb.npy") if (env["dir"] / "emb.npy").exists() else None
    assert a.shape[1] == 2 + b.model.encoder.embed_dim and len(a) > 50
    if ref is not None:  # same encoder, same windows as through the bundle
        np.testing.assert_allclose(a, ref, atol=1e-6)
    with torch.no_grad():
        assert np.isfinite(a).all()
