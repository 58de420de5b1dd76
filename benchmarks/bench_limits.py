"""Hostile inputs against ordinary ones of the same size, through ``crossmodal-har predict`` (issue 23).

    python benchmarks/bench_limits.py [--quick]

1. A 1.5 MB Empatica zip bomb (``ACC.csv`` deflated ~1000x) beside a valid E4 zip of about the same
   size: wall time and peak RSS of the process that refuses it (target: < 2 s, < 300 MB).
2. A recording with one row 3000 years after the others beside the same recording without it:
   wall time (target: < 30 s).

Each case runs the CLI in a child process under GNU ``/usr/bin/time`` (its peak RSS), so the figures
include Python's start-up, as a user sees it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE.parent / "tests")]

from helpers.bundles import make_acc_bundle, make_bundle, make_recording  # noqa: E402

YEAR_S = 365.25 * 86400
TIME = "/usr/bin/time"  # GNU time: the child's peak RSS


def run(argv):
    """(exit code, seconds, peak RSS MiB, last stderr line) of ``crossmodal-har argv`` in a child
    (peak RSS from GNU time's %M)."""
    t0 = time.perf_counter()
    p = subprocess.run([TIME, "-f", "MAXRSS_KB %M", sys.executable, "-m", "crossmodal_har", *argv],
                       capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    lines = p.stderr.strip().splitlines()
    kb = [int(ln.split()[1]) for ln in lines if ln.startswith("MAXRSS_KB ")]
    last = ([ln for ln in lines if ln.startswith("error:")] or [""])[-1]
    return p.returncode, seconds, kb[-1] / 1024 if kb else float("nan"), last


def zip_bomb(path: Path, total: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf, \
            zf.open("ACC.csv", "w", force_zip64=True) as f:
        f.write(b"1700000000,1700000000,1700000000\n32,32,32\n")
        block = b"0,0,64\n" * (8 * 1024 * 1024 // 7)
        for _ in range(total // len(block)):
            f.write(block)
    return path


def valid_e4(path: Path, size: int) -> Path:
    rng = np.random.default_rng(0)
    xyz = rng.integers(-64, 64, (size // 4, 3))  # ~10-byte lines that deflate ~2.5x
    text = "1700000000,1700000000,1700000000\n32,32,32\n" + "\n".join(f"{a},{b},{c}" for a, b, c in xyz) + "\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ACC.csv", text)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    env_path = str(HERE.parent / "src")
    os.environ["PYTHONPATH"] = env_path + os.pathsep + os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        acc, six = make_acc_bundle(d / "acc"), make_bundle(d / "six")
        bomb = zip_bomb(d / "bomb.zip", int(1.0e9))
        good = valid_e4(d / "e4.zip", bomb.stat().st_size)
        print(f"zip bomb {bomb.stat().st_size / 1e6:.2f} MB, valid E4 zip {good.stat().st_size / 1e6:.2f} MB")
        rb = run(["predict", "--model", str(acc), "--input", str(bomb), "--out", str(d / "b.csv")])
        rg = run(["predict", "--model", str(acc), "--input", str(good), "--out", str(d / "g.csv"), "--nonwear", "off"])
        print(f"  bomb : exit {rb[0]}, {rb[1]:.2f} s, peak RSS {rb[2]:.0f} MiB  | {rb[3][:110]}")
        print(f"  valid: exit {rg[0]}, {rg[1]:.2f} s, peak RSS {rg[2]:.0f} MiB")
        rec = make_recording(d / "rec.csv", seconds=60 if a.quick else 600)
        df = pd.read_csv(rec)
        df["time"] = df["time"] / 1000.0 + 1.7e9
        df.to_csv(d / "plain.csv", index=False)
        df.loc[len(df) - 1, "time"] += 3000 * YEAR_S
        df.to_csv(d / "jump.csv", index=False)
        units = ["--acc-unit", "m/s^2", "--gyro-unit", "rad/s"]
        rp = run(["predict", "--model", str(six), "--input", str(d / "plain.csv"), "--out", str(d / "p.csv"), *units])
        rj = run(["predict", "--model", str(six), "--input", str(d / "jump.csv"), "--out", str(d / "j.csv"), *units,
                  "--report", str(d / "rep")])
        print(f"  3000-year jump: exit {rj[0]}, {rj[1]:.2f} s; same recording without it: exit {rp[0]}, {rp[1]:.2f} s")
        print(f"limits (ratio): bomb refused in {rb[1]:.2f} s ({rb[1] / rg[1]:.2f}x a valid zip), peak RSS {rb[2]:.0f} MiB "
              f"({rb[2] / rg[2]:.2f}x); "
              f"3000-year jump {rj[1]:.2f} s ({rj[1] / rp[1]:.2f}x without the jump)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
