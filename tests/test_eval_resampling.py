"""Issue 12, item 1 and 4: subject-level resampling (a new subject split per seed, grouped K-fold,
leave-one-subject-out) and honest validation (k labelled windows per class in k-shot runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crossmodal_har.cli import main
from crossmodal_har.splits import SplitConfig, derive_seed, fold_splits, subject_split

from test_eval_cli import TINY, make_dataset


def _labels(n_subjects=15, per_class=4, n_classes=3):
    subj, y = [], []
    for s in range(n_subjects):
        for c in range(n_classes):
            subj += [f"u{s:02d}"] * per_class
            y += [c] * per_class
    return np.array(subj, dtype=object), np.array(y)


def test_derived_split_seed_depends_on_run_seed_only():
    assert derive_seed(0, 1) == derive_seed(0, 1)
    assert len({derive_seed(0, s) for s in range(20)}) == 20
    assert derive_seed(0, 1) != derive_seed(1, 1)


def test_grouped_kfold_and_loso_cover_every_subject_once_in_test():
    subj, y = _labels()
    folds = fold_splits(subj, 5, SplitConfig(seed=0), y, 3)
    assert len(folds) == 5
    tests = [set(f.subjects["test"]) for f in folds]
    assert sorted(s for t in tests for s in t) == sorted(set(subj))  # each subject in exactly one test fold
    for f in folds:
        parts = [set(f.subjects[k]) for k in ("train", "val", "test")]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert len(f.train) + len(f.val) + len(f.test) == len(y) and len(f.val) > 0
    loso = fold_splits(subj, "loso", SplitConfig(seed=0), y, 3)
    assert len(loso) == 15 and all(len(f.subjects["test"]) == 1 for f in loso)
    from crossmodal_har.errors import UserError
    with pytest.raises(UserError):
        fold_splits(subj, 1, SplitConfig(), y, 3)
    with pytest.raises(UserError):
        fold_splits(subj[:12], 5, SplitConfig(), y[:12], 3)  # 1 subject: cannot fold


TINY_FAST = [a for a in TINY]


def _run(tmp_path, name, *extra, n_subjects=15, protocol="knn,linear-probe"):
    ds = tmp_path / "ds"
    if not ds.exists():
        make_dataset(ds, n_subjects=n_subjects, seconds_per_class=15.0)
    out = tmp_path / name
    rc = main(["evaluate", "--dataset", str(ds), "--encoder", "random", "--protocol", protocol,
               "--shots", "5,all", "--seeds", "3", "--out", str(out)] + TINY_FAST + list(extra))
    assert rc == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_acceptance_default_split_varies_with_seed(tmp_path):
    res = _run(tmp_path, "per_seed")
    assert res["split"]["scheme"] == "per-seed"
    knn_all = next(r for r in res["summary"] if r["protocol"] == "knn" and r["shots"] == "all")
    assert knn_all["balanced_accuracy_std"] > 0  # people, not only draws, vary
    tests = {}
    for r in res["runs"]:
        assert r["test_subjects"] and not set(r["test_subjects"]) & set(r["train_subjects"])
        tests.setdefault(r["seed"], set()).add(tuple(r["test_subjects"]))
    assert all(len(v) == 1 for v in tests.values())  # every protocol/shots of a seed: the same split
    assert len({next(iter(v)) for v in tests.values()}) == 3  # a different split per seed
    # the default validation: at most k labelled windows per class at k shots; all at shots=all
    five = [r for r in res["runs"] if r["shots"] == 5]
    assert all(r["val_mode"] == "k-shot" and max(r["val_shots_per_class"].values()) <= 5 for r in five)
    for r in res["runs"]:  # kNN selects nothing: its labels are the training windows only
        assert r["n_labels"] == r["n_train"] + (0 if r["protocol"] == "knn" else r["n_val"])
    md = (tmp_path / "per_seed" / "report.md").read_text()
    assert "per-seed" in md and "k-shot" in md
    # the old behaviour stays reachable
    fixed = _run(tmp_path, "fixed", "--split", "fixed", "--val", "full", protocol="knn")
    assert fixed["split"]["scheme"] == "fixed"
    assert len({tuple(r["test_subjects"]) for r in fixed["runs"]}) == 1
    assert fixed["split"]["subjects"]["test"] == fixed["runs"][0]["test_subjects"]
    assert all(r["val_mode"] == "full" for r in fixed["runs"])
    assert "full" in (tmp_path / "fixed" / "report.md").read_text()


@pytest.mark.slow
def test_folds_cli(tmp_path):
    res = _run(tmp_path, "k3", "--folds", "3", "--seeds", "1", protocol="knn", n_subjects=6)
    assert res["split"]["scheme"] == "3-fold"
    tests = {r["fold"]: tuple(r["test_subjects"]) for r in res["runs"]}
    assert len(tests) == 3 and len({s for t in tests.values() for s in t}) == 6
    row = next(r for r in res["summary"] if r["shots"] == "all")
    assert row["n_units"] == 3 and row["unit"] == "fold"
    loso = _run(tmp_path, "loso", "--folds", "loso", "--seeds", "1", protocol="knn", n_subjects=6)
    assert loso["split"]["scheme"] == "loso" and len({r["fold"] for r in loso["runs"]}) == 6
    assert main(["evaluate", "--dataset", str(tmp_path / "ds"), "--folds", "x", "--out", str(tmp_path / "o")]) == 2


@pytest.mark.slow
def test_random_baseline_matched_to_a_pretrained_encoder(tmp_path):
    """`--encoder random --match DIR`: the baseline takes DIR's architecture, its config and its
    preprocessing, so `report` sees a matched pair."""
    from crossmodal_har.models.encoder_file import save_encoder
    from crossmodal_har.models.registry import create_model
    from crossmodal_har.signals.types import PreprocessConfig

    ds = make_dataset(tmp_path / "ds", n_subjects=6, seconds_per_class=15.0)
    pre = PreprocessConfig(rate_hz=25.0, window_s=10.0, stride_s=5.0, normalization="zscore")
    save_encoder(create_model("convgru-tiny", window=pre.window_samples), tmp_path / "enc", pre)
    out = tmp_path / "m"
    assert main(["evaluate", "--dataset", str(ds), "--encoder", "random", "--match", str(tmp_path / "enc"),
                 "--protocol", "knn", "--shots", "all", "--seeds", "1", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["encoder"]["pretrained"] is False and res["encoder"]["model"] == "convgru-tiny"
    assert res["encoder"]["preprocess"]["rate_hz"] == 25.0 and res["encoder"]["preprocess"]["normalization"] == "zscore"
    assert res["encoder"]["matched_to"].endswith("enc")
    assert main(["evaluate", "--dataset", str(ds), "--encoder", str(tmp_path / "enc"), "--match", str(tmp_path / "enc"),
                 "--out", str(tmp_path / "x")]) == 2  # --match is for --encoder random only


@pytest.mark.slow
def test_dataset_without_subject_column_is_flagged(tmp_path, capsys):
    """No `subject` column: every recording counts as a person. Warned, and said in the report."""
    import pandas as pd

    ds = make_dataset(tmp_path / "ds", n_subjects=4, seconds_per_class=15.0)
    labels = pd.read_csv(ds / "labels.csv")
    labels.drop(columns=["subject"]).to_csv(ds / "labels.csv", index=False)
    out = tmp_path / "o"
    assert main(["evaluate", "--dataset", str(ds), "--protocol", "knn", "--shots", "all", "--seeds", "1",
                 "--out", str(out)] + TINY) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"]["subjects_are_recordings"] is True
    assert "each recording counts as a person" in capsys.readouterr().err
    assert "each recording counts as a person" in (out / "report.md").read_text()
    assert main(["report", str(out), "--out", str(tmp_path / "r")]) == 0
    assert "each recording counts as a person" in (tmp_path / "r" / "report.md").read_text()
