"""Realism gates: the simulated IMU (head, waist, wrist) against UCI HAPT's waist phone (issue 24).

    python benchmarks/realism_gates.py                         # seed 0, 8 subjects x 10 min each
    python benchmarks/realism_gates.py --seed 1 --subjects 12 --minutes 20

Simulates IMU only (no video) with :func:`crossmodal_har.simulator.realism.simulated_windows` for
each mounting, reads HAPT's raw recordings (the offline copy), computes the statistics of
:func:`~crossmodal_har.simulator.realism.window_stats` on 5 s windows at 50 Hz and prints one markdown
table: a row per statistic, a column per corpus, the gate and whether the simulated waist passes it.
Exit status 1 when a waist gate fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src")]

from crossmodal_har.simulator import realism  # noqa: E402

MOUNTINGS = ("head", "waist", "wrist")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="simulator seed")
    ap.add_argument("--subjects", type=int, default=8, help="simulated people")
    ap.add_argument("--minutes", type=float, default=10.0, help="simulated minutes per person")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    columns = {}
    for m in MOUNTINGS:
        w = realism.simulated_windows(a.seed, a.subjects, a.minutes, m)
        columns[f"simulated {m}"] = realism.window_stats(*w)
    columns["HAPT (waist phone)"] = realism.window_stats(*realism.hapt_windows())
    print(f"seed {a.seed}, {a.subjects} simulated people x {a.minutes:g} min each; "
          f"HAPT raw recordings; 5 s windows at 50 Hz, median filter {realism.MEDIAN_KERNEL}\n")
    print(realism.markdown_table(columns, ref="HAPT (waist phone)", judged="simulated waist"))
    results = realism.check_gates(columns["simulated waist"], columns["HAPT (waist phone)"])
    failed = [r.gate for r in results if not r.passed]
    print(f"\nwaist gates: {len(results) - len(failed)}/{len(results)} pass"
          + (f" (failed: {', '.join(failed)})" if failed else "") + f"; {time.perf_counter() - t0:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
