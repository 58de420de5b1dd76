"""``crossmodal-har pretrain``: cross-modal (or IMU-only) pretraining into a run directory."""

from __future__ import annotations

import argparse
import logging
import re

NAME = "pretrain"
HELP = "pretrain an IMU encoder against video (siglip, clip, imu2clip) or alone (imu-mae)"
DESCRIPTION = (
    "Pretrain on a window store (crossmodal-har ingest). Writes RUN/config.yaml, metrics.csv, "
    "tensorboard/, checkpoint.pt (for --resume), the IMU encoder (encoder.safetensors + encoder.json, "
    "for `crossmodal-har evaluate --encoder RUN`) and the whole model (model.safetensors + model.json, "
    "for `crossmodal-har zeroshot --run RUN`). --config takes a file or a named config "
    "(siglip, siglip-tiny, clip, clip-tiny, imu2clip, imu2clip-tiny, imu-mae, imu-mae-tiny, paper/...)."
)

log = logging.getLogger(__name__)


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``2h``, ``1.5h``."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 600, 600s, 10m, 2h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="config file or name (default: the named config of --method)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--store", help="window store directory (crossmodal-har ingest)")
    data.add_argument("--synthetic", action="store_true",
                      help="train on built-in synthetic pairs instead of a store (smoke test)")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--method", choices=["siglip", "clip", "imu2clip", "imu-mae"],
                        help="override the config's method")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, dotted for nesting (optim.lr=3e-4); repeatable")
    parser.add_argument("--channels", choices=["acc", "acc+gyro"],
                        help="what the IMU encoder reads: acc+gyro (6 channels) or acc (accelerometer only, 3 "
                             "channels); default: the store's (acc+gyro unless it was ingested accelerometer-only); "
                             "a resumed run keeps its own")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    parser.add_argument("--devices", type=int, default=1,
                        help="processes (GPUs, or CPU processes with gloo) per node (default 1)")
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda"],
                        help="device type (default auto: GPU when available)")
    parser.add_argument("--num-nodes", type=int, default=1,
                        help="nodes (under torchrun --nnodes or SLURM srun; checked against the launcher)")
    parser.add_argument("--max-steps", type=int, help="optimiser steps for the run (overrides epochs)")
    parser.add_argument("--seed", type=int,
                        help="the run's seed (config field seed: model init, data order, augmentation; "
                             "default: the config's, 0); pretrain a method with several seeds to see the "
                             "spread across pretraining runs")
    parser.add_argument("--time-budget", type=parse_duration,
                        help="stop cleanly after this much training time (600, 10m, 2h); resumable")
    parser.add_argument("--allow-download", action="store_true",
                        help="let pretrained hub ids (video_pretrained/imu_pretrained) download")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from crossmodal_har.config import build_config
    from crossmodal_har.errors import UserError
    from crossmodal_har.io import read_json
    from crossmodal_har.train.config import PretrainConfig, load_pretrain_config, with_saved_defaults
    from crossmodal_har.train.data import ChannelSource, StoreSource
    from crossmodal_har.train.engine import pretrain

    if not args.store and not args.synthetic:
        raise UserError("pass --store STORE (a window store from `crossmodal-har ingest`) or --synthetic")
    flags = {"method": args.method, "max_steps": args.max_steps, "time_budget_s": args.time_budget,
             "seed": args.seed,
             "allow_download": True if args.allow_download else None}
    out = Path(args.out)
    if args.resume and (out / "config.json").is_file():
        if args.config:
            log.warning("--resume: using %s/config.json (the run's own config), not --config", out)
        saved = with_saved_defaults(read_json(out / "config.json"))
        if args.seed is not None and int(saved.get("seed", 0)) != args.seed:
            raise UserError(f"--resume: {out} was started with seed {saved.get('seed', 0)}, not --seed {args.seed}; "
                            "a resumed run keeps its seed")
        cfg = build_config(PretrainConfig, saved, flags=flags, overrides=args.overrides,
                           where=str(out / "config.json"))
    else:
        cfg = load_pretrain_config(args.config or (args.method or "siglip"), args.overrides, **flags)
    if cfg.allow_download and not args.allow_download:  # said by a file (--config, the run's config.json)
        import dataclasses

        log.warning("allow_download in the config ignored: only --allow-download on the command line fetches weights")
        cfg = dataclasses.replace(cfg, allow_download=False)
    if args.synthetic:
        from crossmodal_har.train.synthetic import SyntheticSource

        if cfg.split.shuffle_train_pairs:
            raise UserError("split.shuffle_train_pairs applies to stores; with --synthetic use a store made by "
                            "train.synthetic.write_synthetic_store instead")
        source = SyntheticSource(video_kind="embeddings", split=cfg.split if (cfg.split.val_subjects or
                                                                              cfg.split.test_subjects) else None)
    else:
        if not Path(args.store).is_dir():
            raise UserError(f"{args.store}: no such store directory")
        source = StoreSource(str(args.store), cfg.split)
    channels = args.channels
    if args.resume and (out / "data.json").is_file():  # the run's own channels (its checkpoint's shapes)
        saved_pre = read_json(out / "data.json").get("preprocess") or {}
        saved_channels = saved_pre.get("channels", "acc+gyro") if isinstance(saved_pre, dict) else "acc+gyro"
        if channels is not None and channels != saved_channels:
            raise UserError(f"--resume: {out} was started with --channels {saved_channels}, not {channels}; "
                            "a resumed run keeps its channels")
        channels = saved_channels
    if channels is not None:
        source = ChannelSource(source, channels)
    res = pretrain(cfg, source, out, resume=args.resume, devices=args.devices, accelerator=args.accelerator,
                   num_nodes=args.num_nodes, show_progress=not args.no_progress)
    if int(os.environ.get("RANK", "0") or 0) != 0:  # under torchrun/SLURM: rank 0 reports
        return 0
    val = "  ".join(f"{k}={v:.4f}" for k, v in (res.val or {}).items())
    print(f"{cfg.method}: {res.stopped} at step {res.step}/{res.total_steps} in {res.wall_s:.1f} s "
          f"({res.pairs_per_s:.0f} pairs/s); {val}")
    print(f"run directory: {out}")
    return 0
