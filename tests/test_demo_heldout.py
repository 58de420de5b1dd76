"""The demo's IMU site and its held-out simulated corpus (issue 24, item 4): the site reaches every
simulation, every encoder gets a linear probe on a held-out labelled corpus with the same seeds, the
report shows siglip − control on it beside HAPT's, and an OUT of the earlier plan is refused."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from crossmodal_har.cli import main
from crossmodal_har.demo import CONTROL_LABEL, build_stages, plan_for_budget, pretrained_runs, run_demo
from crossmodal_har.errors import UserError
from test_demo_controls import _demo_results, _fake_evaluation, _opt, _stages


def test_site_reaches_every_simulation_and_the_heldout_stages(tmp_path):
    for site in ("head", "waist"):
        plan = plan_for_budget(15, imu_site=site)
        st = {s.name: s.argvs() for s in build_stages(tmp_path, plan)}
        for name in ("simulate", "simulate-other", "simulate-heldout"):
            assert _opt(st[name][0], "--mounting") == site
    names = list(st)
    assert names.index("evaluate-supervised") < names.index("simulate-heldout") < names.index("heldout-dataset") \
        < names.index("report-heldout") < names.index("report") == len(names) - 1
    [view] = st["heldout-dataset"]
    assert view[0] == "pairs-dataset" and _opt(view, "--src") == _opt(st["simulate-heldout"][0], "--out")
    assert int(_opt(st["simulate-heldout"][0], "--seed")) == plan.seed + 2
    evals = [st[f"evaluate-heldout-{d}"][0] for d, _, _ in pretrained_runs(plan)] + [st["evaluate-heldout-random"][0]]
    for a in evals:  # linear probe, 10 and 100 shots, 5 seeds, the same for every encoder
        assert (_opt(a, "--protocol"), _opt(a, "--shots"), _opt(a, "--seeds")) == ("linear-probe", "10,100", "5")
        assert _opt(a, "--dataset") == _opt(view, "--out") and _opt(a, "--out") in st["report-heldout"][0]
    with pytest.raises(UserError, match="IMU site"):
        plan_for_budget(15, imu_site="ankle")


def test_an_out_of_the_plan_before_the_site_is_refused(tmp_path):
    old = asdict(plan_for_budget(15))
    for key in ("imu_site", "heldout_subjects", "heldout_minutes", "heldout_shots", "heldout_seeds"):
        old.pop(key)
    (tmp_path / "plan.json").write_text(json.dumps(old))
    with pytest.raises(UserError, match="earlier version.*imu_site"):
        run_demo(tmp_path, 15, runner=lambda a: 0)
    with pytest.raises(UserError, match="earlier version.*imu_site"):
        run_demo(tmp_path, 15, runner=lambda a: 0, imu_site="waist")


def test_report_shows_siglip_minus_control_on_the_heldout_corpus(tmp_path):
    argv = _demo_results(tmp_path)
    plan, st = _stages(tmp_path)
    # held-out corpus: true pairing adds +0.06 at 10 shots (the HAPT fakes add +0.08)
    gains = {"siglip": (0.10, 0.06), CONTROL_LABEL: (0.10, 0.0), "clip": (0.0, 0.0), "imu2clip": (0.0, 0.0),
             "imu-mae": (0.0, 0.0)}
    for d, label, p in pretrained_runs(plan):
        [ev] = st[f"evaluate-heldout-{d}"]
        _fake_evaluation(tmp_path / _opt(ev, "--out"), label, *gains[label], encoder=_opt(ev, "--encoder"),
                         shots=(10, 100), protocols=("linear-probe",))
    [ev] = st["evaluate-heldout-random"]
    _fake_evaluation(_opt(ev, "--out"), "random", 0.0, shots=(10, 100), protocols=("linear-probe",))
    assert main(st["report-heldout"][0]) == 0 and main(argv) == 0
    text = (tmp_path / "report.md").read_text()
    sec = text[text.index("## Held-out simulated corpus"):]
    assert "12 other simulated people (head IMU)" in sec and "seed 2" in sec
    line10 = next(ln for ln in sec.splitlines() if ln.startswith("- linear-probe, 10 shots"))
    assert "siglip − siglip (shuffled pairs) = +0.060" in line10 and "siglip − random = +0.160" in line10
    hapt = text[text.index("## Few-shot evaluation"):text.index("## Held-out simulated corpus")]
    assert "siglip − siglip (shuffled pairs) = +0.080" in hapt  # HAPT's section keeps its own numbers
    merged = json.loads((tmp_path / "heldout" / "results.json").read_text())
    assert {c["reference"] for c in merged["control_comparisons"]} == {CONTROL_LABEL}
