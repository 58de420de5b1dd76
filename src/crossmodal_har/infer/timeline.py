"""Draw activity over time from a predictions CSV, aggregated so days-long recordings stay legible.

Time is cut into at most ``max_bins`` equal bins; each bin is a stacked bar of the share of its
time per activity, with the share without a label (gaps, missing values, failed quality checks)
in grey. The CSV is read in chunks (two passes), so memory does not grow with the recording.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from crossmodal_har.io import atomic_write
from crossmodal_har.signals.status import STATUS_OK
from crossmodal_har.signals.text import shown

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def aggregate(pred_csv: PathLike, class_names: List[str], max_bins: int = 600,
              chunk_rows: int = 200_000):
    """Seconds per (bin, class) plus one last column for unlabelled time.

    Returns:
        ``(edges [B+1] s, seconds [B, C+1])``.
    """
    import pandas as pd

    usecols = ["start", "end", "status", "label"]
    dtypes = {"start": np.float64, "end": np.float64, "status": str, "label": str}
    lo, hi, n_rows = np.inf, -np.inf, 0
    for df in pd.read_csv(pred_csv, usecols=usecols, dtype=dtypes, chunksize=chunk_rows, keep_default_na=False):
        if len(df):
            lo, hi = min(lo, df["start"].min()), max(hi, df["end"].max())
            n_rows += len(df)
    if not np.isfinite(lo) or hi <= lo:
        return np.array([0.0, 1.0]), np.zeros((1, len(class_names) + 1))
    nb = int(max(1, min(max_bins, n_rows)))
    edges = np.linspace(lo, hi, nb + 1)
    sec = np.zeros((nb, len(class_names) + 1))
    index = {c: i for i, c in enumerate(class_names)}
    for df in pd.read_csv(pred_csv, usecols=usecols, dtype=dtypes, chunksize=chunk_rows, keep_default_na=False):
        s, e = df["start"].to_numpy(), df["end"].to_numpy()
        cls = np.array([index.get(lab, len(class_names)) if st == STATUS_OK else len(class_names)
                        for st, lab in zip(df["status"], df["label"])], dtype=np.int64)
        # each row stands for [start, min(next start, end)) (windows overlap by design), spread
        # over the bins it overlaps
        nxt = np.append(s[1:], e[-1]) if len(s) else s
        b_end = np.where(np.minimum(nxt, e) > s, np.minimum(nxt, e), e)
        first = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, nb - 1)
        last = np.clip(np.searchsorted(edges, b_end, side="left") - 1, 0, nb - 1)
        one = first >= last
        np.add.at(sec, (first[one], cls[one]), (b_end - s)[one])
        for i in np.flatnonzero(~one):
            j = np.arange(first[i], last[i] + 1)
            overlap = np.minimum(b_end[i], edges[j + 1]) - np.maximum(s[i], edges[j])
            np.add.at(sec, (j, np.full(len(j), cls[i])), np.clip(overlap, 0, None))
    return edges, sec


def plot_timeline(pred_csv: PathLike, out_png: PathLike, class_names: List[str],
                  max_bins: int = 600, title: Optional[str] = None) -> Path:
    """Write a PNG of activity over time (stacked shares per time bin)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # names are data: "$" in a class name is text
    import matplotlib.pyplot as plt

    edges, sec = aggregate(pred_csv, class_names, max_bins=max_bins)
    total = sec.sum(axis=1, keepdims=True)
    share = np.divide(sec, total, out=np.zeros_like(sec), where=total > 0)
    span = edges[-1] - edges[0]
    scale, unit = (3600.0, "h") if span > 3 * 3600 else ((60.0, "min") if span > 300 else (1.0, "s"))
    x = (edges[:-1] - edges[0]) / scale
    width = np.diff(edges) / scale
    fig, ax = plt.subplots(figsize=(12, 3.2))
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    bottom = np.zeros(len(x))
    for i, c in enumerate(class_names + ["no label"]):
        color = "0.8" if i == len(class_names) else cmap(i % cmap.N)
        ax.bar(x, share[:, i], width=width, bottom=bottom, align="edge", color=color, label=shown(c), linewidth=0)
        bottom += share[:, i]
    ax.set_xlim(0, span / scale if span > 0 else 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of time")
    ax.set_xlabel(f"time since start ({unit})")
    ax.set_title(shown(title or f"activity over time ({Path(pred_csv).name})"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    out_png = Path(out_png)
    atomic_write(out_png, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return out_png
