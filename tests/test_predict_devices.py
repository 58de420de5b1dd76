"""`predict` on device files and accelerometer-only recordings, through a fake chunk source.

The readers themselves are tested with files written per each format's specification
(tests/helpers/files_axivity_geneactiv.py); here ``iter_chunks`` is replaced by a source of device-like chunks so that
what predict does with ``chunk.device`` and ``chunk.channels`` is tested alone.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import pytest

import crossmodal_har.infer.source as source_mod
from crossmodal_har.cli import main
from crossmodal_har.errors import UserError
from crossmodal_har.infer.calibration import CalibrationConfig
from crossmodal_har.infer.predict import predict_file
from crossmodal_har.signals.devices import READERS, DeviceInfo
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import Units
from helpers.bundles import make_bundle, predict_recording

START = 1_780_000_000.0  # 2026-05-28T20:26:40Z


@dataclass
class FakeChunk:
    t: np.ndarray
    data: np.ndarray
    first_row: int
    line_offset: Optional[int]
    channels: str = "acc+gyro"
    device: Any = None


def fake_source(monkeypatch, *, channels="acc", minutes=6.0, rate=25.0, start=START, calls=None):
    """Replace the inference source's ``iter_chunks`` with one yielding a device recording (gyro NaN if acc-only)."""
    n = int(minutes * 60 * rate)
    rng = np.random.default_rng(0)
    t = (start or 0.0) + np.arange(n) / rate
    x = rng.normal(0, 0.05, (n, 6))
    x[:, 2] += 1.0
    if channels == "acc":
        x[:, 3:] = np.nan
    info = DeviceInfo(format="cwa", path=Path("rec.cwa"), rate_hz=rate, channels=channels,
                      start_time_s=start, start_time_source="file header, local time read in --tz UTC"
                      if start else "none", n_samples=n, device={"model": "AX3", "serial": 42})

    def iter_chunks(path, units, chunk_rows, *, fmt=None, tz="UTC", damaged="skip", sensor=None):
        if calls is not None:
            calls.append({"fmt": fmt, "tz": tz})
        for a in range(0, n, chunk_rows):
            yield FakeChunk(t[a:a + chunk_rows], x[a:a + chunk_rows].copy(), a, None, channels, info)

    monkeypatch.setattr(source_mod, "iter_chunks", iter_chunks)
    monkeypatch.setattr("crossmodal_har.infer.predict.open_device", lambda *a, **k: None)  # no header probe
    return t, x


def zero_gyro_runner(seen):
    def run(w):
        seen.append(w)
        return np.stack([w[:, :, 2].mean(axis=1), np.zeros(len(w))], axis=1).astype(np.float32)
    return run


def test_six_channel_bundle_refuses_acc_only_recording(monkeypatch, tmp_path):
    fake_source(monkeypatch, channels="acc")
    with pytest.raises(UserError) as e:
        predict_file(tmp_path / "rec.cwa", tmp_path / "o.csv", zero_gyro_runner([]), PreprocessConfig(),
                     ["a", "b"], Units(), progress=False)
    msg = str(e.value)
    assert "accelerometer-only recording (no gyroscope)" in msg and "train-classifier --channels acc" in msg
    assert "\n" not in msg and not (tmp_path / "o.csv").exists()


def test_acc_bundle_reads_acc_only_recording_with_zero_gyro(monkeypatch, tmp_path):
    fake_source(monkeypatch, channels="acc")
    seen = []
    s = predict_file(tmp_path / "rec.cwa", tmp_path / "o.csv", zero_gyro_runner(seen),
                     PreprocessConfig(channels="acc"), ["a", "b"], Units(), progress=False)
    w = np.concatenate(seen)
    assert np.isfinite(w).all() and (w[:, :, 3:] == 0).all() and np.abs(w[:, :, 2].mean() - 1) < 0.01
    df = pd.read_csv(tmp_path / "o.csv", keep_default_na=False)
    assert s["windows_ok"] == len(df) > 100 and (df["status"] == "ok").all()
    assert s["channels"] == {"recording": "acc", "model": "acc"}
    # device start time -> absolute timestamps, with where the start time came from
    assert s["time"]["start_source"].startswith("device file header: file header")
    assert s["device"]["device"] == {"model": "AX3", "serial": 42} and s["device"]["format"] == "cwa"
    assert df["timestamp"].iloc[0].startswith("2026-05-28T20:26:40")


