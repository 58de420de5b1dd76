"""Summaries of evaluation and zero-shot results: the numbers the tables and plots show.

* :func:`summarize_runs`: per-run test metrics → one row per method × protocol × shots (mean, std and
  95 % t-interval over seeds or folds), with the spread across pretraining seeds
  (:func:`pretrain_spread`) when a method was pretrained with several;
* :func:`zeroshot_summary`: zero-shot results pooled per method over its pretraining seeds, grouped by
  the windows they evaluated (:func:`zeroshot_groups`);
* :func:`control_comparisons`: each method against its shuffled-pairs control (``X (shuffled pairs)``),
  paired by seed.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from crossmodal_har.evaluate.comparisons import compute_comparisons, run_units, unit_value
from crossmodal_har.evaluate.fewshot import shots_key
from crossmodal_har.evaluate.metrics import METRICS, summarize, welch_difference
from crossmodal_har.evaluate.results import CLASS_RETRIEVAL_KEYS, RETRIEVAL_KEYS, ZeroshotResult

PROTOCOL_ORDER = ("supervised", "linear-probe", "knn", "finetune")
METHOD_ORDER = ("siglip", "clip", "imu2clip", "imu-mae", "random", "supervised")
# "X (shuffled pairs)": X pretrained with split.shuffle_train_pairs (the control); the report compares
# X with it, seed by seed, to say how much of X's gain comes from true pairing
CONTROL_SUFFIX = " (shuffled pairs)"
# "X [paper protocol: optimistic]": X evaluated with the paper's protocol (evaluate --split paper); every
# table row of such runs carries it, and :func:`protocol_gaps` sets it against X under ours
PAPER_LABEL = " [paper protocol: optimistic]"


def method_order_key(method: str) -> tuple:
    """Sort key of a method label in the combined tables: the paper's methods first, then by name."""
    base = method.split(" ")[0]
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), method)


def _group_key(run: Dict[str, Any]) -> tuple:
    return (run.get("method", ""), run["protocol"], run["shots"])


def _order_key(key: tuple, method_rank: Dict[str, int]) -> tuple:
    method, protocol, shots = key
    p = PROTOCOL_ORDER.index(protocol) if protocol in PROTOCOL_ORDER else len(PROTOCOL_ORDER)
    return (method_rank[method], p, protocol, shots_key(shots))


