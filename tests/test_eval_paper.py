"""The paper's few-shot protocol (``evaluate --split paper``): its split, its selection on the test
windows, its defaults, and the flag on every table row it produces."""

import re

import numpy as np
import pytest

from crossmodal_har.evaluate.harness import PAPER_LABEL, EvaluateConfig, build_evaluate_config, run_evaluation
from crossmodal_har.evaluate.merge import merge_results
from crossmodal_har.evaluate.protocol_config import FinetuneConfig, FitConfig, ProbeConfig
from crossmodal_har.evaluate.report import render_markdown, write_combined_report
from crossmodal_har.evaluate.tables import render_console_summary
from crossmodal_har.signals.types import PreprocessConfig, WindowSet
from crossmodal_har.splits import paper_split


def windows(n_subjects=5, per_class=12, seed=0) -> WindowSet:
    """3 classes (still, 2 Hz, 4 Hz), [N, 250, 6]; each subject has its own gain, so people differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(250) / 50.0
    xs, ys, ss = [], [], []
    for s in range(n_subjects):
        gain = rng.uniform(0.5, 1.5)
        for c in range(3):
            for _ in range(per_class):
                x = rng.normal(0, 0.05, (250, 6))
                x[:, 2] += 1.0
                if c:
                    x[:, 0] += gain * 0.5 * np.sin(2 * np.pi * 2.0 * c * t + rng.uniform(0, 6))
                    x[:, 4] += gain * np.cos(2 * np.pi * 2.0 * c * t)
                xs.append(x)
                ys.append(c)
                ss.append(f"s{s}")
    n = len(ys)
    return WindowSet(x=np.array(xs, np.float32), y=np.array(ys), subject=np.array(ss, dtype=object),
                     recording=np.array(ss, dtype=object), start_s=np.zeros(n), end_s=np.full(n, 5.0),
                     class_names=["still", "slow", "fast"], preprocess=PreprocessConfig(normalization="none"))


def test_paper_split_is_windows_not_people():
    ws = windows()
    sp = paper_split(ws.y, ws.subject, 3, seed=4)
    assert np.array_equal(sp.val, sp.test)  # no validation part: selection on the test windows
    assert np.bincount(ws.y[sp.test]).tolist() == [20, 20, 20]
    assert not set(sp.train) & set(sp.test) and len(sp.train) + len(sp.test) == len(ws)
    assert sp.subjects["shared"]  # people in both parts
    again = paper_split(ws.y, ws.subject, 3, seed=4)
    assert np.array_equal(again.test, sp.test)
    assert not np.array_equal(paper_split(ws.y, ws.subject, 3, seed=5).test, sp.test)


def test_paper_defaults_shots_and_seeds_unless_given():
    cfg = build_evaluate_config({"dataset": "hapt", "split_scheme": "paper"})
    assert cfg.shots == [10, 20, 50, 100] and cfg.seeds == 5
    cfg = build_evaluate_config({"dataset": "hapt", "split_scheme": "paper", "seeds": 2}, shots="5")
    assert cfg.shots == [5] and cfg.seeds == 2
    ours = build_evaluate_config({"dataset": "hapt"})
    assert ours.shots == [5, "all"] and ours.seeds == 3


def table_rows(md: str):
    """Data rows of every markdown table: lines starting with '|' that are neither a header (the line
    before a separator) nor a separator."""
    lines = md.splitlines()
    rows = []
    for i, line in enumerate(lines):
        if not line.startswith("|") or re.match(r"^\|[-|: ]+\|$", line):
            continue
        if i + 1 < len(lines) and re.match(r"^\|[-|: ]+\|$", lines[i + 1]):
            continue
        rows.append(line)
    return rows


@pytest.mark.slow
def test_paper_protocol_selects_on_test_and_flags_every_row(tmp_path):
    ws = windows()
    fit = FitConfig(supervised=FinetuneConfig(epochs=4, min_steps_per_epoch=3, batch_size=16, lr=3e-3, patience=4),
                    linear_probe=ProbeConfig(steps=40, eval_every=10))
    base = dict(dataset="toy", model="convgru-tiny", protocols=["supervised", "linear-probe"], shots=[5, 10],
                seeds=2, fit=fit, preprocess=PreprocessConfig(normalization="none"))
    paper = run_evaluation(EvaluateConfig(**base, split_scheme="paper"), tmp_path / "paper", progress=False, windows=ws)
    ours = run_evaluation(EvaluateConfig(**base, split=dict_split()), tmp_path / "ours", progress=False, windows=ws)
    assert paper.split["optimistic"] is True and paper.split["subject_disjoint"] is False
    assert paper.method == "random" + PAPER_LABEL and ours.method == "random"
    for r in paper.runs:
        assert r["optimistic"] is True and r["val_mode"] == "test"
        assert set(r["test_subjects"]) & set(r["train_subjects"])
        assert r["n_val"] == 60 and sum(r["shots_per_class"].values()) == 3 * r["shots"]
        # the epoch kept is the one best on the test windows: its selection score is the test score
        assert r["val"]["balanced_accuracy"] == pytest.approx(r["test"]["balanced_accuracy"])
    for r in ours.runs:
        assert "optimistic" not in r and not set(r["test_subjects"]) & set(r["train_subjects"])
    # every row of every table the paper protocol produces is flagged: its own report, the console ...
    md = (tmp_path / "paper" / "report.md").read_text()
    rows = table_rows(md)
    assert len(rows) >= 4 and all("optimistic" in row for row in rows), rows
    assert "optimistic" in md.split("## ")[0]  # and the report says what it means before the tables
    console = render_console_summary(paper.summary)[1:]
    assert console and all("optimistic" in line for line in console)
    # ... and the report merged with ours: its rows flagged, ours not
    merged = merge_results([tmp_path / "paper", tmp_path / "ours"], allow_mismatch=True)
    combined = render_markdown([merged.to_json()], merged.summary)
    paper_rows = [r for r in table_rows(combined) if "optimistic" in r]
    our_rows = [r for r in table_rows(combined) if "optimistic" not in r]
    assert paper_rows and our_rows and all(r.startswith("| random |") for r in our_rows)
    write_combined_report([tmp_path / "paper", tmp_path / "ours"], tmp_path / "report", allow_mismatch=True)
    rep = (tmp_path / "report" / "report.md").read_text()
    for row in table_rows(rep):
        assert ("optimistic" in row) != row.startswith("| random |"), row


def dict_split():
    from crossmodal_har.splits import SplitConfig

    return SplitConfig(val_fraction=0.2, test_fraction=0.2)


def test_protocol_gap_is_welch_over_seeds():
    """Hand check: paper seeds 0.9, 1.0 and ours 0.5, 0.7, 0.6 -> difference 0.35; Welch: se^2 =
    0.005/2 + 0.01/3, df = se^4 / ((0.0025)^2 + (0.00333)^2 / 2)."""
    from scipy import stats

    from crossmodal_har.evaluate.summaries import PAPER_LABEL, protocol_gaps
    from crossmodal_har.evaluate.tables import render_protocol_gaps

    def run(method, seed, ba):
        return {"method": method, "protocol": "linear-probe", "shots": 10, "seed": seed,
                "test": {"balanced_accuracy": ba}}
    runs = [run("siglip" + PAPER_LABEL, 0, 0.9), run("siglip" + PAPER_LABEL, 1, 1.0),
            run("siglip", 0, 0.5), run("siglip", 1, 0.7), run("siglip", 2, 0.6), run("random", 0, 0.3)]
    (g,) = protocol_gaps(runs)
    va, vb = 0.005 / 2, 0.01 / 3
    df = (va + vb) ** 2 / (va ** 2 / 1 + vb ** 2 / 2)
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    assert g["diff"] == pytest.approx(0.35) and g["df"] == pytest.approx(df)
    assert (g["ci95_low"], g["ci95_high"]) == (pytest.approx(0.35 - half), pytest.approx(0.35 + half))
    assert (g["n_a"], g["n_b"], g["reference"]) == (2, 3, "siglip")
    (row,) = table_rows("\n".join(render_protocol_gaps([g])))
    assert "optimistic" in row and "+0.350" in row


def test_paper_split_small_class_keeps_half_for_training(caplog):
    y = np.array([0] * 30 + [1] * 50)
    sp = paper_split(y, np.array(["a"] * 80), 2, seed=0)
    assert np.bincount(y[sp.test]).tolist() == [15, 20] and np.bincount(y[sp.train]).tolist() == [15, 30]
    assert "15 test windows instead of 20" in caplog.text