def test_cli_format_tz_report_and_start_refused(monkeypatch, tmp_path, capsys):
    calls = []
    fake_source(monkeypatch, channels="acc+gyro", calls=calls)
    bundle = make_bundle(tmp_path / "bundle")
    rec = tmp_path / "rec.bin"
    rec.write_bytes(b"device bytes")  # exists; the fake source reads nothing
    out = tmp_path / "p.csv"
    rc = main(["predict", "--model", str(bundle), "--input", str(rec), "--out", str(out), "--format", "cwa",
               "--tz", "Europe/London", "--report", str(tmp_path / "rep"), "--nonwear", "off"])
    assert rc == 0
    assert calls and all(c == {"fmt": "cwa", "tz": "Europe/London"} for c in calls)
    s = json.loads((tmp_path / "p.summary.json").read_text())
    assert s["device"]["rate_hz"] == 25.0 and "device file header" in s["time"]["start_source"]
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "device file header" in page and "AX3" in page and ">serial<" in page
    rc = main(["predict", "--model", str(bundle), "--input", str(rec), "--out", str(tmp_path / "q.csv"),
               "--format", "cwa", "--start", "2026-01-01T00:00:00Z"])
    err = capsys.readouterr().err
    assert rc == 2 and "has its own start time" in err and "drop --start" in err
    with pytest.raises(SystemExit):  # argparse: not one of the registry's names
        main(["predict", "--model", str(bundle), "--input", str(rec), "--out", str(tmp_path / "q.csv"),
              "--format", "nosuch"])
    assert "invalid choice" in capsys.readouterr().err
    assert set(READERS) >= {"cwa", "geneactiv", "apdm", "gt3x", "empatica"}


def test_device_without_start_time_uses_start_flag(monkeypatch, tmp_path):
    fake_source(monkeypatch, channels="acc+gyro", start=None)
    s = predict_file(tmp_path / "rec.cwa", tmp_path / "o.csv", zero_gyro_runner([]), PreprocessConfig(),
                     ["a", "b"], Units(), progress=False, start_s=START,
                     calibration=CalibrationConfig(mode="off"))
    assert s["time"]["start_source"].startswith("--start") and s["start_time"].startswith("2026-05-28T20:26:40")


def test_real_cwa_files_end_to_end(tmp_path, capsys):
    """Axivity files written per the format's description (tests/helpers/files_axivity_geneactiv.py): an AX6 file is
    predicted with its header's start time; an AX3 file (no gyroscope) is refused by a 6-channel bundle."""
    from helpers.files_axivity_geneactiv import make_signal, write_cwa

    bundle = make_bundle(tmp_path / "bundle")
    n = 40 * 150  # 60 s at 100 Hz, whole AX6 sectors
    sig = make_signal(n, 100.0)
    ax6 = write_cwa(tmp_path / "ax6.cwa", sig[:, :3], START, 100.0, gyro_dps=np.degrees(sig[:, 3:]))
    out = tmp_path / "p.csv"
    res = predict_recording(bundle, ax6, out, **{"nonwear.enabled": False})
    s = json.loads((tmp_path / "p.summary.json").read_text())
    assert res.summary == s
    assert s["device"]["format"] == "cwa" and s["device"]["device"]["model"] == "AX6"
    assert s["channels"]["recording"] == "acc+gyro" and s["windows_ok"] > 10
    assert "device file header" in s["time"]["start_source"] and s["start_time"].startswith("2026-05-28T20:26:4")
    ax3 = write_cwa(tmp_path / "ax3.cwa", make_signal(80 * 75, 100.0)[:, :3], START, 100.0)
    capsys.readouterr()
    rc = main(["predict", "--model", str(bundle), "--input", str(ax3), "--out", str(tmp_path / "q.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "accelerometer-only recording (no gyroscope)" in err[0], err


def test_acc_bundle_predicts_on_an_ax3_file(tmp_path):
    """An accelerometer-only bundle (preprocess.channels = acc) predicts on an AX3 .cwa file (no
    gyroscope), with torch and with the ONNX export too."""
    import torch

    from helpers.files_axivity_geneactiv import make_signal, write_cwa

    from crossmodal_har.evaluate.protocols import EncoderSource
    from crossmodal_har.infer.export import export_bundle
    from crossmodal_har.models.bundle import save_bundle
    from crossmodal_har.models.classifier import WindowClassifier

    torch.manual_seed(0)
    pre = PreprocessConfig(channels="acc", normalization="none")
    src = EncoderSource.random("patchtst-tiny", pre)
    enc = src.build(pretrained=False)
    head = torch.nn.Linear(enc.embed_dim, 2)
    b = tmp_path / "acc_bundle"
    save_bundle(b, WindowClassifier(enc, head, "none"), encoder_name=src.model_name, encoder_config=enc.model_cfg,
                head_spec={"type": "linear", "in_features": enc.embed_dim, "num_classes": 2}, preprocess=pre,
                class_names=["still", "move"])
    export_bundle(b)
    ax3 = write_cwa(tmp_path / "ax3.cwa", make_signal(80 * 75, 100.0)[:, :3], START, 100.0)
    outs = {}
    for rt in ("torch", "onnx"):
        out = tmp_path / f"p_{rt}.csv"
        res = predict_recording(b, ax3, out, runtime=rt, **{"nonwear.enabled": False})
        s = json.loads((tmp_path / f"p_{rt}.summary.json").read_text())
        assert res.summary == s and s["runtime"] == rt
        assert s["channels"] == {"recording": "acc", "model": "acc"} and s["device"]["device"]["model"] == "AX3"
        outs[rt] = pd.read_csv(out, keep_default_na=False)
        assert s["windows_ok"] == len(outs[rt]) > 10 and (outs[rt]["status"] == "ok").all()
    assert (outs["torch"]["label"] == outs["onnx"]["label"]).all()
