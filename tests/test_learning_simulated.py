"""Issue 4 acceptance, on the egomotion simulator (not synthetic latents): the real chain
``simulate -> ingest -> pretrain (siglip-tiny) -> zeroshot`` learns to retrieve a held-out subject's
video windows from their IMU windows, and the same run on training pairs shuffled across windows
(``split.shuffle_train_pairs``; evaluation on the true pairs) stays at chance.

Settings (see docs/pretraining.md, "Measured on simulated data"): 12 subjects x 5 min, 32 px frames
at 5 fps, one scene look (``--looks 1``: the random-weight VideoMAE features used here are dominated
by colours otherwise), frozen ``videomae-tiny`` embeddings, IMU in physical units
(``normalization=none``: a per-window z-score removes the gravity direction and the mean rates that
the video shows as horizon position and turning), 64-d heads, 60 epochs, 10 training and 2 test
subjects. About 1.5 min on 2 shared CPU cores.

Measured (simulator seed 1, 236 test windows, chance R@1 1/236): training seeds 0/1/2 give R@1 9x/7x/8x
chance; the shuffled control gives 0-1 hits. The margin depends on the simulated corpus: simulator
seed 2 gave 3-4x (also with 16 subjects), seed 3 4x/8x (training seeds 0/1). So the seed is pinned
here, and a change of recipe, simulator or encoders should be re-checked on several seeds.
"""

import json
import math

import numpy as np
import pytest

from crossmodal_har.cli import main

PRETRAIN = ["--config", "siglip-tiny", "--no-progress", "--set", "embed_dim=64", "--set", "epochs=60",
            "--set", "split.val_fraction=0", "--set", "split.test_fraction=0.2", "--set", "seed=0"]


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core machine this tiny model trains several times faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning-sim")
    sim, store = root / "sim", root / "store"
    assert main(["-q", "simulate", "--out", str(sim), "--subjects", "12", "--minutes", "60", "--seed", "1",
                 "--size", "32", "--fps", "5", "--looks", "1", "--workers", "2"]) == 0
    assert main(["-q", "ingest", "--src", str(sim), "--out", str(store), "--video-mode", "embeddings",
                 "--video-encoder", "videomae-tiny", "--set", "normalization=none", "--no-progress"]) == 0
    return root, store


def _pretrain_and_zeroshot(root, store, name, extra=()):
    run, zs = root / f"run-{name}", root / f"zs-{name}"
    assert main(["-q", "pretrain", "--store", str(store), "--out", str(run), *PRETRAIN, *extra]) == 0
    assert main(["-q", "zeroshot", "--run", str(run), "--store", str(store), "--out", str(zs)]) == 0
    res = json.loads((zs / "results.json").read_text())
    split = json.loads((run / "split.json").read_text())
    assert len(split["test"]) == 2 and res["subjects"] == split["test"]
    assert not set(split["test"]) & set(split["train"])
    return res["retrieval"]["imu_to_video"], json.loads((run / "data.json").read_text())


@pytest.mark.slow
def test_siglip_tiny_retrieves_held_out_simulated_subjects(sim_store, one_thread):
    root, store = sim_store
    m, data = _pretrain_and_zeroshot(root, store, "real")
    assert data["meta"]["shuffle_train_pairs"] is False
    assert m["n"] >= 200  # two held-out subjects of 5 min: ~236 windows, chance R@1 ~ 0.004
    assert m["R@1"] >= 5 * m["chance_R@1"], m
    assert m["MRR"] >= 2.5 * m["chance_MRR"], m


@pytest.mark.slow
def test_same_run_on_shuffled_training_pairs_stays_at_chance(sim_store, one_thread):
    root, store = sim_store
    m, data = _pretrain_and_zeroshot(root, store, "shuffled", ["--set", "split.shuffle_train_pairs=true"])
    assert data["meta"]["shuffle_train_pairs"] is True
    n, p = m["n"], m["chance_R@1"]
    # A model that learnt nothing ranks the true video uniformly: hits ~ Binomial(n, 1/n), mean 1.
    # 3 sigma above chance is 4 hits of ~236 (P(>= 5) ~ 0.4 %), while the real pairs give ~10.
    assert m["R@1"] <= p + 3 * math.sqrt(p * (1 - p) / n), m
    # 1/rank of a uniform rank has mean H_n/n and second moment ~ (pi^2/6)/n: 4 sigma of the mean.
    sd = math.sqrt(max((math.pi ** 2 / 6) / n - m["chance_MRR"] ** 2, 0.0) / n)
    assert m["MRR"] <= m["chance_MRR"] + 4 * sd, m


def test_shuffle_train_pairs_permutes_only_the_training_videos(tmp_path):
    from crossmodal_har.splits import SplitConfig
    from crossmodal_har.train.data import StoreSource
    from crossmodal_har.train.synthetic import SyntheticSource, write_synthetic_store

    store = write_synthetic_store(str(tmp_path / "store"), SyntheticSource(subjects=4, windows_per_subject=8))
    kw = dict(val_fraction=0.25, test_fraction=0.25, seed=3)
    true = StoreSource(store, SplitConfig(**kw)).load()
    shuf = StoreSource(store, SplitConfig(**kw, shuffle_train_pairs=True)).load()
    assert shuf.split == true.split and shuf.meta["shuffle_train_pairs"] and not true.meta["shuffle_train_pairs"]
    n = len(true.train)
    assert len(shuf.train) == n == 16
    perm = shuf.train.perm
    assert sorted(perm.tolist()) == list(range(n)) and not np.any(perm == np.arange(n))  # no pair kept
    for i in range(n):
        a, b = true.train[i], shuf.train[i]
        assert np.array_equal(a["imu"], b["imu"]) and (a["index"], a["label"], a["subject"]) == (
            b["index"], b["label"], b["subject"])
        assert np.array_equal(b["video"], true.train[int(perm[i])]["video"])
        assert not np.array_equal(b["video"], a["video"])
    for part in ("val", "test"):  # evaluation keeps the true pairs
        for i in range(len(getattr(true, part))):
            a, b = getattr(true, part)[i], getattr(shuf, part)[i]
            assert np.array_equal(a["imu"], b["imu"]) and np.array_equal(a["video"], b["video"])
    again = StoreSource(store, SplitConfig(**kw, shuffle_train_pairs=True)).load()
    assert np.array_equal(again.train.perm, perm)  # fixed by the seed: resumes and DDP ranks agree
