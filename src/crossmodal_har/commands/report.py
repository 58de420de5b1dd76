"""crossmodal-har report: merge evaluation / zero-shot results into one report."""

import argparse

NAME = "report"
HELP = "merge results of evaluate/zeroshot runs into one report (tables, plots, results.json)"
DESCRIPTION = (
    "Merge any set of `crossmodal-har evaluate` and `crossmodal-har zeroshot` output directories (or their "
    "results.json files) into the same tables and plots: a few-shot table (balanced accuracy, macro-F1, "
    "accuracy as mean ± std over seeds, per method × protocol × shots), a zero-shot table (retrieval R@k/MRR "
    "with chance, nearest-video-class accuracy), shots curves with 95%% CI bands, retrieval bars, confusion "
    "matrices. Writes OUT/report.md, OUT/results.json and PNGs."
)


def add_arguments(p):
    p.add_argument("results", nargs="+", metavar="RESULTS", help="evaluate/zeroshot output dirs or results.json files")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--title", default="crossmodal-har report", help="report title")
    p.add_argument("--demo-plan", default=None, help=argparse.SUPPRESS)  # the demo's own report stage


def run(args) -> int:
    from crossmodal_har.evaluate.combined import build_report

    preamble, caveats = [], []
    if args.demo_plan:
        from crossmodal_har.demo import demo_report_text

        preamble, caveats = demo_report_text(args.demo_plan)
    merged = build_report(args.results, args.out, title=args.title, preamble=preamble, caveats=caveats)
    n_eval = len(merged.get("sources", []))
    print(f"report: {args.out}/report.md ({n_eval} evaluation(s), {len(merged.get('zeroshot', []))} zero-shot result(s))")
    return 0
