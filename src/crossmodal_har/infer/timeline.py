"""Draw activity over time from a predictions CSV, aggregated so days-long recordings stay legible.

Time is cut into at most ``max_bins`` equal bins; each bin is a stacked bar of the share of its
time per activity, then non-wear (the detector's and the device's idle sleep, named and coloured as in
report.html) and unclassified windows (gaps, missing values, failed quality checks). With the
recording's :class:`~crossmodal_har.signals.clock.TimeBase` the x axis is local clock time (weekday
and hh:mm), else hours since the start. The CSV is read in chunks (two passes), so memory does not grow
with the recording.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from crossmodal_har.infer.report_page import NONWEAR_NAME, OTHER_NAME, colours
from crossmodal_har.io import atomic_write
from crossmodal_har.signals.clock import TimeBase
from crossmodal_har.signals.status import STATUS_OK, is_nonwear
from crossmodal_har.signals.text import shown

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def aggregate(pred_csv: PathLike, class_names: List[str], max_bins: int = 600,
              chunk_rows: int = 200_000):
    """Seconds per (bin, class), then non-wear, then unclassified windows.

    Returns:
        ``(edges [B+1] s, seconds [B, C+2])``.
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
        return np.array([0.0, 1.0]), np.zeros((1, len(class_names) + 2))
    nb = int(max(1, min(max_bins, n_rows)))
    edges = np.linspace(lo, hi, nb + 1)
    sec = np.zeros((nb, len(class_names) + 2))
    index = {c: i for i, c in enumerate(class_names)}
    for df in pd.read_csv(pred_csv, usecols=usecols, dtype=dtypes, chunksize=chunk_rows, keep_default_na=False):
        s, e = df["start"].to_numpy(), df["end"].to_numpy()
        C = len(class_names)
        status = df["status"].to_numpy().astype(str)
        cls = np.array([index.get(lab, C + 1) if st == STATUS_OK else C + 1
                        for st, lab in zip(status, df["label"])], dtype=np.int64)
        cls[is_nonwear(status)] = C
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
                  max_bins: int = 600, title: Optional[str] = None, timebase: Optional[TimeBase] = None,
                  recording: Optional[PathLike] = None) -> Path:
    """Write a PNG of activity over time (stacked shares per time bin), titled with the ``recording``'s name."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # names are data: "$" in a class name is text
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    edges, sec = aggregate(pred_csv, class_names, max_bins=max_bins)
    total = sec.sum(axis=1, keepdims=True)
    share = np.divide(sec, total, out=np.zeros_like(sec), where=total > 0)
    clock = timebase is not None and timebase.absolute
    if clock:  # matplotlib dates: days since 1970-01-01, here on the local wall clock
        x_edges = timebase.local_s(edges) / 86400.0
    else:
        x_edges = (edges - edges[0]) / 3600.0
    x, width = x_edges[:-1], np.diff(x_edges)
    fig, ax = plt.subplots(figsize=(12, 3.4))
    cols = colours(class_names)
    bottom = np.zeros(len(x))
    for i, c in enumerate(list(class_names) + [NONWEAR_NAME, OTHER_NAME]):
        ax.bar(x, share[:, i], width=width, bottom=bottom, align="edge", color=cols[i], label=shown(c), linewidth=0)
        bottom += share[:, i]
    ax.set_xlim(x_edges[0], x_edges[-1] if x_edges[-1] > x_edges[0] else x_edges[0] + 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of time")
    if clock:
        span_days = x_edges[-1] - x_edges[0]
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=12))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %H:%M" if span_days > 0.8 else "%H:%M"))
        ax.set_xlabel(f"local time ({timebase.tz})")
    else:
        ax.set_xlabel("hours since the start (no absolute start time: pass --start)")
    ax.set_title(shown(title or f"Activity over time: {Path(recording or pred_csv).name}"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    out_png = Path(out_png)
    atomic_write(out_png, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return out_png
