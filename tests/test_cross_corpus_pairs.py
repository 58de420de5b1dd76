"""The cross-corpus pairs study (issue 24, item 5): its descriptors and correlations on fixture data, and a
tiny study end to end (resumable, per-window ranks agreeing with ``zeroshot``'s)."""

import json

import pytest

from crossmodal_har.cli import main
from crossmodal_har.crosscorpus import descriptors as desc
from crossmodal_har.crosscorpus.study import PairsPlan, PairsResult, run_pairs_study
from crossmodal_har.errors import UserError
from crossmodal_har.saved import read_saved


def test_spearman_matches_the_rank_difference_formula_and_skips_missing():
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 4.0, 3.0, 5.0]
    # no ties: rho = 1 - 6 sum(d^2) / (n (n^2 - 1)), d = [-1, 1, -1, 1, 0]
    assert desc.spearman(x, y)["rho"] == pytest.approx(1 - 6 * 4 / (5 * 24))
    r = desc.spearman(x + [None, 9.0], y + [7.0, None])  # a pair with a missing side is left out
    assert r["n"] == 5 and r["rho"] == pytest.approx(0.8)
    assert desc.spearman([1, 2, 3], [4, 4, 4])["rho"] is None  # constant: no correlation to speak of
    assert desc.spearman([1, 2], [1, 2])["rho"] is None  # fewer than 3 pairs
    rows = [{"score": s, "up": s * 2, "down": -s} for s in (3.0, 1.0, 2.0)]
    c = {e["descriptor"]: e["rho"] for e in desc.correlations(rows, "score", ["up", "down"])}
    assert c == {"up": pytest.approx(1.0), "down": pytest.approx(-1.0)}


def test_activity_mix_distance():
    p = desc.activity_shares({"walk": 30.0, "sit": 10.0})
    assert p == {"sit": 0.25, "walk": 0.75}
    assert desc.tv_distance(p, p) == 0.0
    assert desc.tv_distance({"walk": 1.0}, {"sit": 1.0}) == 1.0
    assert desc.tv_distance(p, {"walk": 0.5, "lie": 0.5}) == pytest.approx(0.5 * (0.25 + 0.25 + 0.5))
    assert [desc.activity_group(a) for a in ("stairs_up", "lie", "turn")] == ["locomotion", "still", "other"]


def test_scene_looks_are_shared_within_a_corpus_seed_only():
    same = desc.look_descriptors(7, 16, 7, [0, 3, 3, 15])
    assert same["look_identical"] == 3 and same["looks_used"] == 3 and same["look_distance"] == 0.0
    other = desc.look_descriptors(7, 16, 8, [0, 3, 15])
    assert other["look_identical"] == 0 and other["look_distance"] > 0.05
    # a bigger pretraining pool can only bring the nearest look closer
    assert desc.look_descriptors(7, 64, 8, [0, 3, 15])["look_distance"] <= other["look_distance"]


def test_pair_descriptors_from_corpus_descriptors():
    pre = {"seed": 1, "looks": 4, "looks_used": [0, 1], "activity_shares": {"walk": 0.5, "sit": 0.5},
           "locomotion_share": 0.5, "gyro_mean": 0.2, "gyro_still": 0.1, "windows": 400}
    tgt = {"seed": 2, "looks": 4, "looks_used": [2], "activity_shares": {"walk": 0.8, "sit": 0.2},
           "locomotion_share": 0.8, "gyro_mean": 0.3, "gyro_still": 0.05, "windows": 200}
    d = desc.pair_descriptors(pre, tgt)
    assert d["activity_tv"] == pytest.approx(0.3) and d["locomotion_diff"] == pytest.approx(0.3)
    assert d["gyro_ratio"] == pytest.approx(1.5) and d["chance_R@1"] == pytest.approx(1 / 200)
    assert d["look_identical"] == 0 and d["target_windows"] == 200


@pytest.mark.slow
def test_tiny_study_end_to_end_resumes_and_agrees_with_zeroshot(tmp_path):
    plan = PairsPlan(pretrain_seeds=[101], target_seeds=[102, 202], sides=["diff"], pretrain_subjects=3,
                     pretrain_minutes=5, target_subjects=2, target_minutes=2, steps=20, workers=1)
    calls = []

    def runner(argv):
        calls.append(argv[0])
        return main(["-q", *argv])

    res = run_pairs_study(tmp_path, plan, runner=runner)
    assert calls.count("zeroshot") == 3 and calls.count("pretrain") == 1 and calls.count("simulate") == 3
    assert len(res.pairs) == 2 and {p["tgt"] for p in res.pairs} == {102, 202}
    for p in res.pairs:
        cell = tmp_path / "zeroshot" / "diff" / "pre101-train0" / f"tgt{p['tgt']}"
        zs = json.loads((cell / "results.json").read_text())["retrieval"]["imu_to_video"]
        bd = json.loads((cell / "breakdown.json").read_text())
        # the breakdown's ranks are the zero-shot retrieval's own: same R@1 and MRR over the same windows
        assert bd["n"] == zs["n"] == p["target_windows"]
        assert bd["R@1"] == pytest.approx(zs["R@1"]) and bd["MRR"] == pytest.approx(zs["MRR"])
        assert sum(g["windows"] for g in bd["groups"].values()) == bd["n"]
        assert p["R@1/chance"] == pytest.approx(zs["R@1"] / zs["chance_R@1"])
        assert p["same_R@1/chance"] is not None  # the run on its own corpus's held-out subjects
        assert p["look_identical"] == 0 and 0 <= p["activity_tv"] <= 1 and p["target_gyro"] > 0
    assert read_saved(PairsResult, tmp_path / "results.json").pairs == res.pairs
    assert "| diff | 101 → 102 |" in (tmp_path / "report.md").read_text()
    calls.clear()
    run_pairs_study(tmp_path, plan, runner=runner)  # resumed: every cell is done
    assert calls == []
    with pytest.raises(UserError, match="planned differently"):
        run_pairs_study(tmp_path, PairsPlan(**{**plan.__dict__, "steps": 30}), runner=runner)
    with pytest.raises(UserError, match="both pretraining and target"):
        run_pairs_study(tmp_path / "x", PairsPlan(pretrain_seeds=[1], target_seeds=[1]), runner=runner)
