"""crossmodal-har report: merge evaluation / zero-shot results into one report."""

import argparse

NAME = "report"
HELP = "merge evaluate/zeroshot results into one report"
DESCRIPTION = (
    "Merge any set of 'crossmodal-har evaluate' and 'crossmodal-har zeroshot' output directories (or their "
    "results.json files) into the same tables and plots: a few-shot table (balanced accuracy, macro-F1, "
    "accuracy as mean ± std over seeds, per method × protocol × shots), a zero-shot table (retrieval R@k/MRR "
    "with chance, nearest-video-class accuracy), shots curves with 95% CI bands, retrieval bars, confusion "
    "matrices, and paired differences of every method against a reference (--reference; mean, 95% t-interval, "
    "sign-flip permutation p-value). Evaluations with one --name whose encoders are different pretraining seeds "
    "of one method (the seed in the run's config.json) are pooled, with the spread across pretraining seeds "
    "beside the means. A run given twice, or an evaluation whose dataset, split scheme, "
    "preprocessing or architecture differ from the reference's, is refused (--allow-mismatch: merged and flagged). "
    "Writes OUT/report.md, OUT/results.json and PNGs."
)


def add_arguments(p):
    p.add_argument("results", nargs="+", metavar="RESULTS", help="evaluate/zeroshot output dirs or results.json files")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--title", default="crossmodal-har report", help="report title")
    p.add_argument("--reference", default=None, help="method every other is compared with (paired differences); "
                   "default random, else supervised, else the first evaluation given")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="merge evaluations whose dataset, split scheme, preprocessing or architecture differ from the "
                        "reference's (flagged in the tables) instead of refusing them")
    p.add_argument("--demo-plan", default=None, help=argparse.SUPPRESS)  # the demo's own report stage


def run(args) -> int:
    from crossmodal_har.demo import demo_report_text
    from crossmodal_har.evaluate.report import write_combined_report
    from crossmodal_har.io import guard_output_dir

    # --out is never one of the merged results (their results.json / report.md would be replaced)
    guard_output_dir(("--out", args.out), [("RESULTS", r) for r in args.results] + [("--demo-plan", args.demo_plan)],
                     files=("results.json", "report.md"))
    merged = write_combined_report(args.results, args.out, title=args.title, reference=args.reference,
                                   allow_mismatch=args.allow_mismatch,
                                   text=demo_report_text(args.demo_plan) if args.demo_plan else None)
    print(f"report: {args.out}/report.md ({len(merged.sources or [])} evaluation(s), "
          f"{len(merged.zeroshot or [])} zero-shot result(s))")
    return 0
