"""Progress in logs (issue 21 item 4): when output is not a terminal, long steps log done/total, rate and ETA at
most every interval (30 s; $CROSSMODAL_HAR_PROGRESS_S here); --no-progress silences it."""

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crossmodal_har.progress import LogProgress, progress
from crossmodal_har.signals.generic import write_generic_dataset
from crossmodal_har.signals.units import Units

SRC = Path(__file__).resolve().parents[1] / "src"
LINE = re.compile(r"supervised: [\d,]+/[\d,]+ step \(\d+ %\), [\d.e+-]+ step/s, ETA \d+:\d\d, \d+:\d\d elapsed")


def test_log_lines_at_most_every_interval_with_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="crossmodal_har.progress")
    bar = LogProgress(total=40, desc="work", unit="item", interval_s=0.05)
    t0 = time.monotonic()
    for _ in range(40):
        time.sleep(0.01)
        bar.update(1)
    bar.close()
    elapsed = time.monotonic() - t0
    lines = [r.getMessage() for r in caplog.records]
    assert 2 <= len(lines) <= elapsed / 0.05 + 2  # never more often than the interval (+ the closing line)
    assert len(lines) >= elapsed / 0.05 * 0.5  # and about every interval
    assert re.match(r"work: \d+/40 item \(\d+ %\), [\d.]+ item/s, ETA 0:\d\d, 0:00 elapsed", lines[0])
    assert lines[-1].startswith("work: 40/40 item (100 %)") and lines[-1].endswith("- done")


def test_a_stalled_step_is_still_heard_from(caplog):
    caplog.set_level(logging.INFO, logger="crossmodal_har.progress")
    bar = LogProgress(total=10, desc="slow", unit="step", interval_s=0.05)
    bar.update(1)
    time.sleep(0.3)  # no update for 6 intervals: the timer still reports
    n = len(caplog.records)
    bar.close()
    assert n >= 3 and all(r.getMessage().startswith("slow: 1/10 step") for r in caplog.records)
    time.sleep(0.15)
    assert len(caplog.records) == n + 1  # closed: the done line, then silence


def test_quiet_step_and_disabled_progress_log_nothing(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="crossmodal_har.progress")
    fast = LogProgress(total=5, desc="fast", interval_s=30.0)  # ends before the first interval: silent
    for _ in range(5):
        fast.update()
    fast.close()
    monkeypatch.setenv("CROSSMODAL_HAR_PROGRESS_S", "0")
    off = progress(range(5), desc="off", enabled=False)
    assert list(off) == list(range(5))
    assert not caplog.records
    on = progress(range(3), desc="on")  # not a terminal under pytest: log lines, every update at interval 0
    assert list(on) == [0, 1, 2] and len(caplog.records) == 3


def make_dataset(root: Path, subjects: int = 6, seconds: float = 40.0, rate: float = 50.0) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    recs, labels = [], []
    for s in range(subjects):
        parts = []
        for c, name in enumerate(("still", "walk")):
            x = rng.normal(0, 0.02, (len(t), 6))
            x[:, 2] += 1.0
            if name == "walk":
                x[:, 0] += 0.5 * np.sin(2 * np.pi * 1.8 * t)
            parts.append(x)
            labels.append({"recording": f"r{s}", "start": c * seconds, "end": (c + 1) * seconds, "label": name,
                           "subject": f"p{s}"})
        data = np.concatenate(parts)
        df = pd.DataFrame(data, columns=["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"])
        df.insert(0, "time", np.arange(len(data)) / rate)
        recs.append((f"r{s}", df))
    return write_generic_dataset(root, recs, pd.DataFrame(labels), Units("g", "rad/s", "s"))


def train_to_file(tmp_path: Path, name: str, *extra: str) -> str:
    log = tmp_path / f"{name}.log"
    # interval 0: a line per update, so the count does not depend on how fast this machine trains (with
    # 0.3 s a quick run made one line and failed; the timer itself is tested above)
    env = {**os.environ, "PYTHONPATH": str(SRC), "CROSSMODAL_HAR_PROGRESS_S": "0"}
    with open(log, "w") as fh:  # output to a file: not a terminal
        rc = subprocess.run([sys.executable, "-m", "crossmodal_har", "train-classifier", "--dataset",
                             str(tmp_path / "ds"), "--out", str(tmp_path / name), "--arch", "convgru-tiny",
                             "--epochs", "8", "--patience", "8", "--batch-size", "16", "--cache-dir",
                             str(tmp_path / "cache"), *extra], stdout=fh, stderr=subprocess.STDOUT, env=env,
                            timeout=600).returncode
    text = log.read_text()
    assert rc == 0, text[-3000:]
    return text


def test_train_classifier_to_a_file_logs_progress_and_no_progress_silences_it(tmp_path):
    make_dataset(tmp_path / "ds")
    text = train_to_file(tmp_path, "m1")
    lines = [ln for ln in text.splitlines() if LINE.search(ln)]
    assert len(lines) >= 2, text[-3000:]
    done = [int(re.search(r"supervised: ([\d,]+)/", ln).group(1).replace(",", "")) for ln in lines]
    assert done == sorted(done) and "epoch" in lines[-1] and "val_bacc" in lines[-1]
    quiet = train_to_file(tmp_path, "m2", "--no-progress")
    assert not [ln for ln in quiet.splitlines() if LINE.search(ln) or "step/s" in ln]
