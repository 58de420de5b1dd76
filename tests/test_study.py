"""A study in one command (issue 19 item 8): ``predict`` over a folder, a glob or a list file, one
output folder per recording, participants, resume (a finished recording with unchanged input, model
and settings is skipped; the rest redone), shards, and ``collate``'s cohort table. A bad recording
is listed with its one line and the run ends with exit status 3.

The acceptance run (12 recordings of mixed formats, ``--workers 2``, killed with SIGKILL half-way
and run again: the cohort table equals an uninterrupted run's) is the slow test at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from crossmodal_har.cli import main
from crossmodal_har.errors import UserError
from crossmodal_har.infer.cohort import collate
from crossmodal_har.infer.study import is_study, predict_any
from helpers.bundles import make_bundle, make_recording

ROOT = Path(__file__).resolve().parents[1]
UNITS = {"units.acc_unit": "m/s^2", "units.time_unit": "ms"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    recs = d / "recs"
    recs.mkdir()
    for i in range(3):
        make_recording(recs / f"p{i}.csv", seconds=90.0, seed=i)
    (recs / "broken.csv").write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n0,1,2,3,4,5,6\n0.01,x,2,3,4,5,6\n")
    (recs / "notes.md").write_text("not a recording")
    (recs / "participants.csv").write_text("file,participant\np0.csv,P-000\np1,P-001\n")
    return {"d": d, "recs": recs, "bundle": make_bundle(d / "bundle", channels="acc")}


def study(env, out, study_flags=None, **keys):
    flags = {"model": str(env["bundle"]), "input": str(env["recs"]), "out": str(out), **UNITS, **keys}
    return predict_any(flags, {"workers": None, "shard": None, "participants": None, **(study_flags or {})})


def test_study_lists_bad_recordings_resumes_and_collates(env, capsys):
    out = env["d"] / "out"
    rc = main(["predict", "--model", str(env["bundle"]), "--input", str(env["recs"]), "--out", str(out),
               "--acc-unit", "m/s^2", "--time-unit", "ms"])
    cap = capsys.readouterr()
    assert rc == 3  # finished, one recording failed
    err = [line for line in cap.err.strip().splitlines() if not line.startswith(("INFO", "WARNING"))]
    assert len(err) == 1 and "1 of 4 recording(s) failed" in err[0] and "broken.csv:3" in err[0]
    assert "[2] broken: " in cap.out and str(env["recs"] / "broken.csv") + ":3: " in cap.out
    table = pd.read_csv(out / "cohort.csv")
    assert table["recording"].tolist() == ["broken", "p0", "p1", "p2"]  # stem order; notes.md is no recording
    assert table["participant"].tolist() == ["broken", "P-000", "P-001", "p2"]
    assert table["participant_from"].tolist() == ["file name", "participants.csv", "participants.csv", "file name"]
    assert table["exit_status"].tolist() == [2, 0, 0, 0]
    assert table["error"].iloc[0].startswith(str(env["recs"] / "broken.csv") + ":3: ")
    assert table["error"].iloc[1:].isna().all()
    ok = table.iloc[1:]
    assert (ok["days"] == 1).all() and (ok["valid_days"] == 0).all() and (ok["device_format"] == "csv").all()
    assert (ok["wear_hours"] > 0.01).all() and "walk_min_per_valid_day" in table
    for stem in ("p0", "p1", "p2"):
        assert {"predictions.csv", "predictions.summary.json", "daily_summary.csv", "report.html",
                "recording.json"} <= {p.name for p in (out / stem).iterdir()}
    pq = pd.read_parquet(out / "cohort.parquet")
    assert pq["recording"].tolist() == table["recording"].tolist()
    assert pq["wear_hours"].tolist()[1:] == pytest.approx(table["wear_hours"].tolist()[1:], abs=1e-9)
    before = (out / "cohort.csv").read_bytes()

    # resume: the finished recordings are skipped, the failed one is redone; the table is the same
    marks = {s: (out / s / "recording.json").read_bytes() for s in ("p0", "p1", "p2")}
    res = study(env, out)
    assert res.skipped == 3 and [m["stem"] for m in res.failed] == ["broken"]
    assert {s: (out / s / "recording.json").read_bytes() for s in marks} == marks
    assert (out / "cohort.csv").read_bytes() == before

    # a changed input is redone, the others are not
    make_recording(env["recs"] / "p2.csv", seconds=60.0, seed=7)
    res = study(env, out)
    assert res.skipped == 2 and (out / "p0" / "recording.json").read_bytes() == marks["p0"]
    assert (out / "p2" / "recording.json").read_bytes() != marks["p2"]
    assert pd.read_csv(out / "cohort.csv")["duration_h"].iloc[3] == pytest.approx(60 / 3600, abs=1e-3)

    # a changed setting redoes everything
    res = study(env, out, min_wear_hours=0.01)
    assert res.skipped == 0
    assert pd.read_csv(out / "cohort.csv")["valid_days"].tolist()[1:] == [1, 1, 1]


def test_shards_give_the_table_of_one_run(env):
    whole = study(env, env["d"] / "whole").cohort.table
    out = env["d"] / "sharded"
    parts = [study(env, out, {"shard": f"{i}/3"}) for i in range(3)]
    assert all(p.cohort is None for p in parts)
    assert sorted(m["stem"] for p in parts for m in p.marks) == ["broken", "p0", "p1", "p2"]
    assert main(["collate", str(out)]) == 0
    pd.testing.assert_frame_equal(collate(out).table, whole)


def test_list_file_glob_and_refusals(env, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(f"# two of them\n{env['recs'] / 'p0.csv'}\n\n{env['recs'] / 'p1.csv'}\n")
    assert is_study(str(lst)) and is_study(str(env["recs"] / "p*.csv")) and is_study(str(env["recs"]))
    assert not is_study(str(env["recs"] / "p0.csv"))
    res = study(env, tmp_path / "from_list", input=str(lst))
    assert [m["stem"] for m in res.marks] == ["p0", "p1"] and not res.failed
    res = study(env, tmp_path / "from_glob", input=str(env["recs"] / "p[01].csv"))
    assert [m["participant"] for m in res.marks] == ["p0", "p1"]  # no participants.csv beside a glob
    lst.write_text("nowhere.csv\n")
    with pytest.raises(UserError, match=r"list.txt:1: no such recording 'nowhere.csv'"):
        study(env, tmp_path / "x", input=str(lst))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="holds no study"):
        study(env, busy)
    with pytest.raises(UserError, match="--workers: only for a study"):
        study(env, tmp_path / "one.csv", {"workers": 2}, input=str(env["recs"] / "p0.csv"))
    with pytest.raises(UserError, match="--report/--timeline: a study writes"):
        study(env, tmp_path / "z", report=str(tmp_path / "rep"))
    with pytest.raises(UserError, match="--shard 3/3"):
        study(env, tmp_path / "y", {"shard": "3/3"})


# ------------------------------------------------------------------------------- the acceptance run

SHARED = ROOT.parent / "shared" / "data" / "devices"
REAL = ["cwa/ggirread_ax3_testfile.cwa", "cwa/openmovement_example-610-steps.cwa", "cwa/ggirread_ax3_corrupt_blocks.cwa",
        "gt3x/pygt3x_small.gt3x", "gt3x/pygt3x_ISM_Enabled.gt3x", "geneactiv/ggirread_GENEActiv_testfile.bin",
        "empatica/paradigma_embraceplus_test_data.avro"]


def _cohort_recordings(folder: Path) -> int:
    """12 recordings: the benchmark's week generator at small sizes (CSV, Parquet, .cwa), the real
    files when ../shared is present (else more generated ones), and one broken file."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_predict import write_week

    real = [SHARED / r for r in REAL if (SHARED / r).is_file()]
    n_gen = 11 - len(real)
    for i in range(n_gen):
        fmt = ("csv", "parquet", "cwa")[i % 3]
        write_week(folder / f"gen{i:02d}.{fmt}", days=0.02 + 0.005 * i, fmt=fmt, seed=i, block_s=600.0)
    for r in real:
        os.symlink(r, folder / r.name)
    (folder / "broken.cwa").write_bytes(b"\0" * 700)  # not an Axivity file
    return len(real)


