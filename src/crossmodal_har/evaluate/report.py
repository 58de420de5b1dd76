"""The reports a person reads: ``report.md`` with its plots, beside the ``results.json`` it shows.

* :func:`write_outputs`: one evaluation's files (``crossmodal-har evaluate``): results.json,
  config.json, report.md (its tables, what the data excluded) and, when finished, its plots;
* :func:`write_combined_report`: one report from any set of evaluation and zero-shot results
  (``crossmodal-har report``, the demo's last stage): the few-shot table in the paper's Table 3 shape,
  the zero-shot tables in its Table 4 shape, the spread across pretraining seeds, the paired
  differences and what true pairing adds over a shuffled-pairs control, the plots and a merged
  results.json (the evaluation schema plus the zero-shot lists).
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from crossmodal_har.errors import UserError
from crossmodal_har.evaluate.merge import merge_results, read_inputs
from crossmodal_har.evaluate.plots import plot_comparisons, plot_confusion, plot_retrieval, plot_shots_curve
from crossmodal_har.evaluate.results import MERGED_KIND, RunResult, ZeroshotResult, write_results
from crossmodal_har.evaluate.summaries import control_comparisons, protocol_gaps, zeroshot_groups, zeroshot_summary
from crossmodal_har.evaluate.tables import (pretrain_diffs_text, render_comparisons, render_pretrain_spread,
                                            render_protocol_gaps, render_recall_table, render_results_table,
                                            render_shots_table, render_table3, render_zeroshot, zeroshot_title)
from crossmodal_har.io import PathLike, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

SUBJECTS_ARE_RECORDINGS = ("**every subject id is a recording name** (no `subject` column in labels.csv?): each "
                           "recording counts as a person, so one person's recordings can be in train and test and "
                           "the split is not subject-disjoint")


PAPER_WARNING = ("**Rows marked `[paper protocol: optimistic]` follow the paper's protocol, not the sentence "
                 "below**: random windows, not people, are split (one person's windows, even overlapping windows "
                 "of one recording, can be in train and test) and the best epoch is chosen on the test windows. "
                 "They are there to compare with the paper's numbers, not as an estimate for new people.")


def split_text(split: Dict[str, Any]) -> str:
    """One line on how subjects were split (``split`` as in results.json, old or new form)."""
    scheme = split.get("scheme") or "fixed"
    splits = split.get("splits") or []
    subj = split.get("subjects") or ((splits[0].get("subjects") if splits else None) or {})
    sizes = f"{len(subj.get('train', []))}/{len(subj.get('val', []))}/{len(subj.get('test', []))} subjects (train/val/test)"
    if scheme == "paper":
        shared = len(subj.get("shared", []))
        return (f"**the paper's protocol (optimistic)**: per seed, {split.get('test_per_class', 20)} random test "
                f"windows per class from anyone, training windows from the rest; not subject-disjoint ({shared} "
                f"people in both train and test in the first split)")
    if scheme == "fixed":
        return f"one fixed subject-disjoint split (`fixed`, split seed {split.get('seed', 0)}), {sizes}"
    if scheme == "per-seed":
        return (f"a new subject-disjoint split per seed (`per-seed`, split seeds derived from split seed "
                f"{split.get('seed', 0)} and the run seed), {sizes}")
    return f"grouped cross-validation over subjects (`{scheme}`, {len(splits)} fold x seed splits), first {sizes}"


def val_text(mode: Optional[str]) -> str:
    """The validation label budget in words (``val`` of results.json's split)."""
    if mode == "full":
        return "validation `full`: model selection on every window of the validation subjects"
    if mode == "test":
        return ("no validation: the best epoch is chosen on the test windows (the paper's selection; optimistic, "
                "the test score is the best of several looks)")
    return ("validation `k-shot`: at k shots, model selection sees at most k labelled windows per class of the "
            "validation subjects (k·C training + k·C validation labels; kNN uses none; `all` shots use every "
            "validation window)")


def _generated() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _class_names(sources: Sequence[Dict[str, Any]]) -> List[str]:
    for s in sources:
        names = (s.get("dataset") or {}).get("class_names")
        if names:
            return list(names)
    return []


# ------------------------------------------------------------------------------- one evaluation
def _sources(result: RunResult) -> List[Dict[str, Any]]:
    """What report.md says about each source: the merged files, or the evaluation itself."""
    merged = [{"method": s["method"], "dataset": s.get("dataset"), "encoder": s.get("encoder"),
               "split": s.get("split"), "seeds": s.get("seeds")} for s in result.sources or []]
    own = {"method": result.method, "dataset": result.dataset, "encoder": result.encoder, "split": result.split,
           "seeds": result.seeds, "complete": result.complete}
    return merged or [{k: v for k, v in own.items() if v is not None}]


def write_outputs(result: RunResult, out_dir: PathLike, *, plots: bool = True) -> List[Path]:
    """Write ``results.json``, ``config.json`` (when the result has a config), ``report.md`` (and the
    PNGs when ``plots``) for one evaluation or for merged results
    (:func:`~crossmodal_har.evaluate.merge.merge_results`: the report then describes each source).
    Returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_results(result, out_dir / "results.json")]
    if result.config is not None:
        written.append(atomic_write_json(out_dir / "config.json", result.config))
    sources = _sources(result)
    images: List[str] = []
    if plots and result.summary:
        images = _write_plots(result, list((result.dataset or {}).get("class_names") or []), out_dir)
    written.append(atomic_write_text(out_dir / "report.md", render_markdown(
        sources, result.summary, images, result.comparisons or (), result.reference)))
    return written + [out_dir / i for i in images]


def _write_plots(result: RunResult, class_names: Sequence[str], out_dir: Path) -> List[str]:
    images = []
    name = (result.dataset or {}).get("name") or (result.dataset or {}).get("spec") or ""
    plot_shots_curve(result.summary, out_dir / "shots_curve.png", title=f"Few-shot evaluation on {name}" if name else "")
    images.append("shots_curve.png")
    if class_names and any("confusion_matrix" in r for r in result.summary):
        plot_confusion(result.summary, class_names, out_dir / "confusion_matrix.png")
        images.append("confusion_matrix.png")
    if result.comparisons:
        plot_comparisons(result.comparisons, out_dir / "comparisons.png")
        images.append("comparisons.png")
    return images


def render_markdown(sources: Sequence[Dict[str, Any]], summary: Sequence[Dict[str, Any]],
                    images: Sequence[str] = (), comparisons: Sequence[Dict[str, Any]] = (),
                    reference: Optional[str] = None) -> str:
    """One evaluation's report.md: summary table (mean ± std over seeds), balanced accuracy by shots,
    paired differences, per-class recall, what the data excluded, and the plots."""
    lines: List[str] = ["# Few-shot evaluation report", "", f"Generated {_generated()}.", ""]
    for s in sources:
        ds = s.get("dataset") or {}
        enc = s.get("encoder") or {}
        split = s.get("split") or {}
        lines.append(f"- **{s.get('method', '?')}**: encoder `{enc.get('encoder', '?')}` (architecture "
                     f"`{enc.get('model', '?')}`, {'pretrained' if enc.get('pretrained') else 'random initialisation'}); "
                     f"dataset `{ds.get('spec', '?')}` ({ds.get('n_windows', '?')} windows, "
                     f"{ds.get('n_subjects', '?')} subjects, {len(ds.get('class_names') or [])} classes); "
                     f"{split_text(split)}; seeds {s.get('seeds', '?')}"
                     + ("" if s.get("complete", True) else "; **incomplete run**"))
        lines.append(f"  - {val_text(split.get('val', 'full' if 'scheme' not in split else None))}")
        pre = enc.get("preprocess") or {}
        if pre:
            lines.append(f"  - preprocessing: {pre.get('rate_hz')} Hz, window {pre.get('window_s')} s, stride "
                         f"{pre.get('stride_s')} s, normalisation `{pre.get('normalization')}`, median kernel "
                         f"{pre.get('median_kernel')}")
    if any((s.get("split") or {}).get("optimistic") for s in sources):
        lines += ["", PAPER_WARNING]
    lines += ["", "Test subjects are never seen in training or model selection (early stopping uses the "
              "validation subjects). Mean ± sample std over units: a unit is a seed (with `per-seed` a new "
              "subject split, few-shot draw and initialisation; with `fixed` only a new draw and initialisation, "
              "so the spread then leaves out which people are tested) or, with folds, a fold (mean over its seeds).",
              ""]
    if summary:
        lines += render_results_table(summary)
        lines += render_shots_table(summary)
        lines += render_comparisons(comparisons, reference)
        lines += render_recall_table(summary, _class_names(sources))
    lines += ["## Data", ""]
    for s in sources:
        ds = s.get("dataset") or {}
        rep = ds.get("report") or {}
        excl = rep.get("windows_excluded") or {}
        excl_txt = ", ".join(f"{k}: {v}" for k, v in sorted(excl.items())) or "none"
        lines.append(f"- `{ds.get('spec', '?')}` ({s.get('method', '')}): {rep.get('recordings_read', '?')} recordings "
                     f"read, {rep.get('windows_kept', '?')} windows kept; excluded by quality check: {excl_txt}; "
                     f"unlabelled windows (not used): {rep.get('unlabelled_windows', 0)}; recordings shorter than "
                     f"one window: {len(rep.get('short_recordings') or [])}")
        if ds.get("subjects_are_recordings"):
            lines.append(f"  - {SUBJECTS_ARE_RECORDINGS}")
        wpc = ds.get("windows_per_class") or {}
        if wpc:
            lines.append("  - labelled windows per class: " + ", ".join(f"{k}: {v}" for k, v in wpc.items()))
        skipped = rep.get("skipped_recordings") or []
        if skipped:
            lines.append(f"  - **{len(skipped)} recording(s) skipped** (--skip-bad):")
            for item in skipped:
                lines.append(f"    - `{item.get('path', '?')}`: {item.get('error', '')}")
    lines.append("")
    if images:
        lines += ["## Plots", ""] + [f"![{Path(i).stem}]({i})" for i in images] + [""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- combined report
def _ci_words(c: Dict[str, Any]) -> str:
    if c.get("ci_low") is None:
        return f"{c['mean_diff']:+.3f} (one pair: no interval)"
    verdict = "excludes 0" if c["ci_low"] > 0 or c["ci_high"] < 0 else "includes 0"
    return f"{c['mean_diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], CI {verdict}"


def render_true_pairing(comparisons: Sequence[Dict[str, Any]], controls: Sequence[Dict[str, Any]],
                        reference: Optional[str]) -> List[str]:
    """The paired differences against each shuffled-pairs control, then in words: of a method's gain
    over ``reference`` (random init), how much true pairing adds over the control."""
    if not controls:
        return []
    vs_ref = {(c["method"], c["protocol"], c["shots"]): c for c in comparisons}
    lines: List[str] = []
    for ctrl in OrderedDict.fromkeys(c["reference"] for c in controls):
        rows = [c for c in controls if c["reference"] == ctrl]
        base = rows[0]["method"]
        lines += render_comparisons(rows, ctrl)
        lines += [f"### How much of the gain comes from true pairing: {base}", "",
                  f"`{ctrl}` is {base} pretrained on the same store with the same budget, but every training IMU "
                  "window paired with another window's video (`split.shuffle_train_pairs=true`): it keeps the "
                  "objective, the data and the steps, and loses only the correspondence. Differences are paired "
                  "by seed (same subject split and few-shot draw for both), balanced accuracy on the test "
                  "subjects, mean [95 % Student-t CI].", ""]
        if any((c.get("n_pretrain_seeds") or 0) > 1 for c in rows):
            lines += [f"Both are pretrained with the same seeds; pretraining seed p of {base} is paired with seed p "
                      f"of `{ctrl}` (same steps) on every split and draw. The CI is over splits and draws of the mean "
                      "over pretraining seeds; *by pretraining seed* is each seed's own difference.", ""]
        for c in rows:
            g = vs_ref.get((base, c["protocol"], c["shots"]))
            pairing = f"{base} − {ctrl} = {_ci_words(c)}"
            if (c.get("n_pretrain_seeds") or 0) > 1:
                pos = sum(e["mean_diff"] > 0 for e in c["pretrain_mean_diffs"])
                pairing += (f" (by pretraining seed: {pretrain_diffs_text(c)}; above 0 for {pos} of "
                            f"{c['n_pretrain_seeds']})")
            if g is None or reference is None:
                lines.append(f"- {c['protocol']}, {c['shots']} shots: {pairing}.")
                continue
            text = f"- {c['protocol']}, {c['shots']} shots: gain over {reference}: {base} − {reference} = " \
                   f"{_ci_words(g)}; true pairing: {pairing}"
            if g["mean_diff"] > 0:
                share = 100.0 * c["mean_diff"] / g["mean_diff"]
                text += (f", i.e. {share:.0f} % of the gain; the objective on shuffled pairs alone: "
                         f"{g['mean_diff'] - c['mean_diff']:+.3f}")
            else:
                text += f"; {base} does not beat {reference} here"
            lines.append(text + ".")
        above = [c.get("ci_low") is not None and c["ci_low"] > 0 for c in rows]
        yes = [f"{c['protocol']} {c['shots']} shots" for c, a in zip(rows, above) if a]
        no = [f"{c['protocol']} {c['shots']} shots" for c, a in zip(rows, above) if not a]
        if not yes:
            verdict = (f"{base} with true pairs does **not** beat its shuffled control with a 95 % CI above 0 at any "
                       "setting shown: these seeds do not show that its gain over random init comes from true pairing.")
        elif not no:
            verdict = (f"{base} with true pairs beats its shuffled control with a 95 % CI above 0 at every "
                       "setting shown.")
        else:
            verdict = (f"{base} with true pairs beats its shuffled control with a 95 % CI above 0 at {', '.join(yes)}; "
                       f"it does **not** at {', '.join(no)}.")
        lines += ["", f"In short: {verdict}", ""]
        flagged = sorted({m for c in rows for m in c.get("mismatch_methods", [])})
        if flagged:
            lines += [f"† {', '.join(flagged)} differ(s) from the reference evaluation (see below): these pairs may "
                      "not share splits or settings.", ""]
    return lines


@dataclass
class ReportText:
    """What a combined report says beside the results: a ``preamble`` (what was run, at which size),
    ``caveats`` (what the numbers cannot mean) and the titles of the zero-shot tables, keyed by the
    store path the zero-shot results name; ``appendix``: sections after the few-shot tables."""

    preamble: List[str] = field(default_factory=list)
    caveats: List[str] = field(default_factory=list)
    zeroshot_titles: Dict[str, str] = field(default_factory=dict)
    appendix: List[str] = field(default_factory=list)  # sections after the few-shot tables (another dataset's)


def _combined_plots(merged: RunResult, zeroshot: Sequence[ZeroshotResult], titles: Dict[str, str],
                    out: Path) -> List[str]:
    images: List[str] = []
    summary = merged.summary
    if summary:
        class_names = (merged.dataset or {}).get("class_names") or []
        protocols = sorted({r["protocol"] for r in summary})
        for proto in protocols:
            rows = [r for r in summary if r["protocol"] == proto]
            if len({r["shots"] for r in rows}) > 1 or len(protocols) == 1:
                name = f"shots_curve_{proto}.png"
                ds = (merged.dataset or {}).get("name") or ""
                plot_shots_curve(rows, out / name, title=f"{proto} on {ds}" if ds else proto)
                images.append(name)
        if class_names:
            plot_confusion(summary, class_names, out / "confusion_matrices.png")
            images.append("confusion_matrices.png")
        if merged.comparisons:
            plot_comparisons(merged.comparisons, out / "comparisons.png")
            images.append("comparisons.png")
    for i, ((split, store), zrows) in enumerate(zeroshot_groups(zeroshot)):
        ztitle = zeroshot_title(split, store, titles)
        name = "retrieval.png" if i == 0 else f"retrieval_{i + 1}.png"
        short = ztitle.split(":")[0] if ":" in ztitle else ztitle.split(" (")[0]
        plot_retrieval(zrows, out / name, title=f"Zero-shot retrieval, {short[:60]}")
        images.append(name)
    return images


def _few_shot_section(merged: RunResult) -> List[str]:
    ds = merged.dataset or {}
    comparisons = merged.comparisons or []
    lines = ["## Few-shot evaluation (Table 3 shape)", "",
             f"Dataset `{ds.get('spec', '?')}`: {ds.get('n_windows', '?')} windows, {ds.get('n_subjects', '?')} "
             "subjects; subject-disjoint train/validation/test; k labelled windows per class drawn from the "
             "training subjects; model selection on validation subjects; test subjects scored once per run.", ""]
    if any((s.get("split") or {}).get("optimistic") for s in merged.sources or []):
        lines += [PAPER_WARNING, ""]
    lines += render_table3(merged.summary)
    lines += render_protocol_gaps(protocol_gaps(merged.runs or []))
    lines += render_pretrain_spread(merged.summary)
    lines += render_comparisons(comparisons, merged.reference)
    lines += render_true_pairing(comparisons, merged.control_comparisons or [], merged.reference)
    if merged.mismatches:
        by_method: "OrderedDict[tuple, List[str]]" = OrderedDict()  # one entry per method (all its seeds)
        for m in merged.mismatches:
            by_method.setdefault((m["method"], m["reference_path"], tuple(m["differs_in"])), []).append(m["path"])
        lines += ["† **Not a matched comparison** (merged with `--allow-mismatch`): "
                  + "; ".join(f"{method} (`{'`, `'.join(paths)}`) differs from the reference (`{ref}`) "
                              f"in {', '.join(diff)}" for (method, ref, diff), paths in by_method.items())
                  + ".", ""]
    lines += ["### Sources", ""]
    for s in merged.sources or []:
        enc = s.get("encoder") or {}
        pre = enc.get("preprocess") or {}
        split = s.get("split") or {}
        pseed = "" if s.get("pretrain_seed") is None else f", pretraining seed {s['pretrain_seed']}"
        lines.append(f"- **{s['method']}**: `{s['path']}` (encoder `{enc.get('encoder', '?')}`{pseed}, architecture "
                     f"`{enc.get('model', '?')}`, normalisation `{pre.get('normalization', '?')}`); "
                     f"{split_text(split)}; {val_text(split.get('val', 'full' if split and 'scheme' not in split else None))}"
                     + (f"; {SUBJECTS_ARE_RECORDINGS}" if (s.get("dataset") or {}).get("subjects_are_recordings") else ""))
    lines.append("")
    skipped = [(s["method"], item) for s in merged.sources or []
               for item in (((s.get("dataset") or {}).get("report") or {}).get("skipped_recordings") or [])]
    if skipped:
        lines += ["### Skipped recordings", ""] + [f"- {m}: `{i.get('path')}`: {i.get('error')}" for m, i in skipped]
        lines.append("")
    return lines


def write_combined_report(paths: Sequence[PathLike], out_dir: PathLike, *, title: str = "crossmodal-har report",
                          text: Optional[ReportText] = None, reference: Optional[str] = None,
                          allow_mismatch: bool = False) -> RunResult:
    """Merge result files into ``out_dir``: results.json, report.md and PNG plots. Returns the merged result.

    Zero-shot results get one table per evaluated store and split, titled by ``text.zeroshot_titles``
    or by default. A method ``X (shuffled pairs)`` next to ``X`` (the control) adds
    ``control_comparisons`` (X − control, paired by seed) and a section on true pairing. Methods
    pretrained with several seeds (the same label, one evaluation or zero-shot result per pretraining
    seed) are pooled: the tables show the mean over pretraining seeds and its spread.

    ``reference``: the method every other is compared with (paired differences; default ``random``,
    else ``supervised``, else the first); ``allow_mismatch``: merge files whose dataset, split scheme,
    preprocessing or architecture differ from the reference's (flagged †) instead of refusing them.
    Nothing is written when the inputs are refused.
    """
    if not paths:
        raise UserError("report: give at least one results directory")
    out = Path(out_dir)
    text = text or ReportText()
    evals, zeroshot = read_inputs(paths)
    merged = merge_results(evals, reference=reference, allow_mismatch=allow_mismatch) if evals else RunResult(
        kind=MERGED_KIND, complete=True, sources=[], summary=[], runs=[], comparisons=[])
    out.mkdir(parents=True, exist_ok=True)
    merged.zeroshot = [z.listing() for z in zeroshot]
    # per set of evaluated windows, each method pooled over its pretraining seeds
    merged.zeroshot_summary = [e for _, rows in zeroshot_groups(zeroshot) for e in zeroshot_summary(rows)]
    merged.control_comparisons = control_comparisons(merged.runs, [m["method"] for m in merged.mismatches or []])
    images = _combined_plots(merged, zeroshot, text.zeroshot_titles, out)

    lines = [f"# {title}", "", f"Generated {_generated()} from {len(evals)} evaluation and {len(zeroshot)} zero-shot "
             "result file(s).", ""]
    lines += list(text.preamble)
    if text.caveats:
        lines += ["## What these numbers mean — and what they cannot mean", ""] + [f"- {c}" for c in text.caveats] + [""]
    lines += render_zeroshot(zeroshot, text.zeroshot_titles)
    if merged.summary:
        lines += _few_shot_section(merged)
    lines += list(text.appendix)
    if images:
        lines += ["## Plots", ""] + [f"![{Path(i).stem}]({i})" for i in images] + [""]
    write_results(merged, out / "results.json")
    atomic_write_text(out / "report.md", "\n".join(lines))
    log.info("wrote %s", out / "report.md")
    return merged
