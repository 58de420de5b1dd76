"""Zero-shot metrics on hand-made embeddings: perfect, random, collapsed, and the class prototypes."""

import numpy as np
import pytest

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
