"""Evaluation that guides (issue 21 item 5): no comparison of a method with itself, the smallest p the seeds
allow beside every test with advice when it is above 0.05, --folds loso suggested for splits with fewer than 3
test subjects, and no empty --out left by a failed run."""

import json
import sys
from pathlib import Path

import pytest

from crossmodal_har.cli import main
from crossmodal_har.evaluate.comparisons import compute_comparisons, paired_test, seeds_for_p, smallest_p
from crossmodal_har.evaluate.tables import render_comparisons, render_console_comparisons

sys.path.insert(0, str(Path(__file__).parent))
from test_eval_cli import TINY, make_dataset  # noqa: E402


def runs(method, offset, protocols=("supervised", "linear-probe"), seeds=3):
    out = []
    for p in protocols:
        for s in range(seeds):
            ba = 0.5 + offset + 0.01 * s + (0.05 if p == "supervised" else 0.0)
            out.append({"method": method, "protocol": p, "shots": "all", "seed": s, "fold": None,
                        "test_subjects": [f"p{s}"], "test": {"balanced_accuracy": ba}})
    return out


def test_smallest_p_follows_the_number_of_pairs():
    assert smallest_p(3) == 0.25 and smallest_p(5) == 0.0625 and smallest_p(6) == 2 / 64
    assert seeds_for_p(0.05) == 6
    # it is reached: three differences of one sign give exactly the smallest p
    t = paired_test([0.1, 0.2, 0.15])
    assert t["p_value"] == t["p_min"] == 0.25


def test_no_comparison_of_a_random_encoder_with_itself():
    one = runs("random", 0.0)
    assert compute_comparisons(one, within_method=False)[0] == []
    assert len(compute_comparisons(one)[0]) == 1  # a pretrained encoder's protocols vs its supervised: kept
    both, ref = compute_comparisons(runs("random", 0.0) + runs("siglip", 0.1), within_method=False)
    assert ref == "random" and both and all(c["method"] != c["reference"] for c in both)


def test_every_test_shows_its_smallest_p_and_advice_above_005():
    comps, ref = compute_comparisons(runs("random", 0.0) + runs("siglip", 0.1))
    table = "\n".join(render_comparisons(comps, ref))
    assert "smallest possible p" in table and "| 0.25 | 0.25 |" in table
    assert "Run --seeds 6 or more" in table
    console = render_console_comparisons(comps)
    assert all("smallest possible 0.25 with 3 pairs" in ln for ln in console[:len(comps)])
    assert "Run --seeds 6 or more" in console[-1]
    comps6, ref6 = compute_comparisons(runs("random", 0.0, seeds=6) + runs("siglip", 0.1, seeds=6))
    assert "Run --seeds" not in "\n".join(render_comparisons(comps6, ref6))


@pytest.mark.slow
def test_random_encoder_two_protocols_six_subjects_guides(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds")  # 6 subjects: the default split tests on 1
    out = tmp_path / "out"
    rc = main(["evaluate", "--dataset", str(ds), "--encoder", "random", "--protocol", "supervised,linear-probe",
               "--shots", "all", "--seeds", "2", "--out", str(out), "--cache-dir", str(tmp_path / "c")] + TINY)
    assert rc == 0
    printed = capsys.readouterr()
    msgs = printed.err  # the log (main sets up logging on stderr)
    assert "--folds loso" in msgs and "tests on only 1 of 6 subjects" in msgs
    assert "a method with itself" in msgs
    res = json.loads((out / "results.json").read_text())
    assert res["comparisons"] == [] and "vs random" not in printed.out


def test_a_failed_evaluate_leaves_no_empty_out(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    rc = main(["evaluate", "--dataset", str(tmp_path / "empty"), "--out", str(out), "--no-progress"])
    assert rc == 2 and "dataset.json not found" in capsys.readouterr().err
    assert not out.exists()
    out.mkdir()  # an --out the user made stays
    assert main(["evaluate", "--dataset", str(tmp_path / "empty"), "--out", str(out), "--no-progress"]) == 2
    assert out.is_dir()


def test_report_of_one_random_evaluation_compares_nothing_with_itself(tmp_path, capsys):
    from test_comparisons import _write

    both = ("supervised", "linear-probe")
    rnd = _write(tmp_path / "rnd", "random", 0.0, protocols=both)
    assert main(["report", str(rnd), "--out", str(tmp_path / "r1")]) == 0
    assert json.loads((tmp_path / "r1" / "results.json").read_text())["comparisons"] == []
    assert "a method with itself" in capsys.readouterr().err
    pre = _write(tmp_path / "pre", "siglip", 0.1, protocols=both)  # a pretrained encoder: probe vs supervised
    assert main(["report", str(pre), "--out", str(tmp_path / "r2")]) == 0
    assert json.loads((tmp_path / "r2" / "results.json").read_text())["comparisons"]
