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


def plot_shots_curve(summary: Sequence[Dict[str, Any]], path: PathLike, metric: str = "balanced_accuracy") -> Path:
    """``metric`` mean vs shots per class, one line per method/protocol, shaded 95 % CI band.

    Shots are placed at equally spaced positions (1, 5, 10, …, all) so ``all`` fits on the axis.
    """
    plt = _plt()
    shots = sorted({r["shots"] for r in summary}, key=shots_key)
    pos = {s: i for i, s in enumerate(shots)}
    lines: Dict[str, List[Dict[str, Any]]] = {}
    methods = {r.get("method", "") for r in summary}
    for r in summary:
        label = r["protocol"] if len(methods) <= 1 else f"{r.get('method', '')} / {r['protocol']}"
        lines.setdefault(label, []).append(r)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, rows in lines.items():
        rows = sorted(rows, key=lambda r: shots_key(r["shots"]))
        x = np.array([pos[r["shots"]] for r in rows], dtype=float)
        y = np.array([np.nan if r.get(f"{metric}_mean") is None else r[f"{metric}_mean"] for r in rows])
        lo = np.array([np.nan if r.get(f"{metric}_ci95_low") is None else r[f"{metric}_ci95_low"] for r in rows])
        hi = np.array([np.nan if r.get(f"{metric}_ci95_high") is None else r[f"{metric}_ci95_high"] for r in rows])
        (ln,) = ax.plot(x, y, marker="o", label=label)
        if np.isfinite(lo).any():
            ax.fill_between(x, np.clip(lo, 0, 1), np.clip(hi, 0, 1), color=ln.get_color(), alpha=0.18, linewidth=0)
    ax.set_xticks(range(len(shots)))
    ax.set_xticklabels([str(s) for s in shots])
    ax.set_xlabel("labelled windows per class (shots)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_ylim(0, 1.0)
    ax.grid(alpha=0.3)
    n = sorted({r["n_seeds"] for r in summary})
    ax.set_title(f"{metric.replace('_', ' ')} on test subjects (mean, 95% CI over {'/'.join(map(str, n))} seeds)",
                 fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_confusion(summary: Sequence[Dict[str, Any]], class_names: Sequence[str], path: PathLike,
                   max_panels: int = 12) -> Path:
    """Row-normalised confusion matrices (summed over seeds) of each method/protocol at its
    largest shots setting."""
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
    size = 2.2 + 0.35 * len(class_names)
    fig, axes = plt.subplots(rows_n, cols, figsize=(size * cols, size * rows_n), squeeze=False)
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
                        ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if norm[i, j] > 0.6 else "black")
        title = f"{r['protocol']}, shots={r['shots']}"
        if r.get("method"):
            title = f"{r['method']}: {title}"
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_comparisons(comparisons: Sequence[Dict[str, Any]], path: PathLike) -> Path:
    """Paired differences against the reference with their 95 % CIs (one row per method × protocol ×
    shots; the dashed line is no difference); grey crosses: each pretraining seed's own mean
    difference, when the method has several."""
    plt = _plt()
    rows = list(comparisons)
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.32 * max(1, len(rows))))
    y = np.arange(len(rows))[::-1]
    for yi, c in zip(y, rows):
        m = c.get("mean_diff")
        if m is None:
            continue
        lo, hi = c.get("ci_low"), c.get("ci_high")
        xerr = None if lo is None or hi is None else [[m - lo], [hi - m]]
        ax.errorbar([m], [yi], xerr=xerr, fmt="o", color="C0" if not c.get("mismatch") else "C3", capsize=3,
                    markersize=4)
        per_seed = [e["mean_diff"] for e in c.get("pretrain_mean_diffs") or [] if e.get("mean_diff") is not None]
        if len(per_seed) > 1:
            ax.plot(per_seed, [yi] * len(per_seed), "x", color="0.45", markersize=4, zorder=3)
    ax.axvline(0.0, color="k", linestyle="--", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{c['method']} / {c['protocol']} / {c['shots']}" for c in rows], fontsize=7)
    ref = rows[0].get("reference", "?") if rows else "?"
    metric = (rows[0].get("metric", "balanced_accuracy") if rows else "balanced_accuracy").replace("_", " ")
    seeds = any(len(c.get("pretrain_mean_diffs") or []) > 1 for c in rows)
    ax.set_xlabel(f"{metric}: method − {ref} (paired, 95% CI" + ("; x: each pretraining seed)" if seeds else ")"))
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
