"""Markdown tables of evaluation and zero-shot results (lists of lines for report.md).

One evaluation's tables (:func:`render_results_table`, :func:`render_shots_table`,
:func:`render_recall_table`), the combined report's few-shot table in the paper's Table 3 shape
(:func:`render_table3`, :func:`render_pretrain_spread`), its zero-shot tables in the Table 4 shape
(:func:`render_zeroshot`) and the paired differences against a reference (:func:`render_comparisons`);
the plain-text summary ``crossmodal-har evaluate`` prints (:func:`render_console_summary`).
Numbers are printed with 3 decimals; ``–`` marks a missing value.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence

from crossmodal_har.evaluate.comparisons import EXACT_MAX_PAIRS, MC_RESAMPLES, seeds_for_p
from crossmodal_har.evaluate.fewshot import shots_key
from crossmodal_har.evaluate.results import CLASS_RETRIEVAL_KEYS, RETRIEVAL_KEYS, ZeroshotResult
from crossmodal_har.evaluate.summaries import method_order_key, zeroshot_groups, zeroshot_summary
from crossmodal_har.signals.text import md_cell

TABLE3_METRICS = (("balanced_accuracy", "Balanced accuracy"), ("macro_f1", "Macro-F1"), ("accuracy", "Accuracy"))


def mean_std(mean: Optional[float], std: Optional[float]) -> str:
    """``0.812 ± 0.034`` (``0.812`` without a std, ``–`` without a mean)."""
    if mean is None:
        return "–"
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


def _ci(lo: Optional[float], hi: Optional[float]) -> str:
    return "–" if lo is None or hi is None else f"[{lo:.3f}, {hi:.3f}]"


# ------------------------------------------------------------------------------- one evaluation
def render_results_table(summary: Sequence[Dict[str, Any]]) -> List[str]:
    """Every summary row: balanced accuracy, macro-F1, accuracy (mean ± std), the CI, validation budget
    and labels per run; rows merged with a mismatch are marked †."""
    lines = ["## Results (test subjects)", "",
             "| Method | Protocol | Shots/class | Seeds | Balanced acc. | Macro-F1 | Accuracy | Balanced acc. 95% CI "
             "| Validation | Labels/run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        flag = " †" if r.get("mismatch") else ""
        labels = "–" if r.get("n_labels_mean") is None else f"{r['n_labels_mean']:.0f}"
        lines.append(
            f"| {md_cell(r.get('method', ''))}{flag} | {md_cell(r['protocol'])} | {r['shots']} | {r['n_seeds']} | "
            f"{mean_std(r['balanced_accuracy_mean'], r['balanced_accuracy_std'])} | "
            f"{mean_std(r['macro_f1_mean'], r.get('macro_f1_std'))} | "
            f"{mean_std(r['accuracy_mean'], r.get('accuracy_std'))} | "
            f"{_ci(r.get('balanced_accuracy_ci95_low'), r.get('balanced_accuracy_ci95_high'))} | "
            f"{r.get('val_mode', '–')} | {labels} |")
    if any(r.get("mismatch") for r in summary):
        lines += ["", "† differs from the reference in: " + "; ".join(sorted(
            {f"{r['method']}: {', '.join(r['mismatch'])}" for r in summary if r.get("mismatch")}))
            + " (merged with --allow-mismatch: not a matched comparison)."]
    lines.append("")
    return lines


def render_console_summary(summary: Sequence[Dict[str, Any]],
                           comparisons: Sequence[Dict[str, Any]] = ()) -> List[str]:
    """Plain-text lines for the terminal: per method x protocol x shots, balanced accuracy (mean ±
    std over seeds), macro-F1 and accuracy; then the paired tests (:func:`render_console_comparisons`)."""
    lines = [f"{'method':<14} {'protocol':<13} {'shots':>5} {'seeds':>5}  balanced acc.      macro-F1   accuracy"]
    for r in summary:
        name = r["method"] if r.get("optimistic") else r["method"][:14]  # the flag is never cut off
        lines.append(f"{name:<14} {r['protocol']:<13} {str(r['shots']):>5} {r['n_seeds']:>5}  "
                     f"{r['balanced_accuracy_mean']:.3f} ± {r['balanced_accuracy_std']:.3f}    "
                     f"{r['macro_f1_mean']:.3f}      {r['accuracy_mean']:.3f}")
    return lines + render_console_comparisons(comparisons)


def render_shots_table(summary: Sequence[Dict[str, Any]]) -> List[str]:
    """Balanced accuracy by shots per class, one row per method × protocol (empty with one shots setting)."""
    shots_all = sorted({r["shots"] for r in summary}, key=shots_key)
    if len(shots_all) <= 1:
        return []
    lines = ["## Balanced accuracy by shots per class", "",
             "| Method | Protocol | " + " | ".join(str(s) for s in shots_all) + " |",
             "|---|---|" + "---|" * len(shots_all)]
    cells: "OrderedDict[tuple, Dict[Any, str]]" = OrderedDict()
    for r in summary:
        cells.setdefault((r.get("method", ""), r["protocol"]), {})[r["shots"]] = mean_std(
            r["balanced_accuracy_mean"], r["balanced_accuracy_std"])
    for (m, p), c in cells.items():
        lines.append(f"| {md_cell(m)} | {md_cell(p)} | " + " | ".join(c.get(s, "–") for s in shots_all) + " |")
    lines.append("")
    return lines


def render_recall_table(summary: Sequence[Dict[str, Any]], class_names: Sequence[str]) -> List[str]:
    """Per-class recall (mean over seeds) of the rows that have it (empty without class names)."""
    rec_rows = [r for r in summary if r.get("per_class_recall_mean")]
    if not (class_names and rec_rows):
        return []
    lines = ["## Per-class recall (mean over seeds)", "",
             "| Method | Protocol | Shots | " + " | ".join(md_cell(c) for c in class_names) + " |",
             "|---|---|---|" + "---|" * len(class_names)]
    for r in rec_rows:
        vals = ["–" if v is None else f"{v:.2f}" for v in r["per_class_recall_mean"]]
        lines.append(f"| {md_cell(r.get('method', ''))} | {md_cell(r['protocol'])} | {r['shots']} | "
                     + " | ".join(vals) + " |")
    lines.append("")
    return lines


# ----------------------------------------------------------------------------- few-shot, combined
def render_table3(summary: Sequence[Dict[str, Any]]) -> List[str]:
    """Few-shot table, one row per method × protocol, one column per shots setting, for each metric."""
    if not summary:
        return []
    shots = sorted({r["shots"] for r in summary}, key=shots_key)
    most = {}  # method -> most pretraining seeds of any of its cells
    for r in summary:
        most[r.get("method", "")] = max(most.get(r.get("method", ""), 0), r.get("n_pretrain_seeds") or 0)
    fewer = {(r.get("method", ""), r["protocol"], r["shots"]) for r in summary
             if 0 < (r.get("n_pretrain_seeds") or 0) < most[r.get("method", "")]}
    several = any(v > 1 for v in most.values())
    lines: List[str] = []
    for metric, title in TABLE3_METRICS:
        cells: "OrderedDict[tuple, Dict[Any, str]]" = OrderedDict()
        for r in sorted(summary, key=lambda r: (method_order_key(r.get("method", "")), r["protocol"])):
            label = r.get("method", "") + (" †" if r.get("mismatch") else "")
            if r.get("val_mode") == "full" or "/" in (r.get("val_mode") or ""):
                label += f" (val {r['val_mode']})"
            mark = " ‡" if (r.get("method", ""), r["protocol"], r["shots"]) in fewer else ""
            cells.setdefault((label, r["protocol"]), {})[r["shots"]] = mean_std(
                r.get(f"{metric}_mean"), r.get(f"{metric}_std")) + mark
        over = ("seeds" if not several else "evaluation seeds of the mean over pretraining seeds")
        lines += [f"### {title} (mean ± std over {over}, test subjects)", "",
                  "| Method | Protocol | " + " | ".join(f"{s} shots" for s in shots) + " |",
                  "|---|---|" + "---|" * len(shots)]
        for (m, p), c in cells.items():
            lines.append(f"| {md_cell(m)} | {md_cell(p)} | " + " | ".join(c.get(s, "–") for s in shots) + " |")
        lines.append("")
    if fewer:
        lines += ["‡ fewer pretraining seeds than the method's other cells (see \"Spread across pretraining "
                  "seeds\" for which).", ""]
    return lines


def render_pretrain_spread(summary: Sequence[Dict[str, Any]]) -> List[str]:
    """Per method × protocol × shots with pretraining seeds: the mean over pretraining seeds, the
    eval-seed CI, and the spread across pretraining seeds (balanced accuracy)."""
    rows = [r for r in summary if (r.get("n_pretrain_seeds") or 0) > 1]
    if not rows:
        return []
    single: "OrderedDict[Any, List[str]]" = OrderedDict()  # shots -> methods with one pretraining seed there
    for r in sorted(summary, key=lambda r: (shots_key(r["shots"]), method_order_key(r.get("method", "")))):
        if r.get("n_pretrain_seeds") == 1 and any(q.get("method") == r.get("method") for q in rows):
            ms = single.setdefault(r["shots"], [])
            if r.get("method", "") not in ms:
                ms.append(r.get("method", ""))
    rows = sorted(rows, key=lambda r: (method_order_key(r.get("method", "")), r["protocol"], shots_key(r["shots"])))

    def f(v: Optional[float], fmt: str = ".3f") -> str:
        return "–" if v is None else format(v, fmt)

    lines = ["### Spread across pretraining seeds (balanced accuracy, test subjects)", "",
             "Each pretraining seed is a new pretraining run of the method (model initialisation, data order, "
             "augmentation; same data, config and budget), evaluated with the same evaluation seeds (same subject "
             "splits and few-shot draws) as every other. *Mean* is over pretraining seeds; the 95 % CI is over "
             "evaluation seeds of that mean (splits and draws, the encoders fixed); *sd* and *min – max* are "
             "across the per-pretraining-seed means, the variation the CI does not cover. With "
             f"{'/'.join(str(n) for n in sorted({r['n_pretrain_seeds'] for r in rows}))} pretraining seeds no "
             "interval over them is computed.", "",
             "| Method | Protocol | Shots | Pretraining seeds | Mean | 95% CI (eval seeds) | sd across pretraining "
             "seeds | min – max | By pretraining seed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = ("–" if r.get("balanced_accuracy_ci95_low") is None else
              f"[{r['balanced_accuracy_ci95_low']:.3f}, {r['balanced_accuracy_ci95_high']:.3f}]")
        by = " · ".join(f"s{e['pretrain_seed']} {f(e['balanced_accuracy'])}" for e in r["pretrain_seed_means"])
        lines.append(f"| {r.get('method', '')} | {r['protocol']} | {r['shots']} | {r['n_pretrain_seeds']} | "
                     f"{f(r.get('balanced_accuracy_mean'))} | {ci} | {f(r.get('balanced_accuracy_pretrain_std'))} | "
                     f"{f(r.get('balanced_accuracy_pretrain_min'))} – {f(r.get('balanced_accuracy_pretrain_max'))} | "
                     f"{by} |")
    lines.append("")
    if single:
        lines += ["One pretraining seed only (not in this table): " + "; ".join(
            f"{k} shots ({', '.join(ms)})" for k, ms in single.items()) + ".", ""]
    return lines


# --------------------------------------------------------------------------------------- zero-shot
def _spread(e: Dict[str, Any], k: str, *, minmax: bool = False) -> str:
    text = f"{e[f'{k}_mean']:.3f}" + ("" if e[f"{k}_std"] is None else f" ± {e[f'{k}_std']:.3f}")
    return text + (f" ({e[f'{k}_min']:.3f} – {e[f'{k}_max']:.3f})" if minmax and e[f"{k}_std"] is not None else "")


def render_table4_seeds(zeroshot: Sequence[ZeroshotResult]) -> List[str]:
    """The zero-shot table when a method has several pretraining seeds: mean ± sd (min – max) over them."""
    summ = zeroshot_summary(zeroshot)
    lines = ["Mean ± sd over pretraining seeds (min – max in brackets for R@1); *× chance* is the mean R@1 over "
             "its chance level.", "",
             "| Method | Pretraining seeds | Direction | Windows | R@1 | × chance | R@3 | R@10 | MRR |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in summ:
        ch = e.get("chance_R@1")
        ratio = "–" if not ch else f"{e['R@1_mean'] / ch:.1f}×"
        lines.append(f"| {e['method']} | {e['n_results']} | {e['direction'].replace('_', ' ')} | "
                     f"{'/'.join(str(w) for w in e['windows'])} | {_spread(e, 'R@1', minmax=True)} | {ratio} | "
                     + " | ".join(_spread(e, k) for k in RETRIEVAL_KEYS[1:]) + " |")
    if summ:
        lines.append("| *chance* | | | | " + " | ".join(
            "–" if summ[-1].get(f"chance_{k}") is None else f"{summ[-1][f'chance_{k}']:.3f}"
            for k in RETRIEVAL_KEYS[:1]) + " | | " + " | ".join(
            "–" if summ[-1].get(f"chance_{k}") is None else f"{summ[-1][f'chance_{k}']:.3f}"
            for k in RETRIEVAL_KEYS[1:]) + " |")
    lines.append("")
    cls = [e for e in summ if e.get("classification") and e["direction"] == summ[0]["direction"]]
    if cls:
        lines += ["Zero-shot classification (each IMU window takes the class whose mean video embedding over "
                  "*other* subjects is nearest; no IMU label used), mean ± sd over pretraining seeds:", "",
                  "| Method | Pretraining seeds | Balanced accuracy | Macro-F1 | Chance (balanced) |",
                  "|---|---|---|---|---|"]
        for e in cls:
            c = e["classification"]
            ch = c.get("chance_balanced_accuracy")
            lines.append(f"| {e['method']} | {c['n_results']} | {_spread(c, 'balanced_accuracy', minmax=True)} | "
                         f"{_spread(c, 'macro_f1')} | {'–' if ch is None else f'{ch:.3f}'} |")
        lines.append("")
    crs = [e for e in summ if e.get("class_retrieval") and e["direction"] == summ[0]["direction"]]
    if crs:
        lines += [CLASS_RETRIEVAL_NOTE + ", mean ± sd over pretraining seeds:", "",
                  "| Method | Pretraining seeds | Classes | " + " | ".join(CLASS_RETRIEVAL_KEYS) + " |",
                  "|---|---|---|" + "---|" * len(CLASS_RETRIEVAL_KEYS)]
        for e in crs:
            c = e["class_retrieval"]
            lines.append(f"| {e['method']} | {c['n_results']} | {c.get('classes', '?')} | "
                         + " | ".join(_spread(c, k, minmax=k == "R@1") for k in CLASS_RETRIEVAL_KEYS) + " |")
        c = crs[-1]["class_retrieval"]
        lines += ["| *chance* | | | " + " | ".join(_chance(c.get(f"chance_{k}")) for k in CLASS_RETRIEVAL_KEYS)
                  + " |", ""]
    return lines


CLASS_RETRIEVAL_NOTE = ("Per-class retrieval (the paper's zero-shot R@k: each IMU window ranks the C class "
                        "prototypes, mean video embeddings over *other* subjects; chance min(k, C)/C, not the "
                        "k/N of the window retrieval above)")


def _chance(v: Optional[float]) -> str:
    return "–" if v is None else f"{v:.3f}"


def render_class_retrieval(rows: Sequence[ZeroshotResult]) -> List[str]:
    """The per-class retrieval table of single results (one row per method), chance beside."""
    crs = [z for z in rows if z.class_retrieval]
    if not crs:
        return []
    lines = [CLASS_RETRIEVAL_NOTE + ":", "",
             "| Method | Classes | Windows | " + " | ".join(CLASS_RETRIEVAL_KEYS) + " |",
             "|---|---|---|" + "---|" * len(CLASS_RETRIEVAL_KEYS)]
    for z in crs:
        c = z.class_retrieval
        lines.append(f"| {z.method} | {c.get('classes', '?')} | {c.get('windows', '?')} | "
                     + " | ".join(f"{c[k]:.3f}" for k in CLASS_RETRIEVAL_KEYS) + " |")
    c = crs[-1].class_retrieval
    return lines + ["| *chance* | | | " + " | ".join(_chance(c.get(f"chance_{k}")) for k in CLASS_RETRIEVAL_KEYS)
                    + " |", ""]


def render_table4(zeroshot: Sequence[ZeroshotResult]) -> List[str]:
    """Zero-shot table: retrieval both ways and nearest-video-class classification, chance beside
    (pooled over pretraining seeds, :func:`render_table4_seeds`, when a method has several)."""
    if not zeroshot:
        return []
    counts: Dict[str, int] = {}
    for z in zeroshot:
        counts[z.method or ""] = counts.get(z.method or "", 0) + 1
    if max(counts.values()) > 1:
        return render_table4_seeds(zeroshot)
    rows = sorted(zeroshot, key=lambda z: method_order_key(z.method or ""))
    lines = ["| Method | Direction | Windows | R@1 | R@3 | R@10 | MRR |", "|---|---|---|---|---|---|---|"]
    chance: Dict[str, float] = {}
    for z in rows:
        for direction, m in z.retrieval.items():
            lines.append(f"| {z.method} | {direction.replace('_', ' ')} | {'?' if z.windows is None else z.windows} | "
                         + " | ".join(f"{m[k]:.3f}" for k in RETRIEVAL_KEYS) + " |")
            chance = {k: m.get(f"chance_{k}") for k in RETRIEVAL_KEYS}
    if chance:
        lines.append("| *chance* | | | " + " | ".join("–" if chance[k] is None else f"{chance[k]:.3f}"
                                                   for k in RETRIEVAL_KEYS) + " |")
    lines.append("")
    cls = [z for z in rows if z.classification]
    if cls:
        lines += ["Zero-shot classification (each IMU window takes the class whose mean video embedding over "
                  "*other* subjects is nearest; no IMU label used):", "",
                  "| Method | Balanced accuracy | Macro-F1 | Chance (balanced) |", "|---|---|---|---|"]
        for z in cls:
            c = z.classification
            lines.append(f"| {z.method} | {c['balanced_accuracy']:.3f} | {c['macro_f1']:.3f} | "
                         f"{c.get('chance_balanced_accuracy', float('nan')):.3f} |")
        lines.append("")
    return lines + render_class_retrieval(rows)


def zeroshot_title(split: str, store: str, titles: Optional[Mapping[str, str]] = None) -> str:
    """The title of the zero-shot table of one set of evaluated windows: ``titles[store]`` when given."""
    default = (f"held-out test subjects of each run's pretraining split (store `{store or '?'}`)" if split == "test"
               else f"every window of store `{store or '?'}` (`--split {split}`)")
    return (titles or {}).get(store) or default


def render_zeroshot(zeroshot: Sequence[ZeroshotResult], titles: Optional[Mapping[str, str]] = None) -> List[str]:
    """The zero-shot section: one table (with its own chance levels) per set of evaluated windows."""
    if not zeroshot:
        return []
    lines = ["## Zero-shot retrieval and classification (Table 4 shape)", ""]
    for (split, store), rows in zeroshot_groups(zeroshot):
        title = zeroshot_title(split, store, titles)
        lines += [f"### {title[:1].upper()}{title[1:]}", ""] + render_table4(rows)
    return lines


# ------------------------------------------------------------------------------ paired differences
def render_comparisons(comparisons: Sequence[Dict[str, Any]], reference: Optional[str]) -> List[str]:
    """The paired-difference table (:func:`crossmodal_har.evaluate.comparisons.compute_comparisons`)."""
    if not comparisons:
        return []

    def f(v: Optional[float], fmt: str = "+.3f") -> str:
        return "–" if v is None else format(v, fmt)

    metric = comparisons[0].get("metric", "balanced_accuracy").replace("_", " ")
    spread = any((c.get("n_pretrain_seeds") or 0) > 1 for c in comparisons)
    pre = ([f"Methods pretrained with several seeds: in each pair the method's value is the mean over its "
            "pretraining seeds (against a reference pretrained with seeds too, e.g. a shuffled-pairs control, "
            "pretraining seed p meets the reference's seed p on the same split and draw), so the CI and p are "
            "over splits and draws with the encoders fixed; the last column is each pretraining seed's own "
            "mean difference, the spread the CI does not cover.", ""] if spread else [])
    lines = [f"## Paired differences against `{reference}` ({metric}, test subjects)", "",
             "Each pair is one unit (a seed: same subject split and few-shot draw for both; or a fold) with the "
             "same test subjects. 95 % CI: Student t over pairs. p: two-sided paired sign-flip permutation test "
             f"(exact over all 2^n sign patterns for n ≤ {EXACT_MAX_PAIRS} pairs, so never below 2/2^n; Monte Carlo "
             f"with {MC_RESAMPLES} patterns beyond). No correction for multiple comparisons.", "", *pre,
             "| Method | Reference | Protocol | Shots | Pairs | Mean difference | 95% CI | p | smallest possible p |"
             + (" Pretraining seeds: mean difference of each |" if spread else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if spread else "")]
    for c in comparisons:
        ref = c["reference"] if c.get("reference_protocol") in (None, c["protocol"]) else \
            f"{c['reference']} ({c['reference_protocol']})"
        ci = "–" if c["ci_low"] is None else f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
        lines.append(f"| {c['method']} | {ref} | {c['protocol']} | {c['shots']} | {c['n_pairs']} | "
                     f"{f(c['mean_diff'])} | {ci} | {f(c['p_value'], '.3g')} | {f(c.get('p_min'), '.3g')} |"
                     + (f" {pretrain_diffs_text(c)} |" if spread else ""))
    lines += ["", *seeds_advice(comparisons)]
    return lines


def seeds_advice(comparisons: Sequence[Dict[str, Any]], alpha: float = 0.05) -> List[str]:
    """A sentence when some test cannot reach p <= ``alpha`` with its pairs, whatever the data."""
    low = [c for c in comparisons if (c.get("p_min") or 0.0) > alpha]
    if not low:
        return []
    n = max(c["n_pairs"] for c in low)
    unit = low[0].get("unit", "seed")
    flag = "--folds" if unit == "fold" else "--seeds"
    return [f"With {n} {unit}(s) per comparison the smallest possible p is {low[0]['p_min']:.3g} > {alpha}: no "
            f"difference can be significant. Run {flag} {seeds_for_p(alpha)} or more (smallest p "
            f"{2.0 / 2 ** seeds_for_p(alpha):.3g}).", ""]


def render_console_comparisons(comparisons: Sequence[Dict[str, Any]]) -> List[str]:
    """One line per paired test for the terminal, with the smallest p its pairs allow, then the seeds advice."""
    lines = []
    for c in comparisons:
        ci = "" if c["ci_low"] is None else f" [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
        p = "–" if c["p_value"] is None else f"{c['p_value']:.3g}"
        lines.append(f"{c['method']} {c['protocol']} vs {c['reference']} ({c.get('reference_protocol')}), shots "
                     f"{c['shots']}: {c['mean_diff']:+.3f}{ci}, p = {p} (smallest possible "
                     f"{c.get('p_min') or 0:.3g} with {c['n_pairs']} pairs)")
    return lines + [ln for ln in seeds_advice(comparisons) if ln]


def pretrain_diffs_text(c: Dict[str, Any]) -> str:
    """Each pretraining seed's mean difference, ``s0 +0.021 · s1 +0.034 (sd 0.009)``; ``–`` without seeds."""
    items = c.get("pretrain_mean_diffs") or []
    if not items:
        return "–"
    text = " · ".join(f"s{e['pretrain_seed']} {e['mean_diff']:+.3f}" for e in items)
    return text + (f" (sd {c['pretrain_diff_std']:.3f})" if c.get("pretrain_diff_std") is not None else "")


def render_protocol_gaps(gaps: Sequence[Dict[str, Any]]) -> List[str]:
    """The paper's protocol against ours, same encoder (:func:`crossmodal_har.evaluate.summaries.protocol_gaps`)."""
    if not gaps:
        return []
    metric = gaps[0].get("metric", "balanced_accuracy").replace("_", " ")
    lines = [f"### How much the paper's protocol adds ({metric}, same encoder)", "",
             "The paper's protocol minus ours: mean over its seeds minus mean over ours. The two test different "
             "windows, so the seeds are not paired: 95 % CI by Welch's t over the two sets of seeds.", "",
             "| Method (paper protocol) − ours | Protocol | Shots | Paper protocol | Ours | Difference | 95% CI |",
             "|---|---|---|---|---|---|---|"]
    for g in gaps:
        ci = "–" if g["ci95_low"] is None else f"[{g['ci95_low']:+.3f}, {g['ci95_high']:+.3f}]"
        lines.append(f"| {g['method']} − {g['reference']} | {g['protocol']} | {g['shots']} | {g['paper_mean']:.3f} "
                     f"({g['n_a']}) | {g['ours_mean']:.3f} ({g['n_b']}) | {g['diff']:+.3f} | {ci} |")
    return lines + [""]
