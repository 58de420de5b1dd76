"""Kill a real ingest process (SIGKILL) after its first shard appears, re-run it, and compare the
result with an uninterrupted run: same IMU bytes, same frames, same manifest, same report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.pairs.store import WindowStore
from helpers.sessions import make_session


def _cmd(src, out):
    return [sys.executable, "-m", "crossmodal_har", "-q", "ingest", "--src", str(src), "--out", str(out),
            "--shard-size", "1", "--no-progress"]


def _env():
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _shards(out: Path):
    d = out / "shards"
    return [p for p in d.iterdir() if not p.name.startswith(".")] if d.is_dir() else []


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(tmp_path):
    src = tmp_path / "src"
    for i in range(6):
        make_session(src, f"s{i:02d}", seconds=15, fps=10, seed=i)
    ref = tmp_path / "ref"
    subprocess.run(_cmd(src, ref), env=_env(), check=True, timeout=300)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(src, out), env=_env(), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not _shards(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    n_ref = len(_shards(ref))
    assert 0 < len(_shards(out)) < n_ref  # really interrupted part-way
    assert not (out / "store.json").exists()

    subprocess.run(_cmd(src, out), env=_env(), check=True, timeout=300)
    a, b = WindowStore(ref), WindowStore(out)
    assert len(a) == len(b) > 0
    assert [s["name"] for s in a.shards] == [s["name"] for s in b.shards]
    assert np.asarray(a.imu).tobytes() == np.asarray(b.imu).tobytes()
    np.testing.assert_array_equal(np.asarray(a.video), np.asarray(b.video))
    pd.testing.assert_frame_equal(a.manifest, b.manifest)
    ra = json.loads((ref / "report.json").read_text())
    rb = json.loads((out / "report.json").read_text())
    assert (ra["windows_kept"], ra["windows_dropped"]) == (rb["windows_kept"], rb["windows_dropped"])
    assert len(_shards(out)) == n_ref  # no duplicates or leftovers
    assert not [p for p in (out / "shards").iterdir() if p.name.startswith(".tmp")]
    # a third run finds nothing to do and changes nothing
    subprocess.run(_cmd(src, out), env=_env(), check=True, timeout=300)
    assert np.asarray(WindowStore(out).imu).tobytes() == np.asarray(a.imu).tobytes()
