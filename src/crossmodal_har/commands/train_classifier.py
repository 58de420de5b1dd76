"""``crossmodal-har train-classifier``: train a deployable classifier bundle on a labelled dataset."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

NAME = "train-classifier"
HELP = "train a classifier on all labelled training subjects and write a self-contained bundle"
DESCRIPTION = (
    "Splits the dataset's subjects into training and validation (subject-disjoint); trains with the "
    "evaluation harness's protocol code on every training subject (the validation subjects only "
    "choose the epoch / stop early) and writes MODEL_DIR/model.safetensors + bundle.json. "
    "There is no test split here: the validation metrics in the bundle were used for model selection "
    "and are optimistic; use `crossmodal-har evaluate` for an unbiased estimate. An existing non-empty "
    "--out is written into only with --force, and never when it is the dataset or encoder directory."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="generic dataset directory, 'hapt', or 'uestc:<dir>'")
    p.add_argument("--encoder", default="random", help="'random' or an encoder/run directory (encoder.json)")
    p.add_argument("--protocol", default="supervised",
                   choices=("linear-probe", "finetune", "supervised", "knn"))
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="bundle directory to write")
    p.add_argument("--model", default=None, help="architecture for --encoder random (default: the evaluation harness's)")
    p.add_argument("--normalization", choices=("zscore", "none"), default=None,
                   help="per-window normalisation for --encoder random (default: the harness's, none)")
    p.add_argument("--channels", choices=("acc", "acc+gyro"), default=None,
                   help="what the model reads: acc+gyro (default, 6 channels) or acc (accelerometer only, 3 channels; "
                        "for devices without a gyroscope). A saved --encoder brings its own (a contradicting "
                        "--channels is refused)")
    p.add_argument("--epochs", type=int, default=None, help="max epochs (supervised, finetune)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (supervised, finetune)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (head, or whole model for supervised)")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs")
    p.add_argument("--val-fraction", type=float, default=0.15, help="fraction of subjects for validation")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and batch order")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable recordings (listed in bundle.json)")
    p.add_argument("--cache-dir", default=None, help="dataset/window cache directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true",
                   help="write into an existing non-empty --out (its bundle files are replaced); never an input")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import datetime
    import platform

    import torch

    from crossmodal_har import __version__
    from crossmodal_har.config import build_config, to_dict
    from crossmodal_har.errors import ConfigError, UserError
    from crossmodal_har.evaluate.harness import EvaluateConfig
    from crossmodal_har.evaluate.protocol_config import FitConfig
    from crossmodal_har.evaluate.protocols import EncoderSource, fit_protocol, require_channels
    from crossmodal_har.infer.smoothing import estimate_prior, estimate_transitions, label_sequences
    from crossmodal_har.models.bundle import MAX_HMM_CLASSES, save_bundle
    from crossmodal_har.models.classifier import head_spec
    from crossmodal_har.signals.datasets import load_labelled
    from crossmodal_har.splits import SplitConfig, subject_split

    from crossmodal_har.io import guard_output_dir

    # a bundle directory is never an input, and an existing non-empty one is replaced only with --force
    dataset_dir = str(args.dataset)
    for prefix in ("uestc:", "hapt:"):
        if dataset_dir.startswith(prefix):
            dataset_dir = dataset_dir[len(prefix):]
    guard_output_dir(("--out", args.out),
                     [("--dataset", None if dataset_dir == "hapt" else dataset_dir),
                      ("--encoder", None if args.encoder == "random" else args.encoder),
                      ("--cache-dir", args.cache_dir)],
                     files=("bundle.json", "model.safetensors", "model.onnx"), force=args.force)
    progress = False if args.no_progress else None
    defaults = EvaluateConfig()
    if args.encoder == "random":
        pre = defaults.preprocess
        if args.normalization:
            pre = dataclasses.replace(pre, normalization=args.normalization)
        if args.channels:
            pre = dataclasses.replace(pre, channels=args.channels)
        source = EncoderSource.random(args.model or defaults.model, pre)
    else:
        if args.model or args.normalization:
            raise UserError("--model/--normalization apply to --encoder random only (a saved encoder "
                            "brings its own architecture and preprocessing)")
        require_channels(args.channels, args.encoder)
        source = EncoderSource.from_dir(args.encoder)
    # flags -> configs through config.build_config (typed, validated; errors name the key)
    train_flags = {f"{proto}.{key}": getattr(args, key) for proto in ("supervised", "finetune")
                   for key in ("epochs", "batch_size", "lr", "patience")}
    fit = build_config(FitConfig, flags={"device": args.device, **train_flags, "linear_probe.lr": args.lr},
                       where="train-classifier")
    # A deployable model: every subject not used for validation trains (no test split here).
    split_cfg = build_config(SplitConfig, flags={"val_fraction": args.val_fraction, "test_fraction": 0.0,
                                                 "seed": args.seed}, where="train-classifier split")
    if not split_cfg.val_fraction > 0:
        raise ConfigError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")

    ws = load_labelled(args.dataset, source.preprocess, skip_bad=args.skip_bad, cache_dir=args.cache_dir,
                       progress=not args.no_progress)
    if len(ws) == 0:
        raise ConfigError(f"dataset {args.dataset!r} has no labelled windows")
    n_classes = len(ws.class_names)
    split = subject_split(ws.subject, split_cfg, ws.y, n_classes)
    train_idx = split.train
    train_subjects = sorted(split.subjects["train"])
    train_ws, val_ws = ws.subset(train_idx), ws.subset(split.val)
    log.info("training on %d windows of %d subjects; validation %d windows of %d subjects", len(train_ws),
             len(train_subjects), len(val_ws), len(split.subjects["val"]))
    fitted = fit_protocol(args.protocol, source, train_ws, val_ws, fit, args.seed, progress=progress,
                          desc=args.protocol)
    module = fitted.module
    spec = head_spec(module.head, n_classes)
    import transformers

    provenance = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dataset": str(args.dataset),
        "encoder": source.info(),
        "protocol": args.protocol,
        "seed": args.seed,
        "best_epoch": fitted.best_epoch,
        "fit_seconds": round(fitted.seconds, 2),
        "fit_config": to_dict(fit),
        "subjects": {"train": train_subjects, "val": split.subjects["val"]},
        "windows": {"train": int(len(train_ws)), "val": int(len(val_ws))},
        "dataset_report": to_dict(ws.report),
        "versions": {"crossmodal_har": __version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
        "note": "validation metrics were used for early stopping/model selection (optimistic)",
    }
    # HMM for `predict --smooth hmm`: transitions between consecutive windows of each training
    # recording and the class prior, both with an add-one (Dirichlet(1)) prior
    hmm = None
    if n_classes <= MAX_HMM_CLASSES:
        seqs = label_sequences(train_ws.recording, train_ws.start_s, train_ws.y)
        hmm = {"transitions": estimate_transitions(seqs, n_classes, 1.0).tolist(),
               "prior": estimate_prior(seqs, n_classes, 1.0).tolist(), "pseudo_count": 1.0,
               "sequences": len(seqs), "transitions_counted": int(sum(max(len(q) - 1, 0) for q in seqs)),
               "source": "training windows, consecutive per recording"}
    else:
        log.warning("%d classes: no HMM stored (at most %d), so `predict --smooth hmm` will not be available",
                    n_classes, MAX_HMM_CLASSES)
    path = save_bundle(args.out, module, encoder_name=source.model_name, encoder_config=source.config,
                       head_spec=spec, preprocess=source.preprocess, class_names=list(ws.class_names),
                       metrics=fitted.val_metrics, provenance=provenance, hmm=hmm)
    ba = fitted.val_metrics.get("balanced_accuracy")
    print(f"wrote bundle {path.parent} ({args.protocol}, {source.preprocess.channels}, {len(ws.class_names)} "
          f"classes, validation balanced accuracy {ba:.3f})" if ba is not None else f"wrote bundle {path.parent}")
    if ws.report.skipped_recordings:
        from crossmodal_har.errors import PartialRunError

        raise PartialRunError(f"{len(ws.report.skipped_recordings)} recording(s) were skipped "
                              f"(listed in {path})")
    return 0
