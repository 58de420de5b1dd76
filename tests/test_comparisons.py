"""Issue 12, items 2, 3, 5: paired comparisons against a reference (mean difference, Student-t CI,
sign-flip permutation p-value) and safe merging (no run counted twice, no unmatched rows mixed)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import scipy.stats

from crossmodal_har.cli import main
from crossmodal_har.evaluate.comparisons import compute_comparisons, paired_test

SUBJECTS = [f"p{i:02d}" for i in range(15)]


# ------------------------------------------------------------------------------------------- maths
def test_paired_test_hand_computed():
    r = paired_test([0.1, 0.2, 0.3])
    assert r["n_pairs"] == 3 and r["mean_diff"] == pytest.approx(0.2)
    half = scipy.stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert r["ci_low"] == pytest.approx(0.2 - half) and r["ci_high"] == pytest.approx(0.2 + half)
    # exact sign-flip: of the 8 sign patterns only +++ and --- reach |mean| >= 0.2
    assert r["p_value"] == pytest.approx(2 / 8) and r["p_method"] == "exact"
    one = paired_test([0.4])
    assert one["ci_low"] is None and one["p_value"] == pytest.approx(1.0)
    big = paired_test(np.full(20, 0.1) + np.linspace(-0.01, 0.01, 20))
    assert big["p_method"] == "monte-carlo" and big["p_value"] < 0.001
    assert paired_test(np.linspace(-1, 1, 20))["p_value"] == paired_test(np.linspace(-1, 1, 20))["p_value"]


def test_monte_carlo_p_agrees_with_exact_enumeration():
    rng = np.random.default_rng(5)
    for _ in range(5):
        d = rng.normal(0.1, 0.3, 12)
        exact = paired_test(d)["p_value"]
        mc = paired_test(d, exact_max=0, n_resamples=20000)["p_value"]
        assert abs(exact - mc) < 0.02


@pytest.mark.parametrize("n_pairs", [5, 10, 20])
def test_calibration_identical_methods_with_independent_noise(n_pairs):
    """Two identical methods: a shared per-split effect (which people are tested) and independent
    noise each. The paired 95 % CI must cover the true difference 0 in ~95 % of repetitions and the
    p-value must be roughly uniform."""
    rng = np.random.default_rng(12)
    reps = 400
    covered, pvals = 0, []
    for _ in range(reps):
        split_effect = rng.normal(0.8, 0.05, n_pairs)
        a = split_effect + rng.normal(0, 0.02, n_pairs)
        b = split_effect + rng.normal(0, 0.02, n_pairs)
        r = paired_test(a - b, n_resamples=2000)
        covered += r["ci_low"] <= 0.0 <= r["ci_high"]
        pvals.append(r["p_value"])
    assert 0.92 <= covered / reps <= 0.98
    pvals = np.array(pvals)
    if n_pairs < 10:
        # 5 pairs: the exact p-values are multiples of 2/32, the smallest 0.0625 (never <= 0.05);
        # P(p <= 0.0625) is 0.0625 under the null
        assert pvals.min() == pytest.approx(0.0625)
        assert 0.03 <= np.mean(pvals <= 0.0625 + 1e-9) <= 0.10
        return
    assert 0.02 <= np.mean(pvals <= 0.05) <= 0.09  # nominal 5 % false positives
    assert scipy.stats.kstest(pvals, "uniform").pvalue > 0.01
    deciles = np.histogram(pvals, bins=10, range=(0, 1))[0]
    assert deciles.min() >= 20 and deciles.max() <= 65


# --------------------------------------------------------------------------------- fake evaluations
def _runs(method, offset, seeds=3, protocols=("linear-probe",), shots=(5, "all"), noise_seed=0):
    rng = np.random.default_rng(noise_seed)
    runs = []
    for p in protocols:
        for k in shots:
            for s in range(seeds):
                test = SUBJECTS[s * 3:(s + 1) * 3]
                ba = float(np.clip(0.6 + offset + 0.05 * s + rng.normal(0, 0.01), 0, 1))
                runs.append({"method": method, "protocol": p, "shots": k, "seed": s, "fold": None,
                             "split_id": f"seed{s}", "test_subjects": test, "n_train": 10, "n_val": 10,
                             "n_labels": 20, "val_mode": "k-shot",
                             "test": {"accuracy": ba, "balanced_accuracy": ba, "macro_f1": ba,
                                      "per_class_recall": [ba, ba], "confusion_matrix": [[3, 1], [1, 3]]}})
    return runs


def _write(path, method, offset, *, model="patchtst-tiny", normalization="none", scheme="per-seed", **kw):
    from crossmodal_har.evaluate.summaries import summarize_runs

    runs = _runs(method, offset, **kw)
    res = {"format_version": 1, "kind": "few-shot-evaluation", "complete": True, "method": method,
           "dataset": {"spec": "toy", "name": "toy", "n_windows": 100, "n_subjects": 15, "class_names": ["a", "b"]},
           "encoder": {"encoder": f"runs/{method}", "model": model, "pretrained": method != "random",
                       "preprocess": {"rate_hz": 50.0, "window_s": 5.0, "stride_s": 2.5,
                                      "normalization": normalization, "median_kernel": 5}},
           "split": {"scheme": scheme, "seed": 0, "val_fraction": 0.15, "test_fraction": 0.2, "folds": None,
                     "val": "k-shot"},
           "seeds": [0, 1, 2], "runs": runs, "summary": summarize_runs(runs)}
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(res))
    return path


def test_compute_comparisons_pairs_by_seed():
    runs = _runs("siglip", 0.1) + _runs("random", 0.0, noise_seed=1)
    comps, ref = compute_comparisons(runs)
    assert ref == "random"
    assert {(c["method"], c["reference"], c["protocol"], c["shots"]) for c in comps} == {
        ("siglip", "random", "linear-probe", 5), ("siglip", "random", "linear-probe", "all")}
    for c in comps:
        assert c["n_pairs"] == 3 and c["ci_low"] <= c["mean_diff"] <= c["ci_high"]
        assert c["mean_diff"] == pytest.approx(0.1, abs=0.03)
    # a reference that has only the supervised protocol is compared at the same shots
    sup = _runs("supervised", 0.05, protocols=("supervised",))
    comps2, ref2 = compute_comparisons(_runs("siglip", 0.1) + sup)
    assert ref2 == "supervised" and all(c["reference_protocol"] == "supervised" for c in comps2) and comps2
    # one evaluation with several protocols: each against its own supervised protocol
    comps3, _ = compute_comparisons(_runs("random", 0.0, protocols=("supervised", "knn")))
    assert {(c["protocol"], c["reference_protocol"]) for c in comps3} == {("knn", "supervised")}
    # pairs whose test subjects differ are not pairs
    other = _runs("random", 0.0)
    for r in other:
        r["test_subjects"] = ["zz"]
    comps4, _ = compute_comparisons(_runs("siglip", 0.1) + other)
    assert all(c["n_pairs"] == 0 for c in comps4) or not comps4
    with pytest.raises(Exception, match="nope"):
        compute_comparisons(runs, reference="nope")


# ------------------------------------------------------------------------------------------- report
def _one_line_error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    return err


def test_report_refuses_the_same_results_twice(tmp_path, capsys):
    a = _write(tmp_path / "a", "siglip", 0.1)
    before = (a / "results.json").read_bytes()
    assert main(["report", str(a), str(a), "--out", str(tmp_path / "o")]) == 2
    err = _one_line_error(capsys)
    assert "results.json" in err and "twice" in err or "already" in err
    shutil.copytree(a, tmp_path / "a_copy")
    assert main(["report", str(a), str(tmp_path / "a_copy"), "--out", str(tmp_path / "o")]) == 2
    err = _one_line_error(capsys)
    assert str(a / "results.json") in err and str(tmp_path / "a_copy" / "results.json") in err
    assert not (tmp_path / "o" / "results.json").exists()
    assert (a / "results.json").read_bytes() == before


def test_report_a_b_writes_comparisons_table_and_plot(tmp_path):
    a = _write(tmp_path / "a", "siglip", 0.1)
    b = _write(tmp_path / "b", "random", 0.0, noise_seed=1)
    out = tmp_path / "o"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    merged = json.loads((out / "results.json").read_text())
    comps = merged["comparisons"]
    assert len(comps) == 2
    keys = {"method", "reference", "protocol", "shots", "n_pairs", "mean_diff", "ci_low", "ci_high", "p_value"}
    for c in comps:
        assert keys <= set(c) and c["n_pairs"] == 3 and c["ci_low"] <= c["mean_diff"] <= c["ci_high"]
        assert c["reference"] == "random" and 0 < c["p_value"] <= 1
    md = (out / "report.md").read_text()
    assert "Paired differences" in md and "| siglip | random | linear-probe | 5 | 3 |" in md
    assert (out / "comparisons.png").read_bytes()[:4] == b"\x89PNG"
    assert all(r["n_seeds"] == 3 for r in merged["summary"])
    # --reference picks another reference
    assert main(["report", str(a), str(b), "--reference", "siglip", "--out", str(tmp_path / "o2")]) == 0
    comps2 = json.loads((tmp_path / "o2" / "results.json").read_text())["comparisons"]
    assert {c["method"] for c in comps2} == {"random"}
    assert all(c["mean_diff"] < 0 for c in comps2)
    assert main(["report", str(a), str(b), "--reference", "nope", "--out", str(tmp_path / "o3")]) == 2


@pytest.mark.parametrize("what,kw", [("architecture", {"model": "convgru"}),
                                     ("preprocessing", {"normalization": "zscore"}),
                                     ("split scheme", {"scheme": "fixed"})])
def test_report_refuses_unmatched_rows_unless_allowed(tmp_path, capsys, what, kw):
    a = _write(tmp_path / "a", "siglip", 0.1)
    b = _write(tmp_path / "b", "random", 0.0, **kw)
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "o")]) == 2
    err = _one_line_error(capsys)
    assert what in err and str(a / "results.json") in err and str(b / "results.json") in err
    assert main(["report", str(a), str(b), "--allow-mismatch", "--out", str(tmp_path / "o")]) == 0
    merged = json.loads((tmp_path / "o" / "results.json").read_text())
    flagged = {r["method"] for r in merged["summary"] if r.get("mismatch")}
    assert flagged == {"siglip"}  # the rows that differ from the reference (random)
    md = (tmp_path / "o" / "report.md").read_text()
    assert "†" in md and what in md


def test_report_names_the_file_and_missing_key(tmp_path, capsys):
    a = _write(tmp_path / "a", "siglip", 0.1)
    data = json.loads((a / "results.json").read_text())
    del data["runs"][2]["seed"]
    (a / "results.json").write_text(json.dumps(data))
    assert main(["report", str(a), "--out", str(tmp_path / "o")]) == 2
    err = _one_line_error(capsys)
    assert str(a / "results.json") in err and "'seed'" in err
    del data["runs"][1]["test"]["balanced_accuracy"]
    data["runs"][2]["seed"] = 2
    (a / "results.json").write_text(json.dumps(data))
    assert main(["report", str(a), "--out", str(tmp_path / "o")]) == 2
    err = _one_line_error(capsys)
    assert "balanced_accuracy" in err and "results.json" in err


@pytest.mark.slow
def test_evaluate_two_encoders_then_report_pairs_by_seed(tmp_path, capsys):
    """The acceptance path: two encoders evaluated with the same seeds on a 15-subject generic dataset,
    merged by `report`: n_pairs equals the seeds, and the same directory twice is refused."""
    import torch

    from crossmodal_har.models.encoder_file import save_encoder
    from crossmodal_har.models.registry import create_model
    from crossmodal_har.signals.types import PreprocessConfig
    from test_eval_cli import TINY, make_dataset

    ds = make_dataset(tmp_path / "ds", n_subjects=15, seconds_per_class=15.0)
    pre = PreprocessConfig(normalization="none")
    torch.manual_seed(1)
    save_encoder(create_model("convgru-tiny", window=pre.window_samples), tmp_path / "enc", pre,
                 extra={"method": "toy-siglip"})
    common = ["--dataset", str(ds), "--protocol", "knn,linear-probe", "--shots", "5,all", "--seeds", "3"] + TINY
    assert main(["evaluate", "--encoder", "random", "--out", str(tmp_path / "A")] + common) == 0
    assert main(["evaluate", "--encoder", str(tmp_path / "enc"), "--out", str(tmp_path / "B")] + common) == 0
    assert main(["report", str(tmp_path / "A"), str(tmp_path / "B"), "--out", str(tmp_path / "R")]) == 0
    merged = json.loads((tmp_path / "R" / "results.json").read_text())
    comps = merged["comparisons"]
    assert len(comps) == 4 and {c["reference"] for c in comps} == {"random"}
    for c in comps:
        assert c["method"] == "toy-siglip" and c["n_pairs"] == 3 and c["ci_low"] <= c["mean_diff"] <= c["ci_high"]
    # the pretrained encoder's kNN at all shots varies over seeds: new test people each time
    b = json.loads((tmp_path / "B" / "results.json").read_text())
    assert next(r for r in b["summary"] if r["protocol"] == "knn" and r["shots"] == "all")["balanced_accuracy_std"] > 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "A"), str(tmp_path / "A"), "--out", str(tmp_path / "R2")]) == 2
    assert "Traceback" not in capsys.readouterr().err
