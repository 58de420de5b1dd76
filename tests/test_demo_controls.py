"""The demo's controls (issue 11, item 3): the shuffled-pairs siglip run in both tables, zero-shot on
a corpus simulated with another seed, and the paired differences that say how much of a gain comes
from true pairing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats

from crossmodal_har.cli import main
from crossmodal_har.demo import (CONTROL_LABEL, ZEROSHOT_METHODS, build_stages, plan_for_budget, pretrained_runs,
                                 run_demo)
from crossmodal_har.evaluate.report import write_outputs
from crossmodal_har.evaluate.results import parse_results
from crossmodal_har.evaluate.summaries import summarize_runs


def _stages(tmp_path, minutes=15):
    plan = plan_for_budget(minutes)
    return plan, {s.name: s.argvs() for s in build_stages(tmp_path, plan)}


def _opt(argv, flag):
    return argv[argv.index(flag) + 1]


def test_stage_list_holds_the_control_and_the_cross_corpus_stages(tmp_path):
    plan, st = _stages(tmp_path)
    names = list(st)
    # the stages of earlier demos keep their names (a resumed demo skips them)
    for old in ("simulate", "ingest", "pretrain-siglip", "zeroshot-siglip", "evaluate-siglip", "evaluate-random"):
        assert old in names
    assert names[-1] == "report"

    [sig], [ctrl] = st["pretrain-siglip"], st["pretrain-siglip-shuffled"]
    assert "split.shuffle_train_pairs=true" in ctrl and "split.shuffle_train_pairs=true" not in sig
    for flag in ("--config", "--store", "--time-budget"):  # same store, config and budget as siglip
        assert _opt(ctrl, flag) == _opt(sig, flag)
    assert _opt(ctrl, "--out") != _opt(sig, "--out")

    [zs] = st["zeroshot-siglip-shuffled"]
    assert _opt(zs, "--run") == _opt(ctrl, "--out") and _opt(zs, "--name") == CONTROL_LABEL == "siglip (shuffled pairs)"
    [ev] = st["evaluate-siglip-shuffled"]
    [ev_sig] = st["evaluate-siglip"]
    assert _opt(ev, "--encoder") == _opt(ctrl, "--out") and _opt(ev, "--name") == CONTROL_LABEL
    for flag in ("--shots", "--seeds", "--epochs", "--dataset", "--protocol"):
        assert _opt(ev, flag) == _opt(ev_sig, flag)

    # the other corpus: another seed, fewer people and minutes, ingested exactly like the first
    [sim], [sim2] = st["simulate"], st["simulate-other"]
    assert int(_opt(sim2, "--seed")) == plan.seed + 1 != int(_opt(sim, "--seed"))
    assert int(_opt(sim2, "--subjects")) == 6 and float(_opt(sim2, "--minutes")) == 10.0
    assert _opt(sim2, "--out") != _opt(sim, "--out")
    [ing], [ing2] = st["ingest"], st["ingest-other"]
    assert _opt(ing2, "--src") == _opt(sim2, "--out") and _opt(ing2, "--out") != _opt(ing, "--out")
    strip = lambda a: [x for i, x in enumerate(a) if x not in ("--src", "--out") and a[i - 1] not in ("--src", "--out")]
    assert strip(ing2) == strip(ing)
    other_zs = [f"zeroshot-other-{m}" for m in (*ZEROSHOT_METHODS, "siglip-shuffled")]
    for n in other_zs:
        [z] = st[n]
        assert _opt(z, "--split") == "all" and _opt(z, "--store") == _opt(ing2, "--out")
    assert _opt(st["zeroshot-other-siglip-shuffled"][0], "--name") == CONTROL_LABEL

    # every result reaches the report
    [rep] = st["report"]
    for n in ("zeroshot-siglip", "zeroshot-siglip-shuffled", *other_zs):
        assert _opt(st[n][0], "--out") in rep
    assert _opt(ev, "--out") in rep
    # smaller budgets shrink the other corpus too (never below 4 people)
    small = plan_for_budget(1)
    assert 4 <= small.other_subjects <= plan.other_subjects and small.other_minutes < plan.other_minutes


def test_report_runs_again_when_a_stage_ran_after_it(tmp_path):
    """A demo finished before the new stages existed: resuming runs them and then the report again."""
    calls = []

    def runner(argv):
        calls.append(argv)
        return 0

    run_demo(tmp_path, 15, runner=runner)
    for stage in ("evaluate-siglip", "pretrain-siglip-shuffled"):  # an old stage, a new one
        (tmp_path / "stages" / f"{stage}.json").unlink()
        calls.clear()
        run_demo(tmp_path, 15, runner=runner)
        # both reports run again: the held-out corpus's (report-heldout), then the main one
        assert [a[0] for a in calls] == [stage.split("-")[0], "report", "report"]
        assert calls[-1][calls[-1].index("--out") + 1] == str(tmp_path)
    calls.clear()
    run_demo(tmp_path, 15, runner=runner)
    assert calls == []


# ------------------------------------------------------------------------------- the report itself
SEED_EFFECT = [0.00, 0.03, -0.02, 0.01, -0.01]  # shared by every method: the pairing removes it
# a pretraining seed's effect, shared by a method and its control at the same pretraining seed
PSEED_EFFECT = {0: 0.0, 1: 0.05, 2: -0.05}
R1_FACTOR = {0: 0.8, 1: 1.0, 2: 1.2}  # zero-shot R@1 of pretraining seed p: r1 x factor


def _fake_evaluation(out, method, offset, gain10=0.0, *, shots=(10, 100), encoder=None, pseed_effect=0.0,
                     protocols=("linear-probe", "finetune")):
    runs = []
    for protocol in protocols:
        for k in shots:
            for s, e in enumerate(SEED_EFFECT):
                jitter = 0.002 * ((s * 7 + len(method)) % 3)
                ba = 0.6 + offset + pseed_effect + (gain10 if k == 10 else 0.0) + e + jitter
                runs.append({"method": method, "protocol": protocol, "shots": k, "seed": s,
                             "test": {"accuracy": ba, "balanced_accuracy": ba, "macro_f1": ba - 0.01,
                                      "per_class_recall": [ba, ba], "confusion_matrix": [[5, 1], [1, 5]]}})
    res = {"format_version": 1, "method": method, "complete": True,
           "dataset": {"spec": "fake", "n_windows": 10, "n_subjects": 5, "class_names": ["a", "b"]},
           "encoder": {"encoder": str(encoder) if encoder else f"/runs/{method}", "model": "patchtst-tiny",
                       "pretrained": encoder is not None}, "runs": runs}
    res["summary"] = summarize_runs(runs)
    write_outputs(parse_results(res), out, plots=False)
    return out


def _fake_zeroshot(out, method, r1, store, split, windows, run=None):
    out.mkdir(parents=True)
    m = {"R@1": r1, "R@3": r1 * 2, "R@10": r1 * 4, "MRR": r1 * 1.5, "chance_R@1": 1 / windows,
         "chance_R@3": 3 / windows, "chance_R@10": 10 / windows, "chance_MRR": 0.05}
    (out / "results.json").write_text(json.dumps({
        "method": method, "windows": windows, "store": str(store), "split": split,
        **({"run": str(run)} if run else {}),
        "retrieval": {"imu_to_video": m, "video_to_imu": m},
        "classification": {"balanced_accuracy": 0.4, "macro_f1": 0.35, "chance_balanced_accuracy": 0.25}}))
    return out


def _demo_results(tmp_path):
    """Fake results at the paths the demo's stages write, and the report stage's argv. Every
    pretraining run directory holds a config.json with its seed (as `pretrain` writes it)."""
    plan, st = _stages(tmp_path)
    (tmp_path / "plan.json").write_text(json.dumps({**plan.__dict__}))
    same_store, other_store = _opt(st["ingest"][0], "--out"), _opt(st["ingest-other"][0], "--out")
    r1s = {"siglip": 0.05, "clip": 0.03, "imu2clip": 0.02, CONTROL_LABEL: 0.008}
    # siglip: +0.10 over random at 10 shots, of which +0.08 from true pairing; +0.05 at 100, none from pairing
    evals = {"siglip": (0.05, 0.05), CONTROL_LABEL: (0.05, -0.03), "clip": (0.02, 0.0), "imu2clip": (-0.05, 0.0),
             "imu-mae": (0.04, 0.0)}
    for d, label, p in pretrained_runs(plan):
        run = tmp_path / _opt(st[f"pretrain-{d}"][0], "--out")
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps({"seed": int(_opt(st[f"pretrain-{d}"][0], "--seed"))}))
        if label in r1s:
            r1 = r1s[label] * R1_FACTOR[p]
            _fake_zeroshot(tmp_path / _opt(st[f"zeroshot-{d}"][0], "--out"), label, r1, same_store, "test", 118, run)
            _fake_zeroshot(tmp_path / _opt(st[f"zeroshot-other-{d}"][0], "--out"), label, r1 / 2, other_store, "all",
                           180, run)
        [ev] = st[f"evaluate-{d}"]
        off, gain10 = evals[label]
        _fake_evaluation(tmp_path / _opt(ev, "--out"), label, off, gain10, encoder=_opt(ev, "--encoder"),
                         shots=[int(k) for k in _opt(ev, "--shots").split(",")], pseed_effect=PSEED_EFFECT[p])
    for m, off in (("random", 0.0), ("supervised", 0.1)):
        [ev] = st[f"evaluate-{m}"]
        _fake_evaluation(_opt(ev, "--out"), m, off, shots=[int(k) for k in _opt(ev, "--shots").split(",")],
                         protocols=(_opt(ev, "--protocol").split(",")))
    return st["report"][0]


def test_demo_report_shows_the_control_the_other_corpus_and_the_paired_differences(tmp_path):
    argv = _demo_results(tmp_path)
    assert main(argv) == 0
    text = (tmp_path / "report.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    # both tables have the control's row (3 pretraining seeds in the zero-shot table)
    assert any(ln.startswith("| siglip (shuffled pairs) | 3 | imu to video | 118 |") for ln in rows)
    assert any(ln.startswith("| siglip (shuffled pairs) | linear-probe |") for ln in rows)
    # two zero-shot tables, clearly titled, each with its own chance level
    same = text.index("Same corpus")
    other = text.index("Cross-corpus")
    assert "seed 1" in text[other:other + 300]
    assert "| *chance* | | | | 0.008 | |" in text[same:other]  # 1/118
    assert "| *chance* | | | | 0.006 | |" in text[other:]  # 1/180
    # mean ± sd (min – max) over the 3 pretraining seeds, and the mean over chance (0.025 x 180)
    assert any(ln.startswith("| siglip | 3 | imu to video | 180 | 0.025 ± 0.005 (0.020 – 0.030) | 4.5× |")
               for ln in rows)

    merged = json.loads((tmp_path / "results.json").read_text())
    # against random init: the evaluation's own comparisons; against the control: control_comparisons
    assert {c["reference"] for c in merged["comparisons"]} == {"random"}
    assert {c["reference"] for c in merged["control_comparisons"]} == {CONTROL_LABEL}
    comps = {(c["method"], c["reference"], c["protocol"], c["shots"]): c
             for c in merged["comparisons"] + merged["control_comparisons"]}
    c = comps[("siglip", CONTROL_LABEL, "finetune", 10)]
    # paired over the 5 seeds: hand-computed Student-t interval of the per-seed differences
    d = np.array([0.08 + 0.002 * (x - y) for x, y in zip([0, 1, 2, 0, 1], [2, 0, 1, 2, 0])])
    half = scipy.stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert c["n_pairs"] == 5 and c["mean_diff"] == pytest.approx(d.mean())
    assert c["ci_low"] == pytest.approx(d.mean() - half) and c["ci_high"] == pytest.approx(d.mean() + half)
    c = comps[("siglip", CONTROL_LABEL, "finetune", 100)]
    assert abs(c["mean_diff"]) < 0.003 and c["ci_low"] < 0 < c["ci_high"]
    assert comps[("siglip", "random", "linear-probe", 10)]["mean_diff"] == pytest.approx(0.10, abs=0.003)
    assert comps[(CONTROL_LABEL, "random", "linear-probe", 100)]["mean_diff"] == pytest.approx(0.05, abs=0.003)
    for m in ("clip", "imu2clip", "imu-mae"):
        assert (m, "random", "finetune", 100) in comps

    # the report says it in words, per protocol and shots
    sec = text[text.index("true pairing"):]
    assert "siglip − siglip (shuffled pairs)" in sec
    assert "excludes 0" in sec and "includes 0" in sec
    line10 = next(ln for ln in sec.splitlines() if ln.startswith("- finetune, 10 shots"))
    assert "+0.100" in line10 and "+0.080" in line10 and "80 %" in line10
    assert ("In short: siglip with true pairs beats its shuffled control with a 95 % CI above 0 at finetune 10 shots, "
            "linear-probe 10 shots; it does **not** at finetune 20 shots, finetune 50 shots, finetune 100 shots, "
            "linear-probe 20 shots, linear-probe 50 shots, linear-probe 100 shots.") in sec


def test_zeroshot_name_labels_the_results(tmp_path):
    from crossmodal_har.train.synthetic import SyntheticSource, write_synthetic_store

    store = write_synthetic_store(str(tmp_path / "store"), SyntheticSource(subjects=4, windows_per_subject=8))
    run = tmp_path / "run"
    assert main(["-q", "pretrain", "--config", "siglip-tiny", "--store", store, "--out", str(run),
                 "--no-progress", "--set", "epochs=1", "--set", "batch_size=8"]) == 0
    assert main(["-q", "zeroshot", "--run", str(run), "--store", store, "--out", str(tmp_path / "zs"),
                 "--split", "all", "--name", CONTROL_LABEL]) == 0
    res = json.loads((tmp_path / "zs" / "results.json").read_text())
    assert res["method"] == CONTROL_LABEL and res["pretrain_method"] == "siglip"
    assert main(["-q", "zeroshot", "--run", str(run), "--store", store, "--out", str(tmp_path / "zs2"),
                 "--split", "all"]) == 0
    assert json.loads((tmp_path / "zs2" / "results.json").read_text())["method"] == "siglip"


def test_control_trains_as_many_steps_as_siglip_and_the_report_says_when_not(tmp_path):
    plan, st = _stages(tmp_path)
    [ctrl] = st["pretrain-siglip-shuffled"]
    assert not any(a.startswith("max_steps=") for a in ctrl)  # siglip has not run yet: the budget alone
    for d, step in (("siglip", 123), ("siglip-shuffled", 60)):
        (tmp_path / "runs" / d).mkdir(parents=True)
        (tmp_path / "runs" / d / "summary.json").write_text(json.dumps({"step": step, "stopped": "time_budget"}))
    _, st = _stages(tmp_path)
    [ctrl] = st["pretrain-siglip-shuffled"]
    assert "max_steps=123" in ctrl and "--time-budget" in ctrl
    argv = _demo_results(tmp_path)
    assert main(argv) == 0
    text = (tmp_path / "report.md").read_text()
    assert "not matched in steps" in text and "123" in text and "60" in text
    (tmp_path / "runs" / "siglip-shuffled" / "summary.json").write_text(json.dumps({"step": 123}))
    assert main(argv) == 0
    assert "not matched in steps" not in (tmp_path / "report.md").read_text()
