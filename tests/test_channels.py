"""Accelerometer-only models (issue 14, item 2): ``--channels acc | acc+gyro``.

Windows keep the 6-column canonical layout everywhere; a model with channels ``acc`` reads the first
3 columns (the slice is on the model-input path, so the bundle, its ONNX export and predict agree).
An accelerometer-only recording (``ImuRecording.channels == "acc"``, NaN gyroscope) is windowed with
its gyroscope columns 0.0 under ``acc`` and refused under ``acc+gyro``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError
from crossmodal_har.evaluate.protocols import EncoderSource
from crossmodal_har.models.classifier import WindowClassifier
from crossmodal_har.signals import datasets
from crossmodal_har.signals.generic import write_generic_dataset
from crossmodal_har.signals.types import ImuRecording, PreprocessConfig
from crossmodal_har.signals.units import Units
from crossmodal_har.signals.windows import recording_windows
from helpers.bundles import train_bundle
from helpers.files_actigraph_apdm_empatica import smooth_signal

CLASSES = ("still", "walk")
RATE = 50.0


def _classifier(model: str, channels: str) -> WindowClassifier:
    torch.manual_seed(0)
    source = EncoderSource.random(model, PreprocessConfig(channels=channels, normalization="none"))
    enc = source.build(pretrained=False)
    return WindowClassifier(enc, torch.nn.Linear(enc.embed_dim, 3), "none").eval()


@pytest.mark.parametrize("model", ["patchtst-tiny", "convgru-tiny"])
def test_acc_model_reads_three_channels_and_ignores_the_gyroscope(model):
    acc, full = _classifier(model, "acc"), _classifier(model, "acc+gyro")
    assert acc.encoder.input_channels == 3 and full.encoder.input_channels == 6
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(0, 0.5, (4, 250, 6)), dtype=torch.float32)
    x2 = x.clone()
    x2[..., 3:] = torch.as_tensor(rng.normal(0, 3.0, (4, 250, 3)), dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(acc(x), acc(x2))  # the gyroscope columns are never read
        assert not torch.allclose(full(x), full(x2))  # control: a 6-channel model reads them
        x3 = x.clone()
        x3[..., 0] += 1.0
        assert not torch.allclose(acc(x), acc(x3))  # and the accelerometer ones are


def _acc_only(rec: ImuRecording) -> ImuRecording:
    data = rec.data.copy()
    data[:, 3:] = np.nan
    return dataclasses.replace(rec, data=data, channels="acc")


def _recording(seconds: float = 20.0, seed: int = 0) -> ImuRecording:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    data = rng.normal(0, 0.1, (n, 6))
    data[:, 2] += 1.0
    return ImuRecording(name="r0", t=np.arange(n) / RATE, data=data, source=Path("r0.csv"))


def test_acc_only_recording_windows_with_zero_gyroscope_and_no_exclusions():
    rec = _acc_only(_recording())
    x, start, _, reasons = recording_windows(rec, PreprocessConfig(channels="acc"))
    assert len(x) == 7 and x.shape[2] == 6
    assert (reasons == "").all()  # NaN gyroscope is not a non_finite window
    assert np.isfinite(x).all() and (x[:, :, 3:] == 0.0).all()
    # the accelerometer is windowed exactly as for a full recording
    full, _, _, _ = recording_windows(_recording(), PreprocessConfig())
    np.testing.assert_array_equal(x[:, :, :3], full[:, :, :3])


def test_acc_only_recording_refused_for_a_gyroscope_model():
    with pytest.raises(DataError) as err:
        recording_windows(_acc_only(_recording()), PreprocessConfig(channels="acc+gyro"))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("r0.csv:")
    assert "accelerometer-only recording (no gyroscope); use --channels acc" in msg


def make_dataset(root: Path, n_subjects: int = 4, seconds: float = 30.0, seed: int = 0,
                 acc_only: bool = False) -> Path:
    """One recording per subject: still then walking (acc in g, gyro in rad/s, s); ``acc_only``: CSVs
    with the header ``time,acc_x,acc_y,acc_z`` (no gyroscope columns)."""
    rng = np.random.default_rng(seed)
    recs, labels = [], []
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    for s in range(n_subjects):
        parts = []
        for c, name in enumerate(CLASSES):
            x = rng.normal(0, 0.02, (n, 6))
            x[:, 2] += 1.0
            if name == "walk":
                x[:, 0] += 0.5 * np.sin(2 * np.pi * 1.8 * t)
                x[:, 4] += 1.0 * np.sin(2 * np.pi * 0.9 * t)
            parts.append(x)
            labels.append({"recording": f"rec{s}", "start": c * seconds, "end": (c + 1) * seconds,
                           "label": name, "subject": f"p{s}"})
        data = np.concatenate(parts)
        df = pd.DataFrame(data, columns=["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"])
        df.insert(0, "time", np.arange(len(data)) / RATE)
        recs.append((f"rec{s}", df))
    out = write_generic_dataset(root, recs, pd.DataFrame(labels), Units())
    if acc_only:  # the writer needs all six columns: drop the gyroscope from the written files
        for name, df in recs:
            df[["time", "acc_x", "acc_y", "acc_z"]].to_csv(out / "recordings" / f"{name}.csv", index=False)
    return out


@pytest.fixture
def acc_only_reader(monkeypatch):
    """The dataset's recordings read as accelerometer-only (NaN gyroscope, channels "acc"), as the
    table reader returns them for a file with only ``time,acc_x,acc_y,acc_z``."""
    real = datasets.read_recording

    def read(*args, **kwargs):
        return _acc_only(real(*args, **kwargs))

    monkeypatch.setattr(datasets, "read_recording", read)


def test_labelled_acc_only_dataset_loads_with_acc_and_is_refused_with_acc_gyro(tmp_path, acc_only_reader):
    root = make_dataset(tmp_path / "ds")
    ws = datasets.load_labelled(root, PreprocessConfig(channels="acc"), progress=False)
    assert len(ws) > 0 and ws.preprocess.channels == "acc"
    assert not ws.report.windows_excluded  # no window lost to the missing gyroscope
    assert (ws.x[:, :, 3:] == 0.0).all()
    with pytest.raises(DataError, match=r"rec0\.csv: accelerometer-only recording \(no gyroscope\); "
                                        r"use --channels acc"):
        datasets.load_labelled(root, PreprocessConfig(), progress=False, skip_bad=True)


def test_cli_acc_only_dataset_with_gyroscope_model_is_one_line_error(tmp_path, acc_only_reader, capsys):
    root = make_dataset(tmp_path / "ds")
    rc = main(["train-classifier", "--dataset", str(root), "--out", str(tmp_path / "m"), "--arch", "convgru-tiny",
               "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err
    assert err.endswith("accelerometer-only recording (no gyroscope); use --channels acc (ingest: --set channels=acc)")


def _saved_encoder(path: Path, channels: str) -> Path:
    from crossmodal_har.models.encoder_file import save_encoder

    pre = PreprocessConfig(channels=channels)
    enc = EncoderSource.random("convgru-tiny", pre).build(pretrained=False)
    save_encoder(enc, path, pre)
    return path


@pytest.mark.parametrize("command", ["train-classifier", "evaluate"])
def test_channels_contradicting_a_pretrained_encoder_refused(tmp_path, capsys, command):
    root = make_dataset(tmp_path / "ds", n_subjects=2, seconds=6.0)
    enc = _saved_encoder(tmp_path / "enc", "acc+gyro")
    rc = main([command, "--dataset", str(root), "--encoder", str(enc), "--channels", "acc",
               "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert "--channels acc contradicts the encoder" in err and "acc+gyro" in err
    assert not (tmp_path / "out" / "bundle.json").exists() and not (tmp_path / "out" / "results.json").exists()


def test_saved_encoder_whose_preprocess_contradicts_its_architecture_is_refused(tmp_path):
    from crossmodal_har.models.encoder_file import save_encoder

    enc = EncoderSource.random("convgru-tiny", PreprocessConfig()).build(pretrained=False)  # 6 channels
    save_encoder(enc, tmp_path / "enc", PreprocessConfig(channels="acc"))
    with pytest.raises(DataError, match="reads 6 input channels"):
        EncoderSource.from_dir(tmp_path / "enc")


def test_encoder_saved_before_channels_existed_reads_acc_gyro(tmp_path):
    enc = _saved_encoder(tmp_path / "enc", "acc+gyro")
    meta = json.loads((enc / "encoder.json").read_text())
    del meta["preprocess"]["channels"]
    (enc / "encoder.json").write_text(json.dumps(meta))
    src = EncoderSource.from_dir(enc)
    assert src.preprocess.channels == "acc+gyro" and src.build().input_channels == 6


@pytest.mark.slow
def test_train_classifier_acc_bundle_ignores_gyroscope_in_torch_and_onnx(tmp_path):
    from crossmodal_har.infer.export import export_bundle
    from crossmodal_har.infer.runtime import OnnxRunner
    from crossmodal_har.models.bundle import load_bundle

    root = make_dataset(tmp_path / "ds")
    out = tmp_path / "bundle"
    res = train_bundle(root, out, model="patchtst-tiny", channels="acc", **{"fit.supervised.epochs": 2,
                                                                            "fit.supervised.batch_size": 16})
    assert not res.skipped_recordings and res.channels == "acc"
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["preprocess"]["channels"] == "acc"
    assert meta["encoder"]["config"]["num_input_channels"] == 3
    bundle = load_bundle(out)
    assert bundle.preprocess.channels == "acc" and bundle.preprocess.n_channels == 3
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, (5, 250, 6)).astype(np.float32)
    x[:, :, 2] += 1.0
    x2 = x.copy()
    x2[:, :, 3:] = rng.normal(0, 2.0, (5, 250, 3))
    with torch.no_grad():
        ref = bundle.model(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(ref, bundle.model(torch.from_numpy(x2)).numpy())
    onnx_path, diff = export_bundle(out)  # the runner's input stays [B, W, 6]
    assert diff <= 1e-4
    runner = OnnxRunner(onnx_path)
    np.testing.assert_allclose(runner(x), ref, atol=1e-4)
    np.testing.assert_array_equal(runner(x), runner(x2))

    # control: the default (acc+gyro) bundle on the same data does read the gyroscope
    full = tmp_path / "full"
    assert not train_bundle(root, full, model="patchtst-tiny", **{"fit.supervised.epochs": 1,
                                                                  "fit.supervised.batch_size": 16}).skipped_recordings
    fb = load_bundle(full)
    assert fb.preprocess.channels == "acc+gyro"
    with torch.no_grad():
        assert not np.allclose(fb.model(torch.from_numpy(x)).numpy(), fb.model(torch.from_numpy(x2)).numpy())


@pytest.mark.slow
def test_evaluate_with_channels_acc_on_an_acc_only_dataset(tmp_path, acc_only_reader):
    from crossmodal_har.config import build_config
    from crossmodal_har.evaluate.harness import EvaluateConfig, run_evaluation

    root = make_dataset(tmp_path / "ds", n_subjects=5)
    out = tmp_path / "eval"
    cfg = build_config(EvaluateConfig, flags={
        "dataset": str(root), "model": "convgru-tiny", "preprocess.channels": "acc", "shots": ["all"], "seeds": 1,
        "protocols": ["supervised", "linear-probe"], "fit.supervised.epochs": 1, "fit.finetune.epochs": 1},
        overrides=["fit.supervised.min_steps_per_epoch=2"])
    run_evaluation(cfg, out, progress=False)  # complete: no PartialRunError (exit status 0)
    res = json.loads((out / "results.json").read_text())
    assert res["encoder"]["channels"] == "acc" and res["config"]["preprocess"]["channels"] == "acc"
    assert res["encoder"]["config"]["in_channels"] == 3
    assert len(res["runs"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("config", ["siglip-tiny", "imu-mae-tiny"])
def test_pretrain_channels_acc_trains_a_three_channel_tower(tmp_path, capsys, config):
    from crossmodal_har.models.encoder_file import load_encoder
    from crossmodal_har.train.job import PretrainJob, run_job
    from crossmodal_har.train.synthetic import SyntheticSource, write_synthetic_store

    store = write_synthetic_store(str(tmp_path / "store"), SyntheticSource(subjects=3, windows_per_subject=16))
    run = tmp_path / "run"
    run_job(PretrainJob(config=config, store=store, channels="acc", max_steps=2, overrides=["batch_size=8"]), run,
            show_progress=False)
    enc, meta = load_encoder(run)
    assert meta["preprocess"]["channels"] == "acc" and enc.input_channels == 3
    assert meta["config"]["num_input_channels"] == 3
    assert json.loads((run / "data.json").read_text())["preprocess"]["channels"] == "acc"
    # the encoder brings its channels to evaluation; a contradicting --channels is refused
    src = EncoderSource.from_dir(run)
    assert src.preprocess.channels == "acc"
    capsys.readouterr()
    assert main(["-q", "pretrain", "--config", config, "--store", store, "--out", str(run), "--no-progress",
                 "--resume", "--channels", "acc+gyro", "--max-steps", "3"]) == 2
    assert "keeps its channels" in capsys.readouterr().err
    # resumed without --channels: the run's own (acc), not the store's (acc+gyro)
    run_job(PretrainJob(config=config, store=store, resume=True, max_steps=3), run, show_progress=False)
    assert load_encoder(run)[0].input_channels == 3


def test_channel_source_sets_the_tower_channels_and_refuses_gyroscope_on_acc_only_windows():
    from crossmodal_har.errors import UserError
    from crossmodal_har.train.data import ChannelSource, PairedData

    class Source:
        def __init__(self, channels):
            self.channels = channels

        def load(self):
            return PairedData(train=None, val=None, test=None, video_kind="none", video_dim=None, num_frames=None,
                              preprocess=PreprocessConfig(channels=self.channels), split={},
                              meta={"store": "s"})

    assert ChannelSource(Source("acc+gyro"), "acc").load().preprocess.n_channels == 3
    assert ChannelSource(Source("acc"), "acc").load().preprocess.channels == "acc"
    with pytest.raises(UserError, match="s: accelerometer-only windows"):
        ChannelSource(Source("acc"), "acc+gyro").load()


@pytest.mark.slow
def test_accelerometer_only_csv_dataset_end_to_end(tmp_path, capsys):
    """Recordings with only ``time,acc_x,acc_y,acc_z``: an acc bundle trains on them, a 6-channel
    model is refused in one line naming the file."""
    from crossmodal_har.models.bundle import load_bundle

    root = make_dataset(tmp_path / "ds", acc_only=True)
    assert (root / "recordings" / "rec0.csv").read_text().splitlines()[0] == "time,acc_x,acc_y,acc_z"
    rc = main(["train-classifier", "--dataset", str(root), "--out", str(tmp_path / "full"),
               "--arch", "convgru-tiny", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "rec0.csv" in err and err.endswith("use --channels acc (ingest: --set channels=acc)")
    res = train_bundle(root, tmp_path / "acc", model="convgru-tiny", channels="acc", **{"fit.supervised.epochs": 2})
    assert not res.skipped_recordings
    bundle = load_bundle(tmp_path / "acc")
    assert bundle.preprocess.channels == "acc" and bundle.model.encoder.input_channels == 3
    report = json.loads((tmp_path / "acc" / "bundle.json").read_text())["provenance"]["dataset_report"]
    assert not report["windows_excluded"]


def test_embed_zeroes_gyroscope_dropouts_for_an_acc_model(tmp_path):
    from crossmodal_har.infer.embed import embed_file

    t = np.arange(0, 60, 0.02)
    acc, gyro = smooth_signal(len(t), 50, 3), smooth_signal(len(t), 50, 4)
    gyro[500:1500, 0] = np.nan  # a gyroscope dropout in a 6-channel recording
    pd.DataFrame({"time": t, "acc_x": acc[:, 0], "acc_y": acc[:, 1], "acc_z": acc[:, 2] + 1.0,
                  "gyro_x": gyro[:, 0], "gyro_y": gyro[:, 1], "gyro_z": gyro[:, 2]}).to_csv(tmp_path / "r.csv",
                                                                                          index=False)

    class Probe(torch.nn.Module):
        def forward(self, x):
            return x[:, :, :3].mean(dim=1)

    a = embed_file(tmp_path / "r.csv", tmp_path / "a.npy", Probe(), PreprocessConfig(channels="acc"), Units(), 3)
    six = embed_file(tmp_path / "r.csv", tmp_path / "b.npy", Probe(), PreprocessConfig(), Units(), 3)
    assert a["windows"] > six["windows"]  # the acc model never reads the gyroscope: nothing lost
