"""One report from any set of evaluation and zero-shot results (``crossmodal-har report``).

Inputs are ``results.json`` files (or directories holding one) written by ``crossmodal-har
evaluate`` (few-shot; the paper's Table 3 shape) or ``crossmodal-har zeroshot`` (retrieval and
nearest-video-class accuracy; the paper's Table 4 shape). The report holds both tables, the plots
(shots curves per method with 95 % CI bands, retrieval bars, confusion matrices) and a merged
``results.json`` with the evaluation schema plus a ``zeroshot`` list.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.evaluate.comparisons import compute_comparisons, pretrain_diffs_text, render_comparisons
from crossmodal_har.evaluate.fewshot import shots_key
from crossmodal_har.evaluate.plots import plot_comparisons, plot_confusion, plot_shots_curve
from crossmodal_har.evaluate.report import (SUBJECTS_ARE_RECORDINGS, json_safe, merge_results, pretrain_seed_of,
                                             split_text, val_text)
from crossmodal_har.io import atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
METHOD_ORDER = ("siglip", "clip", "imu2clip", "imu-mae", "random", "supervised")
# "X (shuffled pairs)": X pretrained with split.shuffle_train_pairs (the control); the report compares
# X with it, seed by seed, to say how much of X's gain comes from true pairing
CONTROL_SUFFIX = " (shuffled pairs)"
TABLE3_METRICS = (("balanced_accuracy", "Balanced accuracy"), ("macro_f1", "Macro-F1"), ("accuracy", "Accuracy"))


def classify_inputs(paths: Sequence[PathLike]) -> Tuple[List[Path], List[Dict[str, Any]]]:
    """Split inputs into evaluation result files and loaded zero-shot results.

    Raises DataError naming the file when an input is neither.
    """
    evals: List[Path] = []
    zeroshot: List[Dict[str, Any]] = []
    for raw in paths:
        p = Path(raw)
        f = p / "results.json" if p.is_dir() else p
        if not f.exists():
            raise DataError(f, "no results.json here (expected the --out directory of evaluate or zeroshot)")
        data = read_json(f)
        if isinstance(data, dict) and isinstance(data.get("summary"), list):
            evals.append(f)
        elif isinstance(data, dict) and isinstance(data.get("retrieval"), dict):
            data["_path"] = os.fspath(f)
            data.setdefault("method", f.parent.name)
            data["pretrain_seed"] = pretrain_seed_of(data)
            key = _zeroshot_key(data)
            for z in zeroshot:
                if _zeroshot_key(z) == key:
                    seed = "" if key[3] is None else f", pretraining seed {key[3]}"
                    raise UserError(f"report: {f}: the zero-shot result (method {key[0]!r}, store {key[1] or '?'}, "
                                    f"split {key[2]}{seed}) is already in {z['_path']}"
                                    + ("; the same results were given twice" if z["_path"] == os.fspath(f) else
                                       "; give one of them another --name")
                                    + " - each result may be merged once")
            zeroshot.append(data)
        else:
            raise DataError(f, "neither an evaluation results.json (no 'summary') nor a zero-shot one (no 'retrieval')")
    return evals, zeroshot


def _zeroshot_key(z: Dict[str, Any]) -> tuple:
    """A zero-shot result may be merged once: (method, store, split, pretraining seed)."""
    return (z.get("method"), os.fspath(z.get("store") or ""), z.get("split", "test"), z.get("pretrain_seed"))


def _method_key(m: str) -> tuple:
    base = m.split(" ")[0]
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), m)


def _pm(mean: Optional[float], std: Optional[float]) -> str:
    if mean is None:
        return "–"
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


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
        for r in sorted(summary, key=lambda r: (_method_key(r.get("method", "")), r["protocol"])):
            label = r.get("method", "") + (" †" if r.get("mismatch") else "")
            if r.get("val_mode") == "full" or "/" in (r.get("val_mode") or ""):
                label += f" (val {r['val_mode']})"
            mark = " ‡" if (r.get("method", ""), r["protocol"], r["shots"]) in fewer else ""
            cells.setdefault((label, r["protocol"]), {})[r["shots"]] = _pm(
                r.get(f"{metric}_mean"), r.get(f"{metric}_std")) + mark
        over = ("seeds" if not several else "evaluation seeds of the mean over pretraining seeds")
        lines += [f"### {title} (mean ± std over {over}, test subjects)", "",
                  "| Method | Protocol | " + " | ".join(f"{s} shots" for s in shots) + " |",
                  "|---|---|" + "---|" * len(shots)]
        for (m, p), c in cells.items():
            lines.append(f"| {m} | {p} | " + " | ".join(c.get(s, "–") for s in shots) + " |")
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
    for r in sorted(summary, key=lambda r: (shots_key(r["shots"]), _method_key(r.get("method", "")))):
        if r.get("n_pretrain_seeds") == 1 and any(q.get("method") == r.get("method") for q in rows):
            ms = single.setdefault(r["shots"], [])
            if r.get("method", "") not in ms:
                ms.append(r.get("method", ""))
    rows = sorted(rows, key=lambda r: (_method_key(r.get("method", "")), r["protocol"], shots_key(r["shots"])))

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


RETRIEVAL_KEYS = ("R@1", "R@3", "R@10", "MRR")


def _stats(v: Sequence[float]) -> Dict[str, Optional[float]]:
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
            "min": float(min(v)), "max": float(max(v))}


def zeroshot_summary(zeroshot: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Zero-shot results of one set of evaluated windows pooled per method over its pretraining seeds:
    one entry per method × direction with ``n_results``, ``pretrain_seeds``, ``windows`` and, for R@1,
    R@3, R@10 and MRR, ``K_mean``, ``K_std`` (sample std over pretraining seeds; None with one),
    ``K_min``, ``K_max``, ``chance_K``; plus ``classification`` (balanced accuracy and macro-F1 the
    same way) when the results have it."""
    by_method: "OrderedDict[str, List[Dict[str, Any]]]" = OrderedDict()
    for z in sorted(zeroshot, key=lambda z: (_method_key(z.get("method", "")), str(z.get("pretrain_seed")))):
        by_method.setdefault(z.get("method", ""), []).append(z)
    out = []
    for method, zs in by_method.items():
        seeds = [z.get("pretrain_seed") for z in zs]
        for direction in zs[0]["retrieval"]:
            ms = [z["retrieval"][direction] for z in zs if direction in z["retrieval"]]
            e: Dict[str, Any] = {"method": method, "direction": direction, "n_results": len(ms),
                                 "pretrain_seeds": [p for p in seeds if p is not None],
                                 "windows": sorted({z.get("windows") for z in zs}, key=str),
                                 "store": zs[0].get("store"), "split": zs[0].get("split", "test")}
            for k in RETRIEVAL_KEYS:
                st = _stats([m[k] for m in ms])
                e.update({f"{k}_{a}": v for a, v in st.items()})
                e[f"chance_{k}"] = ms[0].get(f"chance_{k}")
            cls = [z["classification"] for z in zs if z.get("classification")]
            if cls:
                e["classification"] = {
                    **{f"{k}_{a}": v for k in ("balanced_accuracy", "macro_f1")
                       for a, v in _stats([c[k] for c in cls]).items()},
                    "chance_balanced_accuracy": cls[0].get("chance_balanced_accuracy"), "n_results": len(cls)}
            out.append(e)
    return out


