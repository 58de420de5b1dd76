"""``crossmodal-har zeroshot``: retrieval and zero-shot classification of a cross-modal run."""

from __future__ import annotations

import argparse

NAME = "zeroshot"
HELP = "zero-shot retrieval and classification of a run"
DESCRIPTION = (
    "Embed the windows of a paired store with a pretraining run's IMU and video towers. Retrieval "
    "among all evaluated windows (R@1, R@3, R@10, MRR with chance levels); zero-shot classification: "
    "each IMU window gets the class whose mean video embedding over OTHER subjects' windows is nearest "
    "(no IMU label used). Writes OUT/results.json."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from crossmodal_har.commands._args.flags import add_device_flag, add_threads_flag

    parser.add_argument("--run", required=True, help="pretraining run directory (crossmodal-har pretrain)")
    parser.add_argument("--store", required=True, help="paired window store with labels")
    parser.add_argument("--out", required=True, help="output directory for results.json")
    parser.add_argument("--split", choices=["test", "all"], default="test",
                        help="the run's held-out test subjects (default) or every window of the store")
    parser.add_argument("--name", default=None,
                        help="label of this run in report tables (default: the run's method), e.g. a control run")
    parser.add_argument("--batch-size", type=int, default=64)
    add_device_flag(parser)
    add_threads_flag(parser)


def run(args: argparse.Namespace) -> int:
    from crossmodal_har.device import resolve_device
    from crossmodal_har.evaluate.zeroshot import format_results, run_zeroshot
    from crossmodal_har.io import guard_output_dir

    guard_output_dir(("--out", args.out), [("--run", args.run), ("--store", args.store)], files=("results.json",))

    res = run_zeroshot(args.run, args.store, args.out, split=args.split, batch_size=args.batch_size,
                       device=str(resolve_device(args.device)), name=args.name)
    print(format_results(res))
    print(f"wrote {args.out}/results.json")
    return 0
