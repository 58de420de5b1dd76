"""Run every benchmark in one go and print each side-by-side ratio.

    python benchmarks/run_all.py            # all benchmarks, default sizes
    python benchmarks/run_all.py --quick    # smaller inputs (smoke run)
    python benchmarks/run_all.py --only ingest,predict

Each benchmark is a standalone script in this folder (bench_<name>.py) that measures the thing and
its baseline side by side in the same run, on the same inputs, and prints ratios. This runner calls
them one after another (never in parallel: they time themselves) and collects their last lines
into one summary at the end. Record the figures, with the machine, in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["ingest", "pretrain", "predict", "limits"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of " + ",".join(BENCHES))
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}")
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}")
    summary = []
    status = 0
    for name in names:
        script = HERE / f"bench_{name}.py"
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(proc.stdout, end="")
        lines = [ln for ln in proc.stdout.splitlines() if "ratio" in ln.lower() or "goal" in ln.lower()]
        summary.append((name, proc.returncode, time.perf_counter() - t0, lines))
        status = status or proc.returncode
    print("\n=== summary")
    for name, rc, secs, lines in summary:
        print(f"[{name}] exit {rc}, {secs:.0f} s")
        for ln in lines:
            print(f"    {ln.strip()}")
    return status


if __name__ == "__main__":
    sys.exit(main())