def _run(cmd, **kw):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


@pytest.mark.slow
def test_killed_study_resumes_to_the_uninterrupted_table(tmp_path):
    recs = tmp_path / "recs"
    recs.mkdir()
    n_real = _cohort_recordings(recs)
    if n_real == 0:
        print("../shared/data/devices absent: generated recordings only")
    bundle = make_bundle(tmp_path / "bundle", channels="acc")
    cmd = [sys.executable, "-m", "crossmodal_har", "predict", "--model", str(bundle), "--input", str(recs),
           "--workers", "2"]
    full = _run(cmd + ["--out", str(tmp_path / "full")])
    out_full, err_full = full.communicate(timeout=600)
    assert full.returncode == 3, err_full
    cut = tmp_path / "cut"
    killed = _run(cmd + ["--out", str(cut)])
    deadline = time.time() + 600
    while len(list(cut.glob("*/recording.json"))) < 5 and killed.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert killed.poll() is None, "the study ended before it could be killed"
    os.killpg(killed.pid, signal.SIGKILL)  # the whole job, workers too, as a scheduler does
    killed.communicate()
    done_before = len(list(cut.glob("*/recording.json")))
    assert 5 <= done_before < 12
    again = _run(cmd + ["--out", str(cut)])
    out_again, err_again = again.communicate(timeout=600)
    assert again.returncode == 3, err_again
    assert "finished before" in out_again
    a, b = (tmp_path / "full" / "cohort.csv").read_bytes(), (cut / "cohort.csv").read_bytes()
    assert a.replace(b"/full/", b"/cut/") == b  # the same table (the inputs are the same files)
    table = pd.read_csv(cut / "cohort.csv")
    assert len(table) == 12
    bad = table[table["recording"] == "broken"]
    assert bad["exit_status"].tolist() == [2] and "broken.cwa" in bad["error"].iloc[0]
    assert "[2] broken: " in out_again and "1 of 12" not in err_again or "2 of 12" in err_again
    if n_real:  # the damaged real file is read in part: listed with exit status 3
        damaged = table[table["recording"] == "ggirread_ax3_corrupt_blocks"]
        assert damaged["exit_status"].tolist() == [3] and damaged["damaged_parts"].iloc[0] > 0
    assert (table[table["exit_status"] == 0]["windows_ok"] > 0).all()
    json.loads((cut / "study.json").read_text())
