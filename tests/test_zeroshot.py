"""Zero-shot metrics on hand-made embeddings: perfect, random, collapsed, and the class prototypes."""

import json
import shutil

import numpy as np
import pytest

from crossmodal_har.cli import main
from crossmodal_har.evaluate.metrics import classification_metrics
from crossmodal_har.evaluate.zeroshot import zeroshot_classify, zeroshot_metrics
from crossmodal_har.train.retrieval import retrieval_metrics, true_match_ranks


def test_perfect_alignment_gives_r1_of_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 16))
    m = retrieval_metrics(x, 3.0 * x)  # scale does not matter (cosine)
    assert m["R@1"] == 1.0 and m["MRR"] == 1.0 and m["R@10"] == 1.0
    assert m["chance_R@1"] == pytest.approx(1 / 50) and m["chance_R@10"] == pytest.approx(10 / 50)


def test_random_embeddings_are_near_chance():
    rng = np.random.default_rng(1)
    n = 400
    m = retrieval_metrics(rng.normal(size=(n, 32)), rng.normal(size=(n, 32)))
    for k in (1, 3, 10):
        chance = k / n
        assert abs(m[f"R@{k}"] - chance) <= 4 * np.sqrt(chance * (1 - chance) / n) + 1e-9
    assert abs(m["MRR"] - m["chance_MRR"]) < 0.03


def test_collapsed_embeddings_are_not_rewarded():
    x = np.ones((20, 4))
    ranks = true_match_ranks(x, x)
    assert (ranks == 20).all()
    assert retrieval_metrics(x, x)["R@1"] == 0.0


def test_known_ranks():
    q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    g = np.array([[1.0, 0.1], [1.0, 0.0], [1.0, 1.0]])
    # query 0: g1 (cos 1) > g0 > g2 -> rank 2; query 1: g2 > g0 > g1 -> rank 3; query 2: rank 1
    assert true_match_ranks(q, g).tolist() == [2, 3, 1]


def test_zero_shot_classification_uses_other_subjects_only():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(3, 8)) * 3
    labels = np.repeat([0, 1, 2], 20)
    subjects = np.tile(["a", "b"], 30)
    video = centres[labels] + 0.3 * rng.normal(size=(60, 8))
    imu = centres[labels] + 0.3 * rng.normal(size=(60, 8))
    pred = zeroshot_classify(imu, video, labels, subjects)
    assert classification_metrics(labels, pred)["balanced_accuracy"] == 1.0
    # A class seen only in the query's own subject has no prototype: it cannot be predicted.
    only_a = labels.copy()
    only_a[(labels == 2) & (subjects == "b")] = -1
    pred2 = zeroshot_classify(imu, video, only_a, subjects)
    assert not np.any(pred2[(subjects == "a")] == 2)


def test_zeroshot_metrics_layout():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 8))
    res = zeroshot_metrics({"imu": x, "video": x, "label": np.arange(30) % 3,
                            "subject": np.array(["a", "b", "c"] * 10)})
    assert set(res["retrieval"]) == {"imu_to_video", "video_to_imu"}
    for key in ("R@1", "R@3", "R@10", "MRR", "chance_R@1"):
        assert key in res["retrieval"]["imu_to_video"]
    assert {"balanced_accuracy", "macro_f1"} <= set(res["classification"])