def _spread(e: Dict[str, Any], k: str, *, minmax: bool = False) -> str:
    text = f"{e[f'{k}_mean']:.3f}" + ("" if e[f"{k}_std"] is None else f" ± {e[f'{k}_std']:.3f}")
    return text + (f" ({e[f'{k}_min']:.3f} – {e[f'{k}_max']:.3f})" if minmax and e[f"{k}_std"] is not None else "")


def render_table4_seeds(zeroshot: Sequence[Dict[str, Any]]) -> List[str]:
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
    return lines


def render_table4(zeroshot: Sequence[Dict[str, Any]]) -> List[str]:
    """Zero-shot table: retrieval both ways and nearest-video-class classification, chance beside
    (pooled over pretraining seeds, :func:`render_table4_seeds`, when a method has several)."""
    if not zeroshot:
        return []
    counts: Dict[str, int] = {}
    for z in zeroshot:
        counts[z.get("method", "")] = counts.get(z.get("method", ""), 0) + 1
    if max(counts.values()) > 1:
        return render_table4_seeds(zeroshot)
    rows = sorted(zeroshot, key=lambda z: _method_key(z.get("method", "")))
    lines = ["| Method | Direction | Windows | R@1 | R@3 | R@10 | MRR |", "|---|---|---|---|---|---|---|"]
    chance: Dict[str, float] = {}
    for z in rows:
        for direction, m in z["retrieval"].items():
            lines.append(f"| {z['method']} | {direction.replace('_', ' ')} | {z.get('windows', '?')} | "
                         + " | ".join(f"{m[k]:.3f}" for k in ("R@1", "R@3", "R@10", "MRR")) + " |")
            chance = {k: m.get(f"chance_{k}") for k in ("R@1", "R@3", "R@10", "MRR")}
    if chance:
        lines.append("| *chance* | | | " + " | ".join("–" if chance[k] is None else f"{chance[k]:.3f}"
                                                   for k in ("R@1", "R@3", "R@10", "MRR")) + " |")
    lines.append("")
    cls = [z for z in rows if z.get("classification")]
    if cls:
        lines += ["Zero-shot classification (each IMU window takes the class whose mean video embedding over "
                  "*other* subjects is nearest; no IMU label used):", "",
                  "| Method | Balanced accuracy | Macro-F1 | Chance (balanced) |", "|---|---|---|---|"]
        for z in cls:
            c = z["classification"]
            lines.append(f"| {z['method']} | {c['balanced_accuracy']:.3f} | {c['macro_f1']:.3f} | "
                         f"{c.get('chance_balanced_accuracy', float('nan')):.3f} |")
        lines.append("")
    return lines


