"""crossmodal-har demo: the paper's experiment end to end at small scale."""

NAME = "demo"
HELP = "the paper's experiment end to end, at small scale"
DESCRIPTION = (
    "Runs the whole experiment of Cheshmi et al. (MLHC 2025) at CPU scale: simulate paired IMU+video, ingest "
    "it, pretrain siglip (the paper's method), clip, imu2clip and imu-mae with tiny models plus the control "
    "'siglip (shuffled pairs)' (same store and budget, training pairs shuffled), each with pretraining seeds "
    "0, 1, 2, evaluate zero-shot on held-out simulated subjects and on a second corpus simulated with another "
    "seed, evaluate every encoder (plus random and supervised) few-shot on real UCI HAPT with subject-disjoint "
    "splits and the same 5 evaluation seeds (pretraining seeds 1 and 2 at 10 and 100 shots only), and write "
    "OUT/report.md with the spread across pretraining seeds and paired differences over the same seeds (how "
    "much of siglip's gain comes from true pairing). Interrupted, re-run the same command: finished stages are "
    "skipped; a directory of an earlier demo version is refused (--restart). Needs no network. --study placement "
    "runs the placement study instead (IMU at head vs waist x true vs shuffled pairs x 3 pretraining seeds, "
    "imu-mae and random references, 10 evaluation seeds on HAPT and on a held-out simulated corpus, linear "
    "probes of what the waist IMU tower learned; 22-30 min on 2 cores; OUT/report.md says what it supports)."
)


def add_arguments(p):
    from crossmodal_har.commands._args.flags import add_threads_flag

    add_threads_flag(p)
    p.add_argument("--out", default=None, help="output directory (default: ./demo-out, or ./STUDY-out with --study)")
    p.add_argument("--study", choices=("placement",), default=None,
                   help="run a study instead of the demo: placement (IMU at head vs waist, see above)")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="wall-clock budget on a 2-core CPU; scales data and training steps (default 15; study 40)")
    p.add_argument("--workers", type=int, default=None, help="processes for simulation and ingestion (default: up to 2)")
    p.add_argument("--restart", action="store_true", help="redo every stage instead of resuming")
    p.add_argument("--imu-site", choices=("head", "waist", "wrist"), default="head",
                   help="where the pretraining IMU sits on the simulated body (default head; the camera is on the head)")
    p.add_argument("--seed", type=int, default=0,
                   help="simulator seed of the pretraining corpus (default 0; other corpora seed + 1, + 2): another world")
    p.add_argument("--video", choices=("diff", "imagenet"), default="diff",
                   help="video side: diff (default; frozen random tower on consecutive-frame differences) or "
                        "imagenet (frozen ImageNet EfficientNet-Lite0 per-frame features + a trained temporal head: "
                        "retrieval that carries to another corpus; about 4 more minutes of CPU encoding)")


def run(args) -> int:
    import time

    from crossmodal_har.cli import main  # each stage is an in-process crossmodal-har command
    from crossmodal_har.demo import run_demo
    from crossmodal_har.placement.plan import run_placement_study

    t0 = time.perf_counter()
    if args.study:
        report = run_placement_study(args.out or f"{args.study}-out", args.study, args.budget_minutes or 40.0, runner=main,
                           workers=args.workers, restart=args.restart, seed=args.seed)
    else:
        report = run_demo(args.out or "demo-out", args.budget_minutes or 15.0, runner=main, workers=args.workers,
                          restart=args.restart, video=args.video, imu_site=args.imu_site, seed=args.seed)
    print(f"{args.study or 'demo'} finished in {(time.perf_counter() - t0) / 60:.1f} min: {report}")
    return 0
