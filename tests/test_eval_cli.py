"""`crossmodal-har evaluate` end to end on a small synthetic generic dataset from a 'different device'
(100 Hz, m/s^2, deg/s, milliseconds, gravity removed), the results.json schema, and merging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossmodal_har.cli import main

CLASSES = ("still", "walk", "jog", "turn")


def make_dataset(root: Path, n_subjects: int = 6, rate_hz: float = 100.0, seconds_per_class: float = 20.0,
                 bad_recording: bool = False, seed: int = 0) -> Path:
    """One recording per subject, 4 activities in a row; m/s^2 without gravity, deg/s, ms."""
    import pandas as pd

    from crossmodal_har.signals.generic import write_generic_dataset
    from crossmodal_har.signals.units import Units

    rng = np.random.default_rng(seed)
    recs, labels = [], []
    for s in range(n_subjects):
        gain = rng.uniform(0.8, 1.2)
        n = int(seconds_per_class * rate_hz)
        t_local = np.arange(n) / rate_hz
        chunks = []
        for c, name in enumerate(CLASSES):
            x = rng.normal(0, 0.05, (n, 6))
            if name == "walk":
                x[:, 0] += gain * 3.0 * np.sin(2 * np.pi * 1.8 * t_local)
                x[:, 4] += gain * 40 * np.sin(2 * np.pi * 0.9 * t_local)
            elif name == "jog":
                x[:, 0] += gain * 8.0 * np.sin(2 * np.pi * 2.8 * t_local)
                x[:, 2] += gain * 5.0 * np.cos(2 * np.pi * 2.8 * t_local)
            elif name == "turn":
                x[:, 5] += gain * 90.0
            chunks.append(x)
            t0 = c * seconds_per_class
            labels.append({"recording": f"rec{s}", "start": t0 * 1000, "end": (t0 + seconds_per_class) * 1000,
                           "label": name, "subject": f"p{s}"})
        data = np.concatenate(chunks)
        t_ms = np.arange(len(data)) / rate_hz * 1000.0
        df = pd.DataFrame(data, columns=["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"])
        df.insert(0, "time", t_ms)
        recs.append((f"rec{s}", df))
    out = write_generic_dataset(root, recs, pd.DataFrame(labels), Units("m/s^2", "deg/s", "ms"))
    if bad_recording:
        (out / "recordings" / "broken.csv").write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n0,1,2,x,4,5,6\n")
        with open(out / "labels.csv", "a") as fh:
            fh.write("broken,0,1000,walk,p0\n")
    return out


TINY = ["--arch", "convgru-tiny", "--epochs", "4", "--batch-size", "16", "--lr", "3e-3", "--no-progress",
        "--set", "fit.supervised.min_steps_per_epoch=3", "--set", "fit.finetune.min_steps_per_epoch=3",
        "--set", "fit.linear_probe.steps=40"]

SUMMARY_KEYS = {"protocol", "shots", "n_seeds", "accuracy_mean", "balanced_accuracy_mean", "balanced_accuracy_std",
                "macro_f1_mean"}


@pytest.mark.slow
def test_cli_random_encoder_end_to_end(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    rc = main(["evaluate", "--dataset", str(ds), "--encoder", "random", "--protocol",
               "supervised,linear-probe,knn,finetune", "--shots", "2,all", "--seeds", "2", "--out", str(out)] + TINY)
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is True
    assert res["dataset"]["class_names"] == sorted(CLASSES) or set(res["dataset"]["class_names"]) == set(CLASSES)
    # summary: one row per protocol x shots, with the required keys
    assert len(res["summary"]) == 8
    assert {(r["protocol"], r["shots"]) for r in res["summary"]} == {
        (p, s) for p in ("supervised", "linear-probe", "knn", "finetune") for s in (2, "all")}
    for r in res["summary"]:
        assert SUMMARY_KEYS <= set(r)
        assert r["n_seeds"] == 2
        assert isinstance(r["shots"], int) or r["shots"] == "all"
        assert 0.0 <= r["balanced_accuracy_mean"] <= 1.0
        assert r["balanced_accuracy_ci95_low"] <= r["balanced_accuracy_mean"] <= r["balanced_accuracy_ci95_high"]
    assert len(res["runs"]) == 16
    run = res["runs"][0]
    assert {"protocol", "shots", "seed", "n_train", "shots_per_class", "val", "test"} <= set(run)
    assert res["split"]["scheme"] == "per-seed" and len(res["split"]["splits"]) == 2
    for sp in res["split"]["splits"]:
        subj = sp["subjects"]
        assert set(subj) == {"train", "val", "test"}
        assert not set(subj["train"]) & set(subj["test"]) and not set(subj["val"]) & set(subj["test"])
    two_shot = [r for r in res["runs"] if r["shots"] == 2]
    assert all(r["n_train"] == 8 and set(r["shots_per_class"].values()) == {2} for r in two_shot)
    # the "different device" data is learnable by the same command
    sup_all = next(r for r in res["summary"] if r["protocol"] == "supervised" and r["shots"] == "all")
    assert sup_all["balanced_accuracy_mean"] > 0.7
    for name in ("report.md", "shots_curve.png", "confusion_matrix.png", "config.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "shots_curve.png").read_bytes()[:4] == b"\x89PNG"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["fit"]["supervised"]["epochs"] == 4 and cfg["model"] == "convgru-tiny"
    md = (out / "report.md").read_text()
    assert "| supervised | all |" in md.replace("random | ", "")
    assert "shots_curve.png" in md
    assert "supervised" in capsys.readouterr().out
    assert not list(out.glob("*.tmp"))


@pytest.mark.slow
def test_cli_saved_encoder_and_skip_bad(tmp_path):
    import torch

    from crossmodal_har.models.encoder_file import save_encoder
    from crossmodal_har.models.registry import create_model
    from crossmodal_har.signals.types import PreprocessConfig

    ds = make_dataset(tmp_path / "ds", bad_recording=True, n_subjects=4)
    torch.manual_seed(0)
    enc = create_model("convgru-tiny")
    run_dir = tmp_path / "run"
    # the encoder was "trained" at 25 Hz with z-scored windows of 10 s: evaluation must follow that
    pre = PreprocessConfig(rate_hz=25.0, window_s=10.0, stride_s=5.0, normalization="zscore")
    enc = create_model("convgru-tiny", window=pre.window_samples)
    save_encoder(enc, run_dir / "encoder", pre, extra={"method": "toy-siglip"})
    out = tmp_path / "out"
    args = ["evaluate", "--dataset", str(ds), "--encoder", str(run_dir), "--protocol", "linear-probe",
            "--shots", "1", "--seeds", "1", "--out", str(out)] + TINY
    assert main(args) == 2  # the broken recording stops the run without --skip-bad
    rc = main(args + ["--skip-bad"])
    assert rc == 3  # PartialRunError: finished, but skipped inputs
    res = json.loads((out / "results.json").read_text())
    assert res["method"] == "toy-siglip"
    assert res["encoder"]["pretrained"] is True
    assert res["encoder"]["preprocess"]["rate_hz"] == 25.0
    assert res["encoder"]["preprocess"]["normalization"] == "zscore"
    skipped = res["dataset"]["report"]["skipped_recordings"]
    assert len(skipped) == 1 and "broken" in skipped[0]["path"]
    assert "broken" in (out / "report.md").read_text()
    row = res["summary"][0]
    assert row["n_seeds"] == 1 and row["balanced_accuracy_std"] == 0.0 and row["balanced_accuracy_ci95_low"] is None


def test_merge_results_and_report(tmp_path):
    from crossmodal_har.evaluate.merge import merge_results
    from crossmodal_har.evaluate.report import write_outputs
    from crossmodal_har.evaluate.summaries import summarize_runs

    def fake(method, ba_values, path, encoder=None):
        runs = []
        for seed, ba in enumerate(ba_values):
            cm = [[3, 1], [1, 3]]
            runs.append({"method": method, "protocol": "linear-probe", "shots": 5, "seed": seed, "n_train": 10,
                         "test": {"accuracy": ba, "balanced_accuracy": ba, "macro_f1": ba,
                                  "per_class_recall": [ba, ba], "confusion_matrix": cm}})
        res = {"method": method, "summary": summarize_runs(runs), "runs": runs, "complete": True,
               "dataset": {"spec": "toy", "class_names": ["a", "b"]}, "encoder": {"encoder": encoder or method}}
        path.mkdir(parents=True)
        (path / "results.json").write_text(json.dumps(res))
        return path

    a = fake("siglip", [0.8, 0.9, 1.0], tmp_path / "a")
    b = fake("random", [0.5, 0.6], tmp_path / "b")
    merged = merge_results([a, b / "results.json"])
    rows = {r["method"]: r for r in merged.summary}
    assert set(rows) == {"siglip", "random"}
    assert rows["siglip"]["balanced_accuracy_mean"] == pytest.approx(0.9)
    assert rows["siglip"]["balanced_accuracy_std"] == pytest.approx(0.1)
    assert rows["siglip"]["confusion_matrix"] == [[9, 3], [3, 9]]
    assert rows["random"]["n_seeds"] == 2
    paths = write_outputs(merged, tmp_path / "merged")
    assert all(p.is_file() for p in paths)
    md = (tmp_path / "merged" / "report.md").read_text()
    assert "| siglip | linear-probe | 5 | 3 | 0.900 ± 0.100 |" in md
    # same label, different encoder -> disambiguated, not mixed
    c = fake("siglip", [0.2], tmp_path / "c", encoder="other/run")
    merged2 = merge_results([a, c])
    assert {r["method"] for r in merged2.summary} == {"siglip", "siglip (c)"}


def test_cli_bad_arguments(tmp_path):
    assert main(["evaluate", "--out", str(tmp_path / "o")]) == 2  # no dataset
    ds = tmp_path / "nope"
    assert main(["evaluate", "--dataset", str(ds), "--out", str(tmp_path / "o")]) == 2
    assert main(["evaluate", "--dataset", "x", "--protocol", "magic", "--out", str(tmp_path / "o")]) == 2
    assert main(["evaluate", "--dataset", "x", "--shots", "0", "--out", str(tmp_path / "o")]) == 2
    assert main(["evaluate", "--dataset", "x", "--set", "fit.typo=1", "--out", str(tmp_path / "o")]) == 2
