"""The demo's stage runner (resume, budget scaling) and the merged report."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from crossmodal_har.cli import main
from crossmodal_har.demo import PRETRAIN_METHODS, build_stages, plan_for_budget, run_demo
from crossmodal_har.errors import UserError
from crossmodal_har.evaluate.report import write_outputs
from crossmodal_har.evaluate.results import parse_results
from crossmodal_har.evaluate.summaries import summarize_runs


def test_plan_scales_data_and_steps_not_shots_or_seeds():
    small, default, big = plan_for_budget(5), plan_for_budget(15), plan_for_budget(60)
    assert small.sim_minutes < default.sim_minutes < big.sim_minutes
    assert small.pretrain_seconds < default.pretrain_seconds < big.pretrain_seconds
    assert small.shots == default.shots == big.shots == [10, 20, 50, 100]
    assert small.seeds == default.seeds == 5
    with pytest.raises(UserError):
        plan_for_budget(0)


def test_stages_cover_the_experiment(tmp_path):
    names = [s.name for s in build_stages(tmp_path, plan_for_budget(15))]
    assert names[:2] == ["simulate", "ingest"]
    for m in PRETRAIN_METHODS:
        assert f"pretrain-{m}" in names and f"evaluate-{m}" in names
    assert {"zeroshot-siglip", "zeroshot-clip", "zeroshot-imu2clip", "evaluate-random", "evaluate-supervised"} <= set(names)
    assert names[-1] == "report"


def test_interrupted_demo_resumes_without_redoing_finished_stages(tmp_path):
    calls = []
    fail_at = {"stage": "pretrain-clip"}

    def runner(argv):
        calls.append(argv)
        if fail_at["stage"] and argv[0] == "pretrain" and "clip-tiny" in argv:
            return 1  # simulated crash / kill
        return 0

    with pytest.raises(UserError, match="pretrain-clip"):
        run_demo(tmp_path, 15, runner=runner)
    first = [a[0] for a in calls]
    assert first == ["simulate", "ingest", "pretrain", "pretrain"]
    done = sorted(p.stem for p in (tmp_path / "stages").glob("*.json"))
    assert done == ["ingest", "pretrain-siglip", "simulate"]

    calls.clear()
    fail_at["stage"] = None
    run_demo(tmp_path, 15, runner=runner)
    # the finished stages were not run again; the failed one and the rest were
    assert calls[0][0] == "pretrain" and "clip-tiny" in calls[0]
    sim = str(tmp_path / "data" / "sim")  # the first corpus (simulate-other/ingest-other ran later)
    assert not any(a[0] in ("simulate", "ingest") and sim in a for a in calls)
    # the two corpora simulated after the failed stage: cross-corpus zero-shot's and the held-out labelled one
    assert [a[a.index("--out") + 1] for a in calls if a[0] == "simulate"] == [
        str(tmp_path / "data" / "sim-other"), str(tmp_path / "data" / "sim-heldout")]
    assert calls[-1][0] == "report"
    calls.clear()
    run_demo(tmp_path, 15, runner=runner)
    assert calls == []  # everything done

    with pytest.raises(UserError, match="budget-minutes"):
        run_demo(tmp_path, 5, runner=runner)  # a different plan cannot silently mix with this one


def _fake_evaluation(out, method, offset, seed=0):
    rng = np.random.default_rng(seed)
    runs = []
    for protocol in ("linear-probe", "finetune"):
        for shots in (10, 100):
            for s in range(3):
                ba = float(np.clip(0.5 + offset + 0.001 * shots + rng.normal(0, 0.02), 0, 1))
                runs.append({"method": method, "protocol": protocol, "shots": shots, "seed": s,
                             "test": {"accuracy": ba, "balanced_accuracy": ba, "macro_f1": ba - 0.01,
                                      "per_class_recall": [ba, ba], "confusion_matrix": [[5, 1], [1, 5]]}})
    res = {"format_version": 1, "method": method, "complete": True,
           "dataset": {"spec": "fake", "n_windows": 10, "n_subjects": 5, "class_names": ["a", "b"]},
           "encoder": {"encoder": method, "model": "patchtst-tiny"}, "runs": runs, "summary": []}
    res["summary"] = summarize_runs(runs)
    write_outputs(parse_results(res), out, plots=False)
    return out


def _fake_zeroshot(out, method, r1):
    out.mkdir(parents=True)
    m = {"R@1": r1, "R@3": r1 * 2, "R@10": r1 * 4, "MRR": r1 * 1.5, "chance_R@1": 0.01, "chance_R@3": 0.03,
         "chance_R@10": 0.1, "chance_MRR": 0.05}
    (out / "results.json").write_text(json.dumps({
        "method": method, "windows": 100, "retrieval": {"imu_to_video": m, "video_to_imu": m},
        "classification": {"balanced_accuracy": 0.4, "macro_f1": 0.35, "chance_balanced_accuracy": 0.25}}))
    return out


def _tables(text):
    return [ln for ln in text.splitlines() if ln.startswith("|")]


def test_report_merges_evaluations_and_zeroshot_and_is_reproducible(tmp_path):
    e1 = _fake_evaluation(tmp_path / "ev_siglip", "siglip", 0.2)
    e2 = _fake_evaluation(tmp_path / "ev_random", "random", 0.0, seed=1)
    z1 = _fake_zeroshot(tmp_path / "zs_siglip", "siglip", 0.2)
    out = tmp_path / "rep"
    assert main(["report", str(z1), str(e1), str(e2), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "Table 4" in text and "Table 3" in text
    assert re.search(r"\| siglip \| imu to video \| 100 \| 0\.200 \|", text)
    rows3 = [ln for ln in _tables(text) if ln.startswith("| siglip | linear-probe") or ln.startswith("| random | linear-probe")]
    assert len(rows3) == 6  # 2 methods x 3 metric tables
    merged = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in merged["summary"]} == {"siglip", "random"}
    assert merged["zeroshot"][0]["retrieval"]["imu_to_video"]["R@1"] == 0.2
    assert (out / "retrieval.png").exists() and (out / "shots_curve_finetune.png").exists()
    # the same inputs give the same tables
    out2 = tmp_path / "rep2"
    assert main(["report", str(e2), str(z1), str(e1), "--out", str(out2)]) == 0
    assert _tables((out2 / "report.md").read_text()) == _tables(text)


def test_report_rejects_what_is_not_a_result(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "results.json").write_text('{"hello": 1}')
    assert main(["report", str(tmp_path / "x"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "results.json" in err and err.count("\n") == 1
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
