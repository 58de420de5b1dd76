"""Outputs that cannot be lost (issue 23, item 3): a run claims its outputs before the work (a lock
beside each), a second run on the same output is refused in one line while the first holds it;
a run's files are committed together at its end (all or nothing), --force replaces only then, and a
full disk or a name the file system cannot hold is one line naming the path."""

from __future__ import annotations

import errno
import subprocess
import sys
import time

import pytest

from helpers.bundles import UNITS, make_bundle, make_recording

from crossmodal_har.cli import main
from crossmodal_har.errors import UserError
from crossmodal_har.io import atomic_write, atomic_write_text, guard_outputs
from crossmodal_har.outputs import output_session


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("claims")
    return {"bundle": make_bundle(d / "bundle"), "rec": make_recording(d / "rec.csv", seconds=40)}


def args(env, out, *extra):
    return ["predict", "--model", str(env["bundle"]), "--input", str(env["rec"]), "--out", str(out), *UNITS, *extra]


def one_line(capsys, *words):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.slow
def test_two_concurrent_runs_on_one_output_one_refuses_none_is_lost(env, tmp_path, capsys):
    out = tmp_path / "p.csv"
    code = ("import sys, time\n"
            "import crossmodal_har.infer.source as P\n"
            "orig = P.iter_chunks\n"
            "def slow(*a, **k):\n"
            "    for c in orig(*a, **k):\n"
            "        yield c\n"
            "        time.sleep(0.5)\n"
            "P.iter_chunks = slow\n"
            "from crossmodal_har.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    first = subprocess.Popen([sys.executable, "-c", code, *args(env, out, "--chunk-rows", "300")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock = tmp_path / ".p.csv.lock"
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None and not lock.exists():
        time.sleep(0.05)
    assert lock.exists(), first.communicate()[1]
    # the second run is refused in one line while the first works (the old code said "wrote" twice)
    assert main(args(env, out, "--force")) == 2
    one_line(capsys, "--out", str(out), "is being written by another run (pid")
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err.decode()
    assert out.exists() and (tmp_path / "p.summary.json").exists() and not lock.exists()
    lines = out.read_text().splitlines()
    assert len(lines) > 10 and lines[0].startswith("start,")
    # once the first is done, the output is free again (and --force replaces it)
    assert main(args(env, out, "--force")) == 0


def test_a_file_that_appears_during_the_run_is_never_replaced(tmp_path):
    out = tmp_path / "o.txt"
    with pytest.raises(UserError, match="appeared while this run was working"):
        with output_session():
            guard_outputs([("--out", out)])
            atomic_write_text(out, "this run's result")
            assert not out.exists()  # staged: nothing of the run visible before its end
            out.write_text("someone else's file")
    assert out.read_text() == "someone else's file"
    assert [p.name for p in tmp_path.iterdir()] == ["o.txt"]


def _disk_full(*_a, **_k):
    def writer(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")
    atomic_write(_a[0] / "daily_summary.csv", writer)


def test_a_full_disk_commits_nothing_and_force_keeps_the_old_files(env, tmp_path, capsys, monkeypatch):
    out, rep = tmp_path / "p.csv", tmp_path / "rep"
    monkeypatch.setattr("crossmodal_har.infer.predict.write_report", _disk_full)
    assert main(args(env, out, "--report", str(rep))) == 2
    one_line(capsys, str(rep / "daily_summary.csv"), "No space left on device")
    assert not out.exists() and not (tmp_path / "p.summary.json").exists()  # all or nothing
    out.write_text("old result")
    assert main(args(env, out, "--report", str(rep), "--force")) == 2
    capsys.readouterr()
    assert out.read_text() == "old result"  # --force replaces only at the end of a run that succeeds
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == [], leftovers


@pytest.mark.parametrize("name,words", [("x" * 256 + ".csv", ["bytes", "allows"]),
                                        ("y" * 240 + ".csv", ["bytes", "temporary"])])
def test_names_the_file_system_cannot_hold_are_one_line(env, tmp_path, capsys, name, words):
    assert main(args(env, tmp_path / name)) == 2
    one_line(capsys, *words)
    assert list(tmp_path.iterdir()) == []


def test_a_command_run_by_a_command_shares_its_claims(tmp_path):
    """The demo runs `report --out DEMO_DIR` inside its own claim on DEMO_DIR: not another run."""
    from crossmodal_har.io import guard_output_dir

    d = tmp_path / "demo"
    with output_session():
        guard_output_dir(("--out", d))
        d.mkdir()
        with output_session():
            guard_output_dir(("--out", d), files=("report.md",))
            atomic_write_text(d / "report.md", "x")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["demo", "report.md"]