def zeroshot_groups(zeroshot: Sequence[Dict[str, Any]], titles: Optional[Dict[str, str]] = None
                    ) -> List[Tuple[str, List[Dict[str, Any]]]]:
    """Zero-shot results grouped by evaluated windows (``split``, ``store``), held-out test subjects
    first: [(title, results)]. ``titles`` maps a store path (as in results.json) to its table title."""
    groups: "OrderedDict[tuple, List[Dict[str, Any]]]" = OrderedDict()
    for z in zeroshot:
        groups.setdefault((z.get("split", "test"), os.fspath(z.get("store") or "")), []).append(z)
    out = []
    for (split, store) in sorted(groups, key=lambda k: k[0] != "test"):
        default = (f"held-out test subjects of each run's pretraining split (store `{store or '?'}`)" if split == "test"
                   else f"every window of store `{store or '?'}` (`--split {split}`)")
        out.append(((titles or {}).get(store) or default, groups[(split, store)]))
    return out


def render_zeroshot(zeroshot: Sequence[Dict[str, Any]], titles: Optional[Dict[str, str]] = None) -> List[str]:
    """The zero-shot section: one table (with its own chance levels) per set of evaluated windows."""
    if not zeroshot:
        return []
    lines = ["## Zero-shot retrieval and classification (Table 4 shape)", ""]
    for title, rows in zeroshot_groups(zeroshot, titles):
        lines += [f"### {title[:1].upper()}{title[1:]}", ""] + render_table4(rows)
    return lines


