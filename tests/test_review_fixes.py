"""Findings of the review of the device, channel and zero-shot changes, each pinned by a test:
zip archives a reader cannot open are one-line errors, a dataset's device clocks follow its tz, an
acc model's gyroscope is zeroed in embed as in training, zero-shot refuses a 6-channel run on an
accelerometer-only store."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError
from crossmodal_har.signals.generic import read_meta
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import Units
from devicefiles_b import smooth_signal, write_e4_zip, write_gt3x


def _unsupported_compression(path: Path) -> None:
    """Rewrite every entry's compression method to 99 (AES; zipfile cannot decompress it)."""
    raw = bytearray(path.read_bytes())
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = raw.find(sig)
        while i >= 0:
            struct.pack_into("<H", raw, i + off, 99)
            i = raw.find(sig, i + 4)
    path.write_bytes(bytes(raw))


def test_unsupported_zip_compression_is_a_one_line_error(tmp_path):
    from crossmodal_har.signals.devices import open_device

    gt3x = tmp_path / "a.gt3x"
    write_gt3x(gt3x, smooth_signal(30 * 30, 30, 1)[:, :3], 30, 1_700_000_000)
    e4 = tmp_path / "b.zip"
    write_e4_zip(e4, np.round(smooth_signal(32 * 20, 32, 2)[:, :3] * 64), 1_700_000_000.0)
    for path in (gt3x, e4):
        _unsupported_compression(path)
        with pytest.raises(DataError) as exc:
            reader = open_device(path)
            for _ in reader.iter_chunks(1000):
                pass
        assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_dataset_tz_is_validated_and_read(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"acc_unit": "g", "gyro_unit": "rad/s", "time_unit": "s",
                                                       "tz": "Europe/London"}))
    assert read_meta(tmp_path).tz == "Europe/London"
    (tmp_path / "dataset.json").write_text(json.dumps({"acc_unit": "g", "gyro_unit": "rad/s", "time_unit": "s",
                                                       "tz": "Mars/Olympus"}))
    with pytest.raises(DataError, match="IANA"):
        read_meta(tmp_path)


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


@pytest.mark.slow
def test_zeroshot_refuses_a_six_channel_run_on_an_acc_only_store(tmp_path, capsys):
    from crossmodal_har.train.job import PretrainJob, run_job
    from crossmodal_har.train.synthetic import SyntheticSource, write_synthetic_store

    store = write_synthetic_store(str(tmp_path / "store"), SyntheticSource(subjects=3, windows_per_subject=16))
    run = tmp_path / "run"
    run_job(PretrainJob(config="siglip-tiny", store=store, max_steps=2, overrides=["batch_size=8"]), run,
            show_progress=False)
    acc = tmp_path / "acc-store"
    shutil.copytree(store, acc)
    meta = json.loads((acc / "store.json").read_text())
    meta["preprocess"]["channels"] = "acc"
    (acc / "store.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["-q", "zeroshot", "--run", str(run), "--store", str(acc), "--out", str(tmp_path / "zs"),
                 "--split", "all"]) == 2
    err = capsys.readouterr().err
    assert "accelerometer-only store" in err and "Traceback" not in err
