"""Pretraining seeds (issue 12, item 6): the demo pretrains every method and the control with several
seeds, evaluates each with the same evaluation seeds, and the report shows the spread across
pretraining seeds; merging tells pretraining seeds apart."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from crossmodal_har.cli import main
from crossmodal_har.demo import (CONTROL_LABEL, CONTROL_RUN, PRETRAIN_METHODS, build_stages, plan_for_budget,
                                 pretrained_runs, run_demo)
from crossmodal_har.errors import UserError
from crossmodal_har.evaluate.merge import merge_results
from crossmodal_har.evaluate.report import write_outputs
from crossmodal_har.evaluate.results import RunResult, parse_results, parse_zeroshot
from crossmodal_har.evaluate.summaries import summarize_runs

from test_demo_controls import PSEED_EFFECT, _demo_results


def _opt(argv, flag):
    return argv[argv.index(flag) + 1]


def test_plan_pretrains_every_method_and_the_control_with_three_seeds(tmp_path):
    plan = plan_for_budget(15)
    assert plan.pretrain_seeds == [0, 1, 2]
    assert set(plan.extra_seed_shots) <= set(plan.shots)
    st = {s.name: s.argvs() for s in build_stages(tmp_path, plan)}
    assert len(st) == len(build_stages(tmp_path, plan))  # stage names are unique
    runs = pretrained_runs(plan)
    assert len(runs) == len(plan.pretrain_seeds) * (len(PRETRAIN_METHODS) + 1)
    outs = set()
    for d, label, p in runs:
        [pre] = st[f"pretrain-{d}"]
        assert int(_opt(pre, "--seed")) == p
        outs.add(_opt(pre, "--out"))
        # the first pretraining seed keeps the names of the demo before pretraining seeds
        assert (d == (CONTROL_RUN if label == CONTROL_LABEL else label)) == (p == plan.pretrain_seeds[0])
        [ev] = st[f"evaluate-{d}"]
        assert _opt(ev, "--encoder") == _opt(pre, "--out") and _opt(ev, "--name") == label
        assert _opt(ev, "--seeds") == str(plan.seeds)  # the same evaluation seeds for every encoder
        shots = plan.shots if p == plan.pretrain_seeds[0] else plan.extra_seed_shots
        assert _opt(ev, "--shots") == ",".join(map(str, shots))
        assert _opt(ev, "--out") in st["report"][0]
    assert len(outs) == len(runs)
    # the control at seed p: siglip's config, budget and seed p
    for p in plan.pretrain_seeds:
        sfx = "" if p == 0 else f"-seed{p}"
        [sig], [ctrl] = st[f"pretrain-siglip{sfx}"], st[f"pretrain-siglip-shuffled{sfx}"]
        for flag in ("--config", "--store", "--time-budget", "--seed"):
            assert _opt(ctrl, flag) == _opt(sig, flag)
        assert f"zeroshot-siglip-shuffled{sfx}" in st and f"zeroshot-other-siglip-shuffled{sfx}" in st
    # smaller budgets: fewer pretraining seeds, never no control
    assert len(plan_for_budget(5).pretrain_seeds) == 2 and len(plan_for_budget(2).pretrain_seeds) == 1
    assert any(n.startswith("pretrain-siglip-shuffled") for n in (s.name for s in build_stages(tmp_path, plan_for_budget(2))))


def test_control_gets_siglips_steps_at_the_same_pretraining_seed(tmp_path):
    plan = plan_for_budget(15)
    for d, step in (("siglip", 100), ("siglip-seed1", 111), ("siglip-seed2", 122)):
        (tmp_path / "runs" / d).mkdir(parents=True)
        (tmp_path / "runs" / d / "summary.json").write_text(json.dumps({"step": step}))
    st = {s.name: s.argvs() for s in build_stages(tmp_path, plan)}
    for sfx, step in (("", 100), ("-seed1", 111), ("-seed2", 122)):
        assert f"max_steps={step}" in st[f"pretrain-siglip-shuffled{sfx}"][0]


def test_an_out_dir_of_the_earlier_plan_is_refused(tmp_path):
    calls = []
    plan = asdict(plan_for_budget(15))
    old = {k: v for k, v in plan.items() if k not in ("pretrain_seeds", "extra_seed_shots")}
    old["pretrain_seconds"] = 90
    (tmp_path / "plan.json").write_text(json.dumps(old))
    with pytest.raises(UserError, match="--restart") as e:
        run_demo(tmp_path, 15, runner=lambda a: calls.append(a) or 0)
    assert "pretrain_seeds" in str(e.value) and calls == []
    run_demo(tmp_path, 15, runner=lambda a: calls.append(a) or 0, restart=True)
    assert calls[-1][0] == "report"
    calls.clear()
    run_demo(tmp_path, 15, runner=lambda a: calls.append(a) or 0, workers=1)  # workers do not change results
    assert calls == []


@pytest.mark.slow  # ~6 s: 40 fabricated result files and the report's plots
def test_demo_report_shows_the_spread_across_pretraining_seeds(tmp_path):
    assert main(_demo_results(tmp_path)) == 0
    merged = json.loads((tmp_path / "results.json").read_text())
    # every run records its pretraining seed; random and supervised have none
    seeds = {(r["method"], r["pretrain_seed"]) for r in merged["runs"]}
    for m in ("siglip", CONTROL_LABEL, "clip", "imu2clip", "imu-mae"):
        assert {p for mm, p in seeds if mm == m} == {0, 1, 2}
    assert {p for mm, p in seeds if mm in ("random", "supervised")} == {None}
    assert {s["method"] for s in merged["summary"]} == {"siglip", CONTROL_LABEL, "clip", "imu2clip", "imu-mae",
                                                         "random", "supervised"}  # pooled, not renamed
    rows = {(r["method"], r["protocol"], r["shots"]): r for r in merged["summary"]}
    r = rows[("siglip", "finetune", 10)]
    assert r["n_seeds"] == 5 and r["n_runs"] == 15 and r["n_pretrain_seeds"] == 3
    means = [e["balanced_accuracy"] for e in r["pretrain_seed_means"]]
    # each pretraining seed's mean over the 5 evaluation seeds moves by its own effect
    assert np.diff(means) == pytest.approx(np.diff([PSEED_EFFECT[p] for p in (0, 1, 2)]), abs=1e-9)
    assert r["balanced_accuracy_pretrain_std"] == pytest.approx(np.std(means, ddof=1))
    assert r["balanced_accuracy_pretrain_min"] == min(means) and r["balanced_accuracy_pretrain_max"] == max(means)
    assert r["balanced_accuracy_mean"] == pytest.approx(np.mean(means))
    assert rows[("siglip", "finetune", 20)]["n_pretrain_seeds"] == 1
    assert "n_pretrain_seeds" not in rows[("random", "finetune", 10)]

    comps = {(c["method"], c["reference"], c["protocol"], c["shots"]): c
             for c in merged["comparisons"] + merged["control_comparisons"]}
    # against the control: seed p meets seed p, so the shared pretraining-seed effect cancels
    c = comps[("siglip", CONTROL_LABEL, "finetune", 10)]
    assert c["paired_by_pretrain_seed"] and c["n_pairs"] == 5 and c["n_pretrain_seeds"] == 3
    assert [e["mean_diff"] for e in c["pretrain_mean_diffs"]] == pytest.approx([0.08] * 3, abs=0.003)
    assert c["pretrain_diff_std"] < 0.003
    # against random (no pretraining seeds): each seed's own difference carries its effect
    c = comps[("siglip", "random", "finetune", 10)]
    assert not c["paired_by_pretrain_seed"]
    assert [e["mean_diff"] for e in c["pretrain_mean_diffs"]] == pytest.approx(
        [0.10 + PSEED_EFFECT[p] for p in (0, 1, 2)], abs=0.003)
    assert c["pretrain_diff_std"] == pytest.approx(0.05, abs=0.003)
    for m in ("siglip", CONTROL_LABEL, "clip", "imu2clip", "imu-mae"):
        for proto in ("linear-probe", "finetune"):
            for k in (10, 20, 50, 100):
                assert (m, "random", proto, k) in comps
    # zero-shot: one pooled entry per method, mean and spread over the 3 pretraining seeds
    zs = {(e["method"], e["split"], e["direction"]): e for e in merged["zeroshot_summary"]}
    e = zs[("siglip", "all", "imu_to_video")]
    assert e["n_results"] == 3 and e["pretrain_seeds"] == [0, 1, 2]
    assert e["R@1_mean"] == pytest.approx(0.025) and e["R@1_min"] == pytest.approx(0.020)
    assert e["R@1_max"] == pytest.approx(0.030) and e["R@1_std"] == pytest.approx(0.005)
    assert {z["pretrain_seed"] for z in merged["zeroshot"]} == {0, 1, 2}

    text = (tmp_path / "report.md").read_text()
    sec = text[text.index("### Spread across pretraining seeds"):]
    line = next(ln for ln in sec.splitlines() if ln.startswith("| siglip | finetune | 10 | 3 |"))
    assert "s0 " in line and "s1 " in line and "s2 " in line
    assert "One pretraining seed only" in sec and "20 shots (siglip" in sec
    assert "‡" in text[text.index("### Balanced accuracy"):text.index("### Spread across")]
    assert "Pretraining seeds: every pretrained method and the control is pretrained 3 times" in text
    assert "above 0 for 3 of 3" in text


def _fake_eval(out, method, encoder, shift=0.0, pretrained=True, model="patchtst-tiny"):
    runs = [{"method": method, "protocol": "linear-probe", "shots": 10, "seed": s,
             "test": {"accuracy": 0.5 + shift + 0.01 * s, "balanced_accuracy": 0.5 + shift + 0.01 * s,
                      "macro_f1": 0.5}} for s in range(3)]
    res = {"format_version": 1, "method": method, "complete": True,
           "dataset": {"spec": "fake", "n_windows": 10, "n_subjects": 5, "class_names": ["a", "b"]},
           "encoder": {"encoder": str(encoder), "model": model, "pretrained": pretrained}, "runs": runs}
    res["summary"] = summarize_runs(runs)
    write_outputs(parse_results(res), out, plots=False)
    return out


def _run_dir(path, seed):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"seed": seed}))
    return path


def test_merging_tells_pretraining_seeds_apart(tmp_path):
    a = _fake_eval(tmp_path / "ea", "siglip", _run_dir(tmp_path / "ra", 0))
    b = _fake_eval(tmp_path / "eb", "siglip", _run_dir(tmp_path / "rb", 1), shift=0.1)
    merged = merge_results([a, b])
    [row] = merged.summary
    assert row["method"] == "siglip" and row["n_pretrain_seeds"] == 2 and row["n_seeds"] == 3 and row["n_runs"] == 6
    assert row["balanced_accuracy_pretrain_max"] - row["balanced_accuracy_pretrain_min"] == pytest.approx(0.1)
    assert [s["pretrain_seed"] for s in merged.sources] == [0, 1]
    # the same pretraining seed twice (two runs of seed 0) is not pooled as if it were another seed
    c = _fake_eval(tmp_path / "ec", "siglip", _run_dir(tmp_path / "rc", 0))
    assert {r["method"] for r in merge_results([a, c]).summary} == {"siglip", "siglip (ec)"}
    # another architecture under the same label is not another seed of the method
    f = _fake_eval(tmp_path / "ef", "siglip", _run_dir(tmp_path / "rf", 1), model="convgru-tiny")
    assert {r["method"] for r in merge_results([a, f], allow_mismatch=True).summary} == {"siglip", "siglip (ef)"}
    # an encoder whose run directory is gone: its seed is unknown, so it is not pooled either
    d = _fake_eval(tmp_path / "ed", "siglip", tmp_path / "gone")
    assert {r["method"] for r in merge_results([a, d]).summary} == {"siglip", "siglip (ed)"}
    # one file given twice is still refused, naming the pretraining seed
    with pytest.raises(UserError, match="pretraining seed 1"):
        merge_results([a, b, b])
    # an explicit pretrain_seed in results.json wins over the run directory
    res = json.loads((d / "results.json").read_text())
    res["encoder"]["pretrain_seed"] = 7
    (d / "results.json").write_text(json.dumps(res))
    merged = merge_results([a, d])
    assert {r["method"] for r in merged.summary} == {"siglip"}
    assert {r["pretrain_seed"] for r in merged.runs} == {0, 7}


def test_report_refuses_a_zeroshot_result_given_twice(tmp_path, capsys):
    from test_demo_controls import _fake_zeroshot

    run = _run_dir(tmp_path / "run", 2)
    z = _fake_zeroshot(tmp_path / "z", "siglip", 0.05, "store", "test", 100, run)
    assert main(["report", str(z), str(z), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "pretraining seed 2" in err and "given twice" in err and err.count("\n") == 1


def test_pretraining_seed_is_recorded_with_the_encoder_and_the_zero_shot_result(tmp_path):
    """The seed travels with the artefacts, so report can pool seeds of one method even when the run
    directory's config.json is gone."""
    from crossmodal_har.cli import main
    from crossmodal_har.evaluate.protocols import EncoderSource
    from crossmodal_har.evaluate.results import pretrain_seed_of
    from crossmodal_har.train.synthetic import SyntheticSource, write_synthetic_store

    store = write_synthetic_store(str(tmp_path / "store"), SyntheticSource(subjects=3, windows_per_subject=16))
    run = tmp_path / "run"
    assert main(["-q", "pretrain", "--config", "siglip-tiny", "--store", store, "--out", str(run), "--no-progress",
                 "--max-steps", "2", "--set", "batch_size=8", "--seed", "3"]) == 0
    assert main(["-q", "zeroshot", "--run", str(run), "--store", store, "--out", str(tmp_path / "zs"),
                 "--split", "all"]) == 0
    zs = json.loads((tmp_path / "zs" / "results.json").read_text())
    (run / "config.json").unlink()  # no fallback: the recorded values must carry it
    assert zs["pretrain_seed"] == 3 and pretrain_seed_of(parse_zeroshot(zs)) == 3
    info = EncoderSource.from_dir(run).info()
    assert info["pretrain_seed"] == 3 and pretrain_seed_of(RunResult(encoder=info)) == 3
    assert "pretrain_seed" not in EncoderSource.random("patchtst-tiny", EncoderSource.from_dir(run).preprocess).info()


def test_imagenet_video_side_changes_only_the_ingest_stages(tmp_path):
    from crossmodal_har.demo import build_stages, plan_for_budget
    from crossmodal_har.errors import UserError

    default = {s.name: s.argvs() for s in build_stages(tmp_path, plan_for_budget(15.0, 2))}
    imagenet = {s.name: s.argvs() for s in build_stages(tmp_path, plan_for_budget(15.0, 2, "imagenet"))}
    assert default.keys() == imagenet.keys()
    changed = sorted(k for k in default if default[k] != imagenet[k])
    assert changed == ["ingest", "ingest-other"], changed
    for argv in imagenet["ingest"] + imagenet["ingest-other"]:
        assert argv[argv.index("--video-mode") + 1] == "embeddings"
        assert argv[argv.index("--video-encoder") + 1] == "efficientnet-lite0"
        assert argv[argv.index("--embedding-layout") + 1] == "frames"
    assert all(a[a.index("--video-mode") + 1] == "frames" for a in default["ingest"])
    with pytest.raises(UserError, match="--video"):
        plan_for_budget(15.0, 2, "rgb")