def test_per_class_retrieval_hand_computed():
    """3 classes, 2 subjects; a query's prototypes come from the other subject only.
    Subject b's prototypes: c0 (1,0), c1 (0,1), c2 (-1,0); subject a's: c0 (1,0), c1 (0,1), c2 (0,-1).
      a, class 0, imu (1, .2): c0 .98 > c1 .20 > c2 -.98          -> rank 1
      a, class 1, imu (1, .5): c0 .89 > c1 .45 > c2 -.89          -> rank 2
      a, class 2, imu (0, 1):  c1 1 > c0 0 = c2 0 (tie: against)  -> rank 3
      b, class 0, imu (0, -1): c2 1 > c0 0 > c1 -1                -> rank 2
    R@1 = 1/4, R@3 = 1, MRR = (1 + 1/2 + 1/3 + 1/2) / 4; chance 1/3, 1, (1 + 1/2 + 1/3) / 3."""
    subject = np.array(["a", "a", "a", "b", "b", "b"])
    video = np.array([[1, 0], [0, 1], [0, -1], [1, 0], [0, 1], [-1, 0]], float)
    imu = np.array([[1, 0.2], [1, 0.5], [0, 1], [0, -1], [0.3, 0.3], [0.5, -0.1]])
    labels = np.array([0, 1, 2, 0, -1, -1])  # the last two windows are unlabelled: not queries
    protos = {"video": video, "label": np.array([0, 1, 2, 0, 1, 2]), "subject": subject}
    res = zeroshot_metrics({"imu": imu, "video": video, "label": labels, "subject": subject}, protos)
    cr = res["class_retrieval"]
    assert cr["R@1"] == pytest.approx(0.25) and cr["R@3"] == pytest.approx(1.0)
    assert cr["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    assert cr["chance_R@1"] == pytest.approx(1 / 3) and cr["chance_R@3"] == pytest.approx(1.0)
    assert cr["chance_MRR"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert cr["classes"] == 3 and cr["windows"] == 4
    # the window retrieval is another measure: 6 windows, chance 1/6
    assert res["retrieval"]["imu_to_video"]["chance_R@1"] == pytest.approx(1 / 6)
    # a class with no prototype from another subject: that window is a miss (reciprocal rank 0)
    lone = protos["label"].copy()
    lone[5] = -1  # class 2 now only has subject a's window: a's class-2 query has no prototype
    cr2 = zeroshot_metrics({"imu": imu, "video": video, "label": labels, "subject": subject},
                           {**protos, "label": lone})["class_retrieval"]
    assert cr2["MRR"] < cr["MRR"] and "no prototype" in cr2["note"]


def test_per_class_retrieval_in_results_file_and_tables(tmp_path):
    import json

    from crossmodal_har.evaluate.results import ZeroshotResult, parse_zeroshot, write_results
    from crossmodal_har.evaluate.tables import render_table4

    win = {"R@1": 0.1, "R@3": 0.2, "R@10": 0.4, "MRR": 0.2, "chance_R@1": 0.01, "chance_R@3": 0.03,
           "chance_R@10": 0.1, "chance_MRR": 0.05}
    cr = {"R@1": 0.55, "R@3": 0.9, "MRR": 0.72, "chance_R@1": 0.2, "chance_R@3": 0.6, "chance_MRR": 0.4567,
          "classes": 5, "windows": 100}
    rows = [ZeroshotResult(retrieval={"imu_to_video": win}, class_retrieval=cr, method=m, pretrain_seed=s,
                           store="S", split="test", windows=100) for m, s in (("siglip", 0), ("clip", 0))]
    path = write_results(rows[0], tmp_path / "results.json")
    back = parse_zeroshot(json.loads(path.read_text()), path)
    assert back.class_retrieval == cr
    text = "\n".join(render_table4(rows))
    assert "| siglip | 5 | 100 | 0.550 | 0.900 | 0.720 |" in text
    assert "| *chance* | | | 0.200 | 0.600 | 0.457 |" in text
    seeds = rows + [ZeroshotResult(retrieval={"imu_to_video": win}, class_retrieval={**cr, "R@1": 0.65},
                                   method="siglip", pretrain_seed=1, store="S", split="test", windows=100)]
    text = "\n".join(render_table4(seeds))
    assert "| siglip | 2 | 5 | 0.600 ± 0.071 (0.550 – 0.650) |" in text
    with pytest.raises(ValueError, match="class_retrieval"):
        ZeroshotResult(retrieval={"imu_to_video": win}, class_retrieval={"R@1": "x"}).validate()


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