def plot_retrieval(zeroshot: Sequence[Dict[str, Any]], path: Path,
                   title: str = "Zero-shot retrieval on held-out subjects") -> Path:
    """Bar chart of IMU→video R@1/R@3/R@10/MRR per method, chance as a dashed marker."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [e for e in zeroshot_summary(zeroshot) if e["direction"] == "imu_to_video"]
    keys = RETRIEVAL_KEYS
    several = any(e["n_results"] > 1 for e in rows)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(keys))
    for i, e in enumerate(rows):
        mean = np.array([e[f"{k}_mean"] for k in keys])
        err = np.array([[e[f"{k}_mean"] - e[f"{k}_min"] for k in keys], [e[f"{k}_max"] - e[f"{k}_mean"] for k in keys]])
        ax.bar(x + i * width, mean, width, label=e["method"] + (f" ({e['n_results']} seeds)" if several else ""),
               yerr=err if e["n_results"] > 1 else None, capsize=2)
    ref = rows[0]
    for j, k in enumerate(keys):
        c = ref.get(f"chance_{k}")
        if c is not None:
            ax.hlines(c, j - 0.05, j + 0.8, colors="k", linestyles="dashed", linewidth=1)
    ax.set_xticks(x + 0.4 - width / 2)
    ax.set_xticklabels(keys)
    top = max([e[f"{k}_max"] for e in rows for k in keys] + [ref.get("chance_R@10") or 0])
    ax.set_ylim(0, min(1.0, max(0.05, 1.25 * top)))
    ax.set_ylabel("IMU → video retrieval")
    ax.set_title(f"{title} (dashed: chance" + ("; mean, min–max over seeds)" if several else ")"),
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def control_comparisons(runs: Sequence[Dict[str, Any]], flagged: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """``X − X (shuffled pairs)`` for every control whose method is there too: paired by seed with
    :func:`crossmodal_har.evaluate.comparisons.compute_comparisons` (its entries, reference = the control).
    ``flagged``: methods merged with a mismatch; an entry involving one lists it in ``mismatch_methods``."""
    methods = list(OrderedDict.fromkeys(r.get("method", "") for r in runs))
    out: List[Dict[str, Any]] = []
    for ctrl in methods:
        base = ctrl[: -len(CONTROL_SUFFIX)] if ctrl.endswith(CONTROL_SUFFIX) else None
        if base and base in methods:
            for c in compute_comparisons([r for r in runs if r.get("method") in (base, ctrl)], ctrl)[0]:
                bad = [m for m in (base, ctrl) if m in flagged]
                out.append({**c, **({"mismatch_methods": bad} if bad else {})})
    return out


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


def build_report(paths: Sequence[PathLike], out_dir: PathLike, *, title: str = "crossmodal-har report",
                 preamble: Sequence[str] = (), caveats: Sequence[str] = (), reference: Optional[str] = None,
                 allow_mismatch: bool = False, zeroshot_titles: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Merge result files into ``out_dir``: results.json, report.md and PNG plots. Returns the merged dict.

    Zero-shot results get one table per evaluated store and split, titled by ``zeroshot_titles``
    (store path -> title) or by default. A method ``X (shuffled pairs)`` next to ``X`` (the control)
    adds ``control_comparisons`` (X − control, paired by seed) and a section on true pairing. Methods
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
    evals, zeroshot = classify_inputs(paths)
    merged: Dict[str, Any] = merge_results(evals, reference=reference, allow_mismatch=allow_mismatch) if evals else {
        "format_version": 1, "kind": "merged-evaluation", "complete": True, "sources": [], "summary": [], "runs": [],
        "comparisons": []}
    out.mkdir(parents=True, exist_ok=True)
    merged["zeroshot"] = [{k: v for k, v in z.items() if not k.startswith("_")} | {"path": z["_path"]}
                          for z in zeroshot]
    # per set of evaluated windows, each method pooled over its pretraining seeds
    merged["zeroshot_summary"] = [e for _, rows in zeroshot_groups(zeroshot) for e in zeroshot_summary(rows)]
    summary = merged["summary"]
    merged["control_comparisons"] = control_comparisons(merged.get("runs") or [],
                                                        [m["method"] for m in merged.get("mismatches") or []])
    images: List[str] = []
    if summary:
        class_names = (merged.get("dataset") or {}).get("class_names") or []
        protocols = sorted({r["protocol"] for r in summary})
        for proto in protocols:
            rows = [r for r in summary if r["protocol"] == proto]
            if len({r["shots"] for r in rows}) > 1 or len(protocols) == 1:
                name = f"shots_curve_{proto}.png"
                plot_shots_curve(rows, out / name)
                images.append(name)
        if class_names:
            plot_confusion(summary, class_names, out / "confusion_matrices.png")
            images.append("confusion_matrices.png")
        if merged.get("comparisons"):
            plot_comparisons(merged["comparisons"], out / "comparisons.png")
            images.append("comparisons.png")
    for i, (ztitle, zrows) in enumerate(zeroshot_groups(zeroshot, zeroshot_titles)):
        name = "retrieval.png" if i == 0 else f"retrieval_{i + 1}.png"
        short = ztitle.split(":")[0] if ":" in ztitle else ztitle.split(" (")[0]
        plot_retrieval(zrows, out / name, title=f"Zero-shot retrieval, {short[:60]}")
        images.append(name)

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {title}", "", f"Generated {now} from {len(evals)} evaluation and {len(zeroshot)} zero-shot "
             "result file(s).", ""]
    lines += list(preamble)
    if caveats:
        lines += ["## What these numbers mean — and what they cannot mean", ""] + [f"- {c}" for c in caveats] + [""]
    lines += render_zeroshot(zeroshot, zeroshot_titles)
    if summary:
        ds = merged.get("dataset") or {}
        lines += ["## Few-shot evaluation (Table 3 shape)", "",
                  f"Dataset `{ds.get('spec', '?')}`: {ds.get('n_windows', '?')} windows, {ds.get('n_subjects', '?')} "
                  "subjects; subject-disjoint train/validation/test; k labelled windows per class drawn from the "
                  "training subjects; model selection on validation subjects; test subjects scored once per run.", ""]
        lines += render_table3(summary)
        lines += render_pretrain_spread(summary)
        lines += render_comparisons(merged.get("comparisons") or [], merged.get("reference"))
        lines += render_true_pairing(merged.get("comparisons") or [], merged["control_comparisons"],
                                     merged.get("reference"))
        if merged.get("mismatches"):
            by_method: "OrderedDict[tuple, List[str]]" = OrderedDict()  # one entry per method (all its seeds)
            for m in merged["mismatches"]:
                by_method.setdefault((m["method"], m["reference_path"], tuple(m["differs_in"])), []).append(m["path"])
            lines += ["† **Not a matched comparison** (merged with `--allow-mismatch`): "
                      + "; ".join(f"{method} (`{'`, `'.join(paths)}`) differs from the reference (`{ref}`) "
                                  f"in {', '.join(diff)}" for (method, ref, diff), paths in by_method.items())
                      + ".", ""]
        lines += ["### Sources", ""]
        for s in merged.get("sources", []):
            enc = s.get("encoder") or {}
            pre = enc.get("preprocess") or {}
            split = s.get("split") or {}
            pseed = "" if s.get("pretrain_seed") is None else f", pretraining seed {s['pretrain_seed']}"
            lines.append(f"- **{s['method']}**: `{s['path']}` (encoder `{enc.get('encoder', '?')}`{pseed}, architecture "
                         f"`{enc.get('model', '?')}`, normalisation `{pre.get('normalization', '?')}`); "
                         f"{split_text(split)}; {val_text(split.get('val', 'full' if split and 'scheme' not in split else None))}"
                         + (f"; {SUBJECTS_ARE_RECORDINGS}" if (s.get("dataset") or {}).get("subjects_are_recordings") else ""))
        lines.append("")
        skipped = [(s["method"], item) for s in merged.get("sources", [])
                   for item in (((s.get("dataset") or {}).get("report") or {}).get("skipped_recordings") or [])]
        if skipped:
            lines += ["### Skipped recordings", ""] + [f"- {m}: `{i.get('path')}`: {i.get('error')}" for m, i in skipped]
            lines.append("")
    if images:
        lines += ["## Plots", ""] + [f"![{Path(i).stem}]({i})" for i in images] + [""]
    atomic_write_json(out / "results.json", json_safe(merged))
    atomic_write_text(out / "report.md", "\n".join(lines))
    log.info("wrote %s", out / "report.md")
    return merged
