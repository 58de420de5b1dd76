"""``--devices N`` workers stop with their launcher: SIGTERM reaches only the parent process (unlike
Ctrl-C in a terminal, which reaches the whole process group), so the launcher must stop them."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from crossmodal_har.cli import _stop_on_sigterm
from crossmodal_har.train.distributed import spawn
from helpers.sleeper import sleep_forever
_stop_on_sigterm()
try:
    spawn(sleep_forever, 2, ({pids!r},))
except KeyboardInterrupt:
    sys.exit(143)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_to_the_launcher_stops_its_workers(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(here=str(HERE), pids=str(pids))],
                            stderr=subprocess.PIPE)
    workers = []
    try:
        deadline = time.time() + 300
        while time.time() < deadline and len(list(pids.glob("*.pid"))) < 2 and proc.poll() is None:
            time.sleep(0.2)
        workers = [int(p.read_text()) for p in pids.glob("*.pid")]
        assert len(workers) == 2, proc.stderr.read().decode() if proc.poll() is not None else "workers never started"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    assert rc == 143
    time.sleep(0.5)
    assert not any(_alive(w) for w in workers)
