"""Evaluate an IMU encoder on a labelled dataset with subject-disjoint train/val/test splits. For each protocol x
shots x seed (each seed its own subject split by default), k labelled windows per class are drawn from the training
subjects, the model is selected on the validation subjects and scored once on the test subjects. Writes results.json,
report.md, shots_curve.png, confusion_matrix.png and config.json to --out. Precedence: built-in defaults < --config
file < flags < --set KEY=VALUE.
"""

from __future__ import annotations

import argparse

NAME = "evaluate"
HELP = "few-shot evaluation of an encoder, held-out subjects"
DESCRIPTION = __doc__
OUTPUT_FILES = ("results.json", "config.json", "report.md", "shots_curve.png", "confusion_matrix.png", "comparisons.png")
# flag -> config key (the training flags: _args.flags.FIT_KEYS; --protocol and --shots are parsed first)
CONFIG_KEYS = {"backbone_lr": "fit.finetune.backbone_lr", "device": "fit.device", "split_seed": "split.seed",
               "channels": "preprocess.channels", "split": "split_scheme",
               **{k: k for k in ("dataset", "encoder", "model", "name", "match", "seeds", "first_seed", "skip_bad",
                                 "cache_dir", "folds", "val")}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from crossmodal_har.commands._args.flags import add_dataset_flags, add_fit_flags, add_overrides_flag, add_threads_flag

    add_dataset_flags(p, dataset_required=False,
                      skip_bad_help="skip bad recordings (listed in the report; exit status 3) instead of failing")
    p.add_argument("--match", help="with --encoder random: take this encoder/run directory's architecture and "
                   "preprocessing (a baseline matched to that pretrained encoder)")
    p.add_argument("--name", help="label of this encoder in the tables (default: random / directory name)")
    p.add_argument("--protocol", help="comma list of supervised, linear-probe, knn, finetune "
                   "(default supervised,linear-probe)")
    p.add_argument("--shots", help="comma list of labelled windows per class and/or 'all' (default 5,all)")
    p.add_argument("--seeds", type=int, help="repetitions: new few-shot draw and initialisation (default 3)")
    p.add_argument("--first-seed", type=int, help="first seed (default 0)")
    p.add_argument("--split-seed", type=int, help="base seed of the subject splits (default 0)")
    p.add_argument("--split", choices=["per-seed", "fixed", "paper"], default=None, help="per-seed (default): every seed "
                   "draws its own subject split (same for every method given the same seeds); fixed: one split for all "
                   "seeds; paper: the paper's protocol, optimistic (20 test windows per class from anyone, best epoch "
                   "on them; shots 10,20,50,100 and 5 seeds unless given)")
    p.add_argument("--folds", help="grouped K-fold cross-validation over subjects: an integer K >= 2, or 'loso' "
                   "(leave one subject out)")
    p.add_argument("--val", choices=["k-shot", "full"], default=None, help="k-shot (default): at k shots model "
                   "selection sees at most k labelled validation windows per class; full: every validation window")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--config", help="YAML/JSON file with evaluation settings (keys as in config.json)")
    add_overrides_flag(p, "fit.supervised.patience=3")
    add_fit_flags(p, lr_help="learning rate for supervised, and the head of finetune")
    p.add_argument("--backbone-lr", type=float, help="encoder learning rate for finetune (default lr/10)")
    add_threads_flag(p)


def run(args: argparse.Namespace) -> int:
    from crossmodal_har.commands._args.flags import FIT_KEYS, config_flags, guard_training_out
    from crossmodal_har.device import set_cpu_threads
    from crossmodal_har.evaluate.harness import build_evaluate_config, run_evaluation, saved_encoder
    from crossmodal_har.evaluate.tables import render_console_summary

    cfg = build_evaluate_config(config_flags(args, {**FIT_KEYS, **CONFIG_KEYS}), protocols=args.protocol,
                                shots=args.shots, config_file=args.config, overrides=args.overrides,
                                channels_flag=args.channels)
    set_cpu_threads(cfg.fit.device, args.threads)
    guard_training_out(args.out, cfg.dataset, encoder=saved_encoder(cfg), match=cfg.match or None,
                       cache_dir=cfg.cache_dir, files=OUTPUT_FILES)
    results = run_evaluation(cfg, args.out, progress=False if args.no_progress else None)
    print("\n".join(render_console_summary(results.summary, results.comparisons or ())))
    print(f"wrote {args.out}/results.json, report.md, shots_curve.png, confusion_matrix.png "
          f"({results.elapsed_s:.0f} s)")
    return 0
