"""crossmodal-har collate OUT_DIR: the cohort table of a predict study (one row per recording: participant, device,
days, valid days, wear hours, calibration before/after, minutes per activity per valid day, exit status and error),
written as OUT_DIR/cohort.csv and OUT_DIR/cohort.parquet. A study run without --shard writes it at its end; after a
SLURM job array (predict --shard i/K), run it once all shards are done."""

from __future__ import annotations

import argparse

NAME = "collate"
HELP = "one cohort table (CSV, Parquet) of a predict study"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", metavar="OUT_DIR", help="the --out folder of a predict study")


def run(args: argparse.Namespace) -> int:
    from crossmodal_har.infer.cohort import collate

    result = collate(args.out_dir)
    print(result.text())
    return 0
