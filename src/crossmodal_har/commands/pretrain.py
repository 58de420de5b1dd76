"""``crossmodal-har pretrain``: cross-modal (or IMU-only) pretraining into a run directory."""

from __future__ import annotations

import argparse
import os

from crossmodal_har.commands._args.flags import (DeprecatedAlias, add_device_flag, add_overrides_flag, add_progress_flag,
                                            add_threads_flag, config_flags, parse_duration)

NAME = "pretrain"
HELP = "pretrain an IMU encoder (with video, or IMU alone)"
DESCRIPTION = (
    "Pretrain on a window store (crossmodal-har ingest). Writes RUN/config.yaml, metrics.csv, "
    "tensorboard/, checkpoint.pt (for --resume), the IMU encoder (encoder.safetensors + encoder.json, "
    "for 'crossmodal-har evaluate --encoder RUN') and the whole model (model.safetensors + model.json, "
    "for 'crossmodal-har zeroshot --run RUN'). --config takes a file or a named config "
    "(siglip, siglip-tiny, clip, clip-tiny, imu2clip, imu2clip-tiny, imu-mae, imu-mae-tiny, paper/...)."
)
# flag -> PretrainJob field
JOB_KEYS = {"time_budget": "time_budget_s", **{k: k for k in (
    "config", "overrides", "method", "max_steps", "seed", "allow_download", "store", "synthetic", "channels", "resume",
    "devices", "accelerator", "num_nodes")}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="config file or name (default: the named config of --method)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--store", help="window store directory (crossmodal-har ingest)")
    data.add_argument("--synthetic", action="store_true",
                      help="train on built-in synthetic pairs instead of a store (smoke test)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--method", choices=["siglip", "clip", "imu2clip", "imu-mae"], help="override the config's method")
    add_overrides_flag(p, "optim.lr=3e-4", what="a config field")
    p.add_argument("--channels", choices=["acc", "acc+gyro"],
                   help="what the IMU encoder reads: acc+gyro (6 channels) or acc (accelerometer only, 3 channels); "
                        "default: the store's (acc+gyro unless it was ingested accelerometer-only); a resumed run "
                        "keeps its own")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="processes (GPUs, or CPU processes with gloo) per node (default 1)")
    add_device_flag(p, default="auto", dest="accelerator")
    p.add_argument("--accelerator", choices=["auto", "cpu", "gpu", "cuda"], action=DeprecatedAlias, new="--device",
                   help=argparse.SUPPRESS)
    add_threads_flag(p)
    p.add_argument("--num-nodes", type=int, default=1,
                   help="nodes (under torchrun --nnodes or SLURM srun; checked against the launcher)")
    p.add_argument("--max-steps", type=int, help="optimiser steps for the run (overrides epochs)")
    p.add_argument("--seed", type=int, help="the run's seed (config field seed: model init, data order, augmentation; "
                   "default: the config's, 0); pretrain a method with several seeds to see the spread across "
                   "pretraining runs")
    p.add_argument("--time-budget", type=parse_duration,
                   help="stop cleanly after this much training time (600, 10m, 2h); resumable")
    p.add_argument("--allow-download", action="store_true",
                   help="let pretrained hub ids (video_pretrained/imu_pretrained) download")
    add_progress_flag(p)


def run(args: argparse.Namespace) -> int:
    from crossmodal_har.config import build_config
    from crossmodal_har.train.job import PretrainJob, run_job

    job = build_config(PretrainJob, flags=config_flags(args, JOB_KEYS), where="pretrain")
    done = run_job(job, args.out, show_progress=not args.no_progress)
    if int(os.environ.get("RANK", "0") or 0) != 0:  # under torchrun/SLURM: rank 0 reports
        return 0
    print(done.summary_line())
    print(f"run directory: {args.out}")
    return 0
