"""Cross-corpus retrieval pair by pair: which pairs of simulated corpora transfer, and why (issue 24, item 5).

    python benchmarks/cross_corpus_pairs.py --out xcorpus-out                      # 3 x 3 pairs, both sides
    python benchmarks/cross_corpus_pairs.py --out tiny --pretrain-seeds 101 --target-seeds 102,202 \
        --pretrain-subjects 2 --pretrain-minutes 2 --target-subjects 2 --target-minutes 2 --steps 20

Every pretraining corpus (seed A) x target corpus (seed B) x video side (diff, imagenet) x training seed:
simulate, ingest, pretrain siglip-tiny for --steps, zeroshot --split all on B; then descriptors of each pair
(scene looks, activity mix, subject motion, chance) and Spearman correlations of R@1/chance with them
(:mod:`crossmodal_har.crosscorpus.study`). Resumable: a re-run skips finished cells; more seeds may be added
to the same --out. Writes OUT/results.json and OUT/report.md and prints the report.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src")]

from crossmodal_har.cli import main as cli_main  # noqa: E402
from crossmodal_har.crosscorpus.study import PairsPlan, render, run_pairs_study  # noqa: E402
from crossmodal_har.errors import UserError  # noqa: E402


def _ints(text: str):
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory (resumable)")
    ap.add_argument("--pretrain-seeds", type=_ints, default=[101, 201, 301], help="pretraining corpora (simulator seeds)")
    ap.add_argument("--target-seeds", type=_ints, default=[102, 202, 302], help="target corpora (simulator seeds)")
    ap.add_argument("--sides", default="diff,imagenet", help="video sides, comma-separated (diff, imagenet)")
    ap.add_argument("--train-seeds", type=_ints, default=[0], help="pretrain --seed values per (A, side)")
    ap.add_argument("--pretrain-subjects", type=int, default=8)
    ap.add_argument("--pretrain-minutes", type=float, default=40.0, help="total simulated minutes of A")
    ap.add_argument("--target-subjects", type=int, default=6)
    ap.add_argument("--target-minutes", type=float, default=10.0, help="total simulated minutes of B")
    ap.add_argument("--steps", type=int, default=600, help="siglip-tiny optimiser steps (fixed, no time budget)")
    ap.add_argument("--imu-site", default="head", help="simulate --mounting (the camera is on the head)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--restart", action="store_true", help="redo every stage")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    plan = PairsPlan(pretrain_seeds=a.pretrain_seeds, target_seeds=a.target_seeds, sides=a.sides.split(","),
                     train_seeds=a.train_seeds, pretrain_subjects=a.pretrain_subjects,
                     pretrain_minutes=a.pretrain_minutes, target_subjects=a.target_subjects,
                     target_minutes=a.target_minutes, steps=a.steps, imu_site=a.imu_site, workers=a.workers)
    t0 = time.perf_counter()
    try:
        res = run_pairs_study(a.out, plan, runner=cli_main, restart=a.restart)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(res))
    print(f"\n{len(res.cells)} cells, {len(res.pairs)} pairs; {time.perf_counter() - t0:.0f} s; wrote {a.out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
