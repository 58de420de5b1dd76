"""End to end through the CLI on window stores: pretrain learns real pairs, not shuffled ones;
every method trains on a store and exports an encoder that ``load_encoder`` rebuilds."""

import json

import numpy as np
import pytest

from crossmodal_har.cli import main
from crossmodal_har.evaluate.zeroshot import run_zeroshot
from crossmodal_har.train.job import PretrainJob, run_job
from crossmodal_har.train.synthetic import SyntheticSource, write_synthetic_store


def _zeroshot(tmp_path, name, shuffle):
    store = write_synthetic_store(str(tmp_path / f"store-{name}"),
                                  SyntheticSource(subjects=6, windows_per_subject=64, shuffle_pairs=shuffle))
    run = tmp_path / f"run-{name}"
    run_job(PretrainJob(config="siglip-tiny", store=store, overrides=["epochs=10"]), run, show_progress=False)
    run_zeroshot(run, store, tmp_path / f"zs-{name}")
    res = json.loads((tmp_path / f"zs-{name}" / "results.json").read_text())
    split = json.loads((run / "split.json").read_text())
    assert res["subjects"] == split["test"] and not set(split["test"]) & set(split["train"])
    return res


@pytest.mark.slow
def test_siglip_learns_real_pairs_and_not_shuffled_ones(tmp_path):
    res = _zeroshot(tmp_path, "real", shuffle=False)
    real = res["retrieval"]["imu_to_video"]
    assert real["R@1"] >= 5 * real["chance_R@1"], real
    c = res["classification"]  # prototypes from other subjects' videos; no IMU label used
    assert c["balanced_accuracy"] >= 2 * c["chance_balanced_accuracy"], c
    ctrl = _zeroshot(tmp_path, "shuffled", shuffle=True)
    m = ctrl["retrieval"]["imu_to_video"]
    n, p = m["n"], m["chance_R@1"]
    noise = 3 * np.sqrt(p * (1 - p) / n)
    assert m["R@1"] <= p + noise, m
    assert abs(m["MRR"] - m["chance_MRR"]) <= 0.08, m
    c = ctrl["classification"]
    assert c["balanced_accuracy"] <= c["chance_balanced_accuracy"] + 0.25  # 64 windows, 4 classes


@pytest.mark.parametrize("config,kind", [("clip-tiny", "embeddings"), ("imu-mae-tiny", "embeddings"),
                                         ("imu2clip-tiny", "frames"), ("siglip-tiny", "frames")])
def test_every_method_trains_on_a_store_and_exports_its_encoder(tmp_path, config, kind):
    from crossmodal_har.models.encoder_file import load_encoder

    store = write_synthetic_store(str(tmp_path / "store"), SyntheticSource(
        subjects=3, windows_per_subject=16, video_kind=kind, num_frames=2))
    run = tmp_path / "run"
    run_job(PretrainJob(config=config, store=store, max_steps=2, overrides=["batch_size=8"]), run, show_progress=False)
    enc, meta = load_encoder(run)
    assert meta["preprocess"]["window_s"] == 5.0 and meta["extra"]["method"] == config.replace("-tiny", "")
    for f in ("config.yaml", "metrics.csv", "checkpoint.pt", "model.safetensors", "model.json", "split.json"):
        assert (run / f).is_file(), f
    assert any((run / "tensorboard").iterdir())
    if config != "imu-mae-tiny":
        run_zeroshot(run, store, tmp_path / "zs", split="all")
    else:
        assert main(["-q", "zeroshot", "--run", str(run), "--store", store, "--out", str(tmp_path / "zs")]) == 2


def test_trainable_video_on_an_embeddings_store_is_a_clean_error(tmp_path, capsys):
    store = write_synthetic_store(str(tmp_path / "store"), SyntheticSource(subjects=3, windows_per_subject=16))
    code = main(["-q", "pretrain", "--config", "siglip-tiny", "--store", store, "--out", str(tmp_path / "r"),
                 "--set", "video_mode=trainable", "--max-steps", "1"])
    assert code == 2 and "frames store" in capsys.readouterr().err
