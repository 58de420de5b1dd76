"""``crossmodal-har train-classifier``: train a deployable classifier bundle on a labelled dataset."""

from __future__ import annotations

import argparse

NAME = "train-classifier"
HELP = "train a classifier bundle (default: supervised)"
DESCRIPTION = (
    "Default protocol: supervised (the whole model trained end to end; --protocol linear-probe, finetune or knn "
    "train a head on --encoder). Splits the dataset's subjects into training and validation (subject-disjoint); trains with the "
    "evaluation harness's protocol code on every training subject (the validation subjects only "
    "choose the epoch / stop early) and writes MODEL_DIR/model.safetensors + bundle.json, and model.onnx "
    "(parity-checked; what predict's default runtime runs) unless --no-onnx. "
    "There is no test split here: the validation metrics in the bundle were used for model selection "
    "and are optimistic; use 'crossmodal-har evaluate' for an unbiased estimate. An existing non-empty "
    "--out is written into only with --force, and never when it is the dataset or encoder directory."
)
# flag -> config key(s) (the training flags: _args.flags.FIT_KEYS); --seed seeds the split too
CONFIG_KEYS = {"lr": ("fit.supervised.lr", "fit.finetune.lr", "fit.linear_probe.lr"), "device": "fit.device",
               "val_fraction": "split.val_fraction", "seed": ("seed", "split.seed"),
               **{k: k for k in ("dataset", "encoder", "protocol", "model", "normalization", "channels", "skip_bad",
                                 "cache_dir")}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from crossmodal_har.commands._args.flags import add_dataset_flags, add_fit_flags, add_threads_flag

    add_dataset_flags(p, dataset_required=True, skip_bad_help="skip unreadable recordings (listed in bundle.json)")
    p.add_argument("--protocol", default="supervised", choices=("linear-probe", "finetune", "supervised", "knn"),
                   help="how the classifier is trained (default supervised)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="bundle directory to write")
    p.add_argument("--normalization", choices=("zscore", "recording", "none"), default=None,
                   help="input normalisation for --encoder random: zscore (per window), recording (per "
                        "whole recording, the paper's code) or none (default: the harness's, none)")
    add_fit_flags(p, lr_help="learning rate (head, or whole model for supervised)")
    p.add_argument("--val-fraction", type=float, default=0.15, help="fraction of subjects for validation")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and batch order")
    p.add_argument("--force", action="store_true",
                   help="write into an existing non-empty --out (its bundle files are replaced); never an input")
    p.add_argument("--no-onnx", action="store_true", help="no MODEL_DIR/model.onnx (predict then runs torch)")
    add_threads_flag(p)


def run(args: argparse.Namespace) -> int:
    from crossmodal_har.commands._args.flags import FIT_KEYS, config_flags, guard_training_out
    from crossmodal_har.config import build_config
    from crossmodal_har.device import set_cpu_threads
    from crossmodal_har.errors import PartialRunError
    from crossmodal_har.evaluate.train_classifier import TrainClassifierConfig, train_classifier

    # a bundle directory is never an input, and an existing non-empty one is replaced only with --force
    guard_training_out(args.out, args.dataset, encoder=None if args.encoder in (None, "random") else args.encoder,
                       cache_dir=args.cache_dir, files=("bundle.json", "model.safetensors", "model.onnx"),
                       force=args.force)
    cfg = build_config(TrainClassifierConfig, flags=config_flags(args, {**FIT_KEYS, **CONFIG_KEYS}),
                       where="train-classifier")
    set_cpu_threads(cfg.fit.device, args.threads)
    res = train_classifier(cfg, args.out, progress=False if args.no_progress else None)
    print(res.summary_line())
    if not args.no_onnx:
        from crossmodal_har.infer.export import export_beside

        print(export_beside(args.out))
    if res.skipped_recordings:
        raise PartialRunError(f"{len(res.skipped_recordings)} recording(s) were skipped (listed in {res.bundle_json})")
    return 0
