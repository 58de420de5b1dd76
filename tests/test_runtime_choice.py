"""``predict --runtime auto`` (the default): ONNX Runtime when the bundle's export is at hand and the
model runs in fp32 on the CPU, else torch; a stale export is passed over; ``train-classifier`` writes
the export that ``auto`` finds."""

import logging
import shutil

import pytest

from crossmodal_har.cli import main
from crossmodal_har.infer.export import export_beside, export_bundle
from crossmodal_har.infer.predict_config import PredictConfig
from helpers.bundles import UNIT_KEYS, make_bundle, make_recording, predict_recording


def refused_by_onnx(bundle, rec, tmp_path, capsys) -> str:
    """``predict --runtime onnx`` on ``bundle``: exit status 2 and one line on stderr (returned)."""
    capsys.readouterr()
    rc = main(["predict", "--model", str(bundle), "--input", str(rec), "--out", str(tmp_path / "p.csv"),
               "--acc-unit", "m/s^2", "--gyro-unit", "rad/s", "--time-unit", "ms", "--runtime", "onnx"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("keys, expected", [
    ({}, "onnx"), ({"device": "auto"}, "torch"), ({"device": "cuda"}, "torch"), ({"precision": "bf16"}, "torch"),
    ({"runtime": "torch"}, "torch"), ({"runtime": "onnx"}, "onnx")])
def test_chosen_runtime_with_an_export_at_hand(tmp_path, keys, expected):
    (tmp_path / "model.onnx").write_bytes(b"only its presence counts here")
    assert PredictConfig(model=str(tmp_path), input="i", out="o", **keys).chosen_runtime() == expected


def test_chosen_runtime_without_an_export(tmp_path):
    cfg = PredictConfig(model=str(tmp_path), input="i", out="o")
    assert cfg.runtime == "auto" and cfg.chosen_runtime() == "torch" and cfg.model_batch_size() == 256
    given = PredictConfig(model=str(tmp_path), input="i", out="o", onnx=str(tmp_path / "elsewhere.onnx"))
    assert given.chosen_runtime() == "onnx" and given.model_batch_size() == 64  # --onnx FILE: asked for


def test_auto_runs_the_export_when_there_and_torch_otherwise(tmp_path):
    d = make_bundle(tmp_path / "b", normalization="zscore")
    rec = make_recording(tmp_path / "rec.csv", seconds=90)
    before = predict_recording(d, rec, tmp_path / "before.csv", **UNIT_KEYS).summary
    assert (before["runtime"], before["runtime_option"]) == ("torch", "auto")
    predict_recording(d, rec, tmp_path / "torch.csv", **UNIT_KEYS, runtime="torch")
    assert (tmp_path / "before.csv").read_bytes() == (tmp_path / "torch.csv").read_bytes()
    export_bundle(d)
    after = predict_recording(d, rec, tmp_path / "after.csv", **UNIT_KEYS).summary
    assert (after["runtime"], after["runtime_option"]) == ("onnx", "auto")
    predict_recording(d, rec, tmp_path / "onnx.csv", **UNIT_KEYS, runtime="onnx")
    assert (tmp_path / "after.csv").read_bytes() == (tmp_path / "onnx.csv").read_bytes()


def test_auto_passes_over_a_stale_export_and_onnx_refuses_it(tmp_path, caplog, capsys):
    d = make_bundle(tmp_path / "b", seed=0)
    export_bundle(d)
    shutil.copy(d / "model.onnx", tmp_path / "old.onnx")
    make_bundle(d, seed=1)  # retrained: save_bundle removes the export; a stale copy is put back
    shutil.copy(tmp_path / "old.onnx", d / "model.onnx")
    rec = make_recording(tmp_path / "rec.csv", seconds=60)
    with caplog.at_level(logging.WARNING):
        got = predict_recording(d, rec, tmp_path / "auto.csv", **UNIT_KEYS).summary
    assert got["runtime"] == "torch" and "stale export" in caplog.text and "torch" in caplog.text
    predict_recording(d, rec, tmp_path / "torch.csv", **UNIT_KEYS, runtime="torch")
    assert (tmp_path / "auto.csv").read_bytes() == (tmp_path / "torch.csv").read_bytes()
    assert "stale export" in refused_by_onnx(d, rec, tmp_path, capsys)


def test_train_classifier_exports_what_predict_runs(tmp_path, capsys):
    from test_bundle_export import make_dataset

    ds = make_dataset(tmp_path / "ds", n_subjects=4, seconds=20.0)
    flags = ["--dataset", str(ds), "--encoder", "random", "--arch", "convgru-tiny", "--protocol", "linear-probe",
             "--epochs", "2", "--no-progress"]
    assert main(["train-classifier", *flags, "--out", str(tmp_path / "m")]) == 0
    assert "model.onnx" in capsys.readouterr().out and (tmp_path / "m" / "model.onnx").is_file()
    rec = tmp_path / "rec.csv"
    shutil.copy(ds / "recordings" / "r0.csv", rec)
    keys = {"units.acc_unit": "g", "units.gyro_unit": "rad/s", "units.time_unit": "s"}
    assert predict_recording(tmp_path / "m", rec, tmp_path / "p.csv", **keys).summary["runtime"] == "onnx"
    assert main(["train-classifier", *flags, "--out", str(tmp_path / "n"), "--no-onnx"]) == 0
    assert not (tmp_path / "n" / "model.onnx").exists() and (tmp_path / "n" / "bundle.json").is_file()


def test_a_failed_export_leaves_the_bundle_for_torch(tmp_path, monkeypatch, caplog):
    import crossmodal_har.infer.export as export

    d = make_bundle(tmp_path / "b")

    def broken(bundle_dir):
        raise RuntimeError("ONNX export of b: max |torch - onnx| = 0.3 > 0.0001; file removed\nmore")

    monkeypatch.setattr(export, "export_bundle", broken)
    with caplog.at_level(logging.WARNING):
        line = export_beside(d)
    assert "no model.onnx" in line and "torch" in line and "\n" not in line and "0.3 > 0.0001" in caplog.text
    assert not (d / "model.onnx").exists() and (d / "bundle.json").is_file()
    rec = make_recording(tmp_path / "rec.csv", seconds=30)
    assert predict_recording(d, rec, tmp_path / "p.csv", **UNIT_KEYS).summary["runtime"] == "torch"


def test_auto_passes_over_an_unreadable_export_and_onnx_refuses_it(tmp_path, caplog, capsys):
    d = make_bundle(tmp_path / "b")
    (d / "model.onnx").write_bytes(b"not an ONNX graph")  # a truncated or foreign file
    rec = make_recording(tmp_path / "rec.csv", seconds=30)
    with caplog.at_level(logging.WARNING):
        got = predict_recording(d, rec, tmp_path / "auto.csv", **UNIT_KEYS).summary
    assert got["runtime"] == "torch" and "cannot load ONNX model" in caplog.text
    assert "cannot load ONNX model" in refused_by_onnx(d, rec, tmp_path, capsys)


def test_an_export_whose_parity_check_cannot_run_leaves_no_file(tmp_path, monkeypatch):
    import crossmodal_har.infer.export as export
    from crossmodal_har.errors import DataError

    d = make_bundle(tmp_path / "b")

    def unloadable(model, path, window_samples, **kw):
        assert path.is_file()  # written, then found unusable
        raise DataError(path, "cannot load ONNX model (unsupported op)")

    monkeypatch.setattr(export, "check_parity", unloadable)
    with pytest.raises(DataError):
        export_bundle(d)
    assert not (d / "model.onnx").exists()
    assert "no model.onnx" in export_beside(d) and not (d / "model.onnx").exists()
    assert PredictConfig(model=str(d), input="i", out="o").chosen_runtime() == "torch"
