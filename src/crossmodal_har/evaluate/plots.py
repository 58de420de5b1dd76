"""Figures of evaluation results: balanced accuracy vs shots (CI bands), confusion matrices, paired
differences, zero-shot retrieval bars.

Matplotlib with the non-interactive Agg backend; files are written atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import numpy as np

from crossmodal_har.evaluate.fewshot import shots_key
from crossmodal_har.evaluate.results import RETRIEVAL_KEYS, ZeroshotResult
from crossmodal_har.evaluate.summaries import zeroshot_summary
from crossmodal_har.io import atomic_write
from crossmodal_har.signals.text import shown

PathLike = Union[str, "os.PathLike[str]"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    matplotlib.rcParams["text.parse_math"] = False  # names are data: "$" in a class name is text
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: PathLike, *, tight: bool = True) -> Path:
    plt = _plt()
    extra = {"bbox_inches": "tight"} if tight else {}
    try:
        return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, **extra))
    finally:
        plt.close(fig)


def _n_classes(summary: Sequence[Dict[str, Any]]) -> int:
    for r in summary:
        for key in ("per_class_recall_mean", "confusion_matrix"):
            if r.get(key):
                return len(r[key])
    return 0


def plot_shots_curve(summary: Sequence[Dict[str, Any]], path: PathLike, metric: str = "balanced_accuracy",
                     title: str = "") -> Path:
    """``metric`` mean vs shots per class, one line per method/protocol, with 95 % CI error bars.

    Shots are categories (equally spaced: 1, 5, 10, ...); ``all`` stands apart after a gap and is not joined
    to them by the line. The dashed line is chance (1 / classes, the balanced accuracy of a guess).
    """
    plt = _plt()
    counts = sorted({r["shots"] for r in summary if r["shots"] != "all"}, key=shots_key)
    pos = {s: float(i) for i, s in enumerate(counts)}
    if any(r["shots"] == "all" for r in summary):
        pos["all"] = len(counts) + 0.6 if counts else 0.0
    lines: Dict[str, List[Dict[str, Any]]] = {}
    methods = {r.get("method", "") for r in summary}
    for r in summary:
        label = r["protocol"] if len(methods) <= 1 else f"{r.get('method', '')}, {r['protocol']}"
        lines.setdefault(shown(label), []).append(r)
    fig, ax = plt.subplots(figsize=(6.8, 4.3))
    k = len(lines)
    for j, (label, rows) in enumerate(lines.items()):
        rows = sorted(rows, key=lambda r: shots_key(r["shots"]))
        jitter = (j - (k - 1) / 2) * 0.06  # overlapping error bars side by side
        x = np.array([pos[r["shots"]] for r in rows], dtype=float) + jitter
        y = np.array([np.nan if r.get(f"{metric}_mean") is None else r[f"{metric}_mean"] for r in rows])
        lo = np.array([np.nan if r.get(f"{metric}_ci95_low") is None else r[f"{metric}_ci95_low"] for r in rows])
        hi = np.array([np.nan if r.get(f"{metric}_ci95_high") is None else r[f"{metric}_ci95_high"] for r in rows])
        err = np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
        err = np.where(np.isfinite(err), err, 0.0)
        numeric = np.array([r["shots"] != "all" for r in rows])
        (ln,) = ax.plot(x[numeric], y[numeric], marker="o", label=label)
        ax.errorbar(x, y, yerr=err, fmt="none", ecolor=ln.get_color(), capsize=3, linewidth=1)
        if (~numeric).any():
            ax.plot(x[~numeric], y[~numeric], marker="s", linestyle="none", color=ln.get_color())
    n_classes = _n_classes(summary)
    if n_classes:
        ax.axhline(1.0 / n_classes, color="0.3", linestyle="--", linewidth=1,
                   label=f"chance (1/{n_classes} classes)")
    ticks = sorted(pos, key=lambda s: pos[s])
    ax.set_xticks([pos[s] for s in ticks])
    ax.set_xticklabels([str(s) for s in ticks])
    if counts and "all" in pos:
        ax.axvline(len(counts) - 0.2, color="0.8", linewidth=1)
    ax.set_xlabel("labelled windows per class (shots; 'all': every training window)")
    ax.set_ylabel(metric.replace("_", " ") + " on test subjects")
    ax.set_ylim(0, 1.0)
    ax.grid(alpha=0.3, axis="y")
    n = sorted({r["n_seeds"] for r in summary})
    what = f"mean over {'/'.join(map(str, n))} seeds; bars: 95% t-interval of the mean"
    ax.set_title(shown(f"{title}\n{what}" if title else what), fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_confusion(summary: Sequence[Dict[str, Any]], class_names: Sequence[str], path: PathLike,
                   max_panels: int = 12) -> Path:
    """Confusion matrices of each method/protocol at its largest shots setting: counts of test windows
    summed over the seeds in each cell, colour = the share of the true class (row-normalised: recall on
    the diagonal); the caption says so."""
    plt = _plt()
    best: Dict[tuple, Dict[str, Any]] = {}
    for r in summary:
        if "confusion_matrix" not in r:
            continue
        key = (r.get("method", ""), r["protocol"])
        if key not in best or shots_key(r["shots"]) > shots_key(best[key]["shots"]):
            best[key] = r
    panels = list(best.values())[:max_panels]
    n = max(1, len(panels))
    cols = min(n, 3)
    rows_n = math.ceil(n / cols)
    size = 2.4 + 0.4 * len(class_names)
    fig, axes = plt.subplots(rows_n, cols, figsize=(size * cols, size * rows_n + 0.5), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, r in zip(axes.flat, panels):
        cm = np.asarray(r["confusion_matrix"], dtype=np.float64)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        k = len(class_names)
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels([shown(c) for c in class_names], rotation=60, ha="right", fontsize=7)
        ax.set_yticklabels([shown(c) for c in class_names], fontsize=7)
        if k <= 15:
            for i in range(k):
                for j in range(k):
                    if cm[i].sum():
                        ax.text(j, i, f"{cm[i, j]:.0f}\n{100 * norm[i, j]:.0f}%", ha="center", va="center",
                                fontsize=6, color="white" if norm[i, j] > 0.6 else "black")
        title = f"{r['protocol']}, shots={r['shots']}"
        if r.get("method"):
            title = f"{r['method']}: {title}"
        ax.set_title(shown(title) + f" ({r.get('n_seeds', '?')} seeds)", fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    fig.suptitle("Test windows summed over seeds (count, and % of the true class: colour; rows sum to 100%)",
                 fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _comparison_label(c: Dict[str, Any]) -> str:
    shots = "all shots" if c["shots"] == "all" else f"{c['shots']} shots"
    ref = c.get("reference", "?")
    if c.get("reference_protocol") not in (None, c["protocol"]):
        ref = f"{ref} ({c['reference_protocol']})"
    return shown(f"{c['method']}, {c['protocol']}, {shots}  vs  {ref}")


def plot_comparisons(comparisons: Sequence[Dict[str, Any]], path: PathLike) -> Path:
    """A forest plot of the paired differences against the reference: one row per comparison (readable
    label), the mean with its 95 % CI bar, the line of no difference, and mean [CI] p on the right; grey
    crosses: each pretraining seed's own mean difference, when the method has several."""
    plt = _plt()
    rows = list(comparisons)
    fig, ax = plt.subplots(figsize=(9.5, 1.3 + 0.38 * max(1, len(rows))))
    y = np.arange(len(rows))[::-1]
    for yi, c in zip(y, rows):
        m = c.get("mean_diff")
        if m is None:
            continue
        lo, hi = c.get("ci_low"), c.get("ci_high")
        xerr = None if lo is None or hi is None else [[m - lo], [hi - m]]
        ax.errorbar([m], [yi], xerr=xerr, fmt="s", color="C0" if not c.get("mismatch") else "C3", capsize=3,
                    markersize=5)
        per_seed = [e["mean_diff"] for e in c.get("pretrain_mean_diffs") or [] if e.get("mean_diff") is not None]
        if len(per_seed) > 1:
            ax.plot(per_seed, [yi] * len(per_seed), "x", color="0.45", markersize=4, zorder=3)
        ci = "" if lo is None else f" [{lo:+.3f}, {hi:+.3f}]"
        p = "" if c.get("p_value") is None else f"  p={c['p_value']:.2g}"
        ax.annotate(f"{m:+.3f}{ci}{p}  n={c.get('n_pairs')}", xy=(1.01, yi), xycoords=("axes fraction", "data"),
                    va="center", fontsize=7, family="monospace")
    ax.axvline(0.0, color="k", linestyle="--", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels([_comparison_label(c) for c in rows], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    metric = (rows[0].get("metric", "balanced_accuracy") if rows else "balanced_accuracy").replace("_", " ")
    seeds = any(len(c.get("pretrain_mean_diffs") or []) > 1 for c in rows)
    ax.set_xlabel(f"difference in {metric} (method − reference), paired by split; bars: 95% t-interval"
                  + ("; x: each pretraining seed" if seeds else ""))
    ax.set_title("Paired differences (right: mean [95% CI], sign-flip p, pairs)", fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, path)


def plot_retrieval(zeroshot: Sequence[ZeroshotResult], path: PathLike,
                   title: str = "Zero-shot retrieval on held-out subjects") -> Path:
    """Bar chart of IMU→video R@1/R@3/R@10/MRR per method, chance as a dashed marker; with several
    pretraining seeds of a method, the mean with a min–max bar."""
    plt = _plt()
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
    return _save(fig, path, tight=False)