def summarize_runs(runs: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One summary row per (method, protocol, shots), ordered by method (first appearance), protocol,
    shots.

    Keys: ``method, protocol, shots, n_seeds`` (distinct seeds), ``n_runs``, ``unit`` and ``n_units``,
    and for each metric M in accuracy, balanced_accuracy, macro_f1: ``M_mean, M_std, M_ci95_low,
    M_ci95_high`` (a two-sided 95 % Student-t interval of the mean over units; ``None`` with one
    unit). The unit is the run (``seed``: one subject split and draw per seed) or, with folds, the
    ``fold`` (its runs' mean over seeds), so the interval is over groups of test people. Also
    ``per_class_recall_mean`` (list; ``None`` for a class absent from the test subjects) and
    ``confusion_matrix`` (counts summed over seeds).

    Runs of one method pretrained with several seeds (``pretrain_seed`` in the runs, set by
    :func:`crossmodal_har.evaluate.merge.merge_results`) are averaged inside each unit, so the mean and
    CI are over units of pretraining-seed means; the spread across pretraining seeds is added
    separately (:func:`pretrain_spread`).
    """
    groups: "OrderedDict[tuple, List[Dict[str, Any]]]" = OrderedDict()
    method_rank: Dict[str, int] = {}
    for r in runs:
        groups.setdefault(_group_key(r), []).append(r)
        method_rank.setdefault(r.get("method", ""), len(method_rank))
    rows = []
    for key in sorted(groups, key=lambda k: _order_key(k, method_rank)):
        rs = groups[key]
        units = run_units(rs)
        row: Dict[str, Any] = {"method": key[0], "protocol": key[1], "shots": key[2],
                               "n_seeds": len({r.get("seed") for r in rs}), "n_runs": len(rs),
                               "unit": "fold" if any(r.get("fold") is not None for r in rs) else "seed",
                               "n_units": len(units)}
        if any(r.get("optimistic") for r in rs):  # the paper's protocol (evaluate --split paper)
            row["optimistic"] = True
        modes = sorted({r["val_mode"] for r in rs if r.get("val_mode")})
        if modes:
            row["val_mode"] = "/".join(modes)
        if any("n_labels" in r for r in rs):
            row["n_labels_mean"] = float(np.mean([r.get("n_labels", r.get("n_train", 0)) for r in rs]))
        for m in METRICS:
            s = summarize([unit_value(u, m) for u in units.values()])
            row[f"{m}_mean"] = s["mean"]
            row[f"{m}_std"] = s["std"]
            row[f"{m}_ci95_low"] = s["ci95_low"]
            row[f"{m}_ci95_high"] = s["ci95_high"]
        recalls = [r["test"].get("per_class_recall") for r in rs if r["test"].get("per_class_recall") is not None]
        if recalls:
            arr = np.array([[np.nan if v is None else v for v in rc] for rc in recalls], dtype=np.float64)
            with np.errstate(all="ignore"):
                mean = np.nanmean(arr, axis=0) if arr.size else arr
            row["per_class_recall_mean"] = [None if np.isnan(v) else float(v) for v in mean]
        cms = [r["test"]["confusion_matrix"] for r in rs if r["test"].get("confusion_matrix") is not None]
        if cms:
            row["confusion_matrix"] = np.sum(np.asarray(cms, dtype=np.int64), axis=0).tolist()
        row["n_train_mean"] = float(np.mean([r.get("n_train", 0) for r in rs]))
        row.update(pretrain_spread(rs))
        rows.append(row)
    return rows


def pretrain_seeds(runs: Sequence[Dict[str, Any]]) -> List[Any]:
    """The distinct pretraining seeds of ``runs`` (``pretrain_seed``; runs without one are left out)."""
    return sorted({r["pretrain_seed"] for r in runs if r.get("pretrain_seed") is not None}, key=str)


def pretrain_spread(runs: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Spread across pretraining seeds of one method × protocol × shots (empty without pretraining seeds).

    For each pretraining seed p, the mean over its units (:func:`run_units`) of each metric M; then
    ``n_pretrain_seeds``, ``pretrain_seeds``, ``pretrain_seed_means`` (``[{pretrain_seed, n_units,
    M...}]``) and ``M_pretrain_std`` (sample std of those means; ``None`` with one seed),
    ``M_pretrain_min``, ``M_pretrain_max``. These are descriptive: with 3 pretraining seeds no interval
    is computed; the eval-seed CI (``M_ci95_*``) is over splits and draws at fixed encoders.
    """
    seeds = pretrain_seeds(runs)
    if not seeds:
        return {}
    per_seed = []
    for p in seeds:
        units = run_units([r for r in runs if r.get("pretrain_seed") == p])
        entry: Dict[str, Any] = {"pretrain_seed": p, "n_units": len(units)}
        for m in METRICS:
            v = [x for x in (unit_value(u, m) for u in units.values()) if x is not None]
            entry[m] = float(np.mean(v)) if v else None
        per_seed.append(entry)
    out: Dict[str, Any] = {"n_pretrain_seeds": len(seeds), "pretrain_seeds": seeds, "pretrain_seed_means": per_seed}
    for m in METRICS:
        v = [e[m] for e in per_seed if e[m] is not None]
        out[f"{m}_pretrain_std"] = float(np.std(v, ddof=1)) if len(v) > 1 else None
        out[f"{m}_pretrain_min"] = float(min(v)) if v else None
        out[f"{m}_pretrain_max"] = float(max(v)) if v else None
    return out


# ------------------------------------------------------------------------------------------ zero-shot
def _stats(v: Sequence[float]) -> Dict[str, Optional[float]]:
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
            "min": float(min(v)), "max": float(max(v))}


def zeroshot_summary(zeroshot: Sequence[ZeroshotResult]) -> List[Dict[str, Any]]:
    """Zero-shot results of one set of evaluated windows pooled per method over its pretraining seeds:
    one entry per method × direction with ``n_results``, ``pretrain_seeds``, ``windows`` and, for R@1,
    R@3, R@10 and MRR, ``K_mean``, ``K_std`` (sample std over pretraining seeds; None with one),
    ``K_min``, ``K_max``, ``chance_K``; plus ``classification`` (balanced accuracy and macro-F1 the
    same way) and ``class_retrieval`` (per-class R@1, R@3, MRR the same way, with ``chance_K`` and
    ``classes``) when the results have them."""
    by_method: "OrderedDict[str, List[ZeroshotResult]]" = OrderedDict()
    for z in sorted(zeroshot, key=lambda z: (method_order_key(z.method or ""), str(z.pretrain_seed))):
        by_method.setdefault(z.method or "", []).append(z)
    out = []
    for method, zs in by_method.items():
        seeds = [z.pretrain_seed for z in zs]
        for direction in zs[0].retrieval:
            ms = [z.retrieval[direction] for z in zs if direction in z.retrieval]
            e: Dict[str, Any] = {"method": method, "direction": direction, "n_results": len(ms),
                                 "pretrain_seeds": [p for p in seeds if p is not None],
                                 "windows": sorted({z.windows for z in zs}, key=str),
                                 "store": zs[0].store, "split": zs[0].evaluated_split}
            for k in RETRIEVAL_KEYS:
                st = _stats([m[k] for m in ms])
                e.update({f"{k}_{a}": v for a, v in st.items()})
                e[f"chance_{k}"] = ms[0].get(f"chance_{k}")
            cls = [z.classification for z in zs if z.classification]
            if cls:
                e["classification"] = {
                    **{f"{k}_{a}": v for k in ("balanced_accuracy", "macro_f1")
                       for a, v in _stats([c[k] for c in cls]).items()},
                    "chance_balanced_accuracy": cls[0].get("chance_balanced_accuracy"), "n_results": len(cls)}
            crs = [z.class_retrieval for z in zs if z.class_retrieval]
            if crs:
                e["class_retrieval"] = {
                    **{f"{k}_{a}": v for k in CLASS_RETRIEVAL_KEYS for a, v in _stats([c[k] for c in crs]).items()},
                    **{f"chance_{k}": crs[0].get(f"chance_{k}") for k in CLASS_RETRIEVAL_KEYS},
                    "classes": crs[0].get("classes"), "n_results": len(crs)}
            out.append(e)
    return out


def zeroshot_groups(zeroshot: Sequence[ZeroshotResult]) -> List[Tuple[Tuple[str, str], List[ZeroshotResult]]]:
    """Zero-shot results grouped by the windows they evaluated, ``(split, store)``, held-out test
    subjects first: ``[((split, store), results)]``."""
    groups: "OrderedDict[tuple, List[ZeroshotResult]]" = OrderedDict()
    for z in zeroshot:
        groups.setdefault((z.evaluated_split, os.fspath(z.store or "")), []).append(z)
    return [(key, groups[key]) for key in sorted(groups, key=lambda k: k[0] != "test")]


# ------------------------------------------------------------------------------------------ controls
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


def protocol_gaps(runs: Sequence[Dict[str, Any]], metric: str = "balanced_accuracy") -> List[Dict[str, Any]]:
    """``X [paper protocol: optimistic]`` minus ``X`` for every method evaluated under both protocols, per
    protocol × shots: the difference of the mean test ``metric`` with Welch's 95 % interval. The two
    protocols test different windows (the paper's split is not subject-disjoint), so the runs are not
    paired: each side's units (seeds) are independent samples."""
    groups: "OrderedDict[tuple, List[Dict[str, Any]]]" = OrderedDict()
    for r in runs:
        groups.setdefault((r.get("method", ""), r["protocol"], r["shots"]), []).append(r)
    out: List[Dict[str, Any]] = []
    for (method, protocol, shots), rs in groups.items():
        if not method.endswith(PAPER_LABEL):
            continue
        base = method[: -len(PAPER_LABEL)]
        ours = groups.get((base, protocol, shots))
        if not ours:
            continue
        a = [unit_value(u, metric) for u in run_units(rs).values()]
        b = [unit_value(u, metric) for u in run_units(ours).values()]
        d = welch_difference(a, b)
        out.append({"method": method, "reference": base, "protocol": protocol, "shots": shots, "metric": metric,
                    "paper_mean": float(np.mean(a)), "ours_mean": float(np.mean(b)), **d})
    return sorted(out, key=lambda e: (method_order_key(e["reference"]), e["protocol"], shots_key(e["shots"])))
