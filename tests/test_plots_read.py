"""Plots people read (issue 21 item 2): clock time and the recording's name on the timeline, non-wear named
as in report.html; shots curves with categorical x ('all' apart, not joined), a chance line and error bars
that say what they are; confusion matrices with counts and a caption on the pooling; a forest plot of the
comparisons. Each figure is caught as it is saved and its parts are read back."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from crossmodal_har.evaluate.comparisons import compute_comparisons
from crossmodal_har.evaluate.plots import plot_comparisons, plot_confusion, plot_shots_curve
from crossmodal_har.infer.timeline import aggregate, plot_timeline
from crossmodal_har.signals.clock import TimeBase

matplotlib.use("Agg")


@pytest.fixture
def figures(monkeypatch):
    caught = []
    real = Figure.savefig

    def savefig(self, *a, **kw):
        caught.append(self)
        return real(self, *a, **kw)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return caught


def predictions(path, hours=30.0, step=60.0):
    start = np.arange(0, hours * 3600, step)
    status = np.where((start >= 10 * 3600) & (start < 12 * 3600), "nonwear", "ok")
    label = np.where(status == "ok", np.where((start // 3600) % 2 == 0, "sit", "walk"), "")
    status[5] = "gap"
    pd.DataFrame({"start": start, "end": start + step, "status": status, "label": label}).to_csv(path, index=False)
    return path


def test_timeline_clock_time_recording_name_and_nonwear(tmp_path, figures):
    csv = predictions(tmp_path / "p.csv")
    edges, sec = aggregate(csv, ["sit", "walk"])
    assert sec[:, 2].sum() == pytest.approx(2 * 3600) and sec[:, 3].sum() == pytest.approx(60)  # non-wear, gap
    tb = TimeBase(origin_s=1_780_000_000.0, tz="Europe/Berlin", source="test")  # Thu 2026-05-28 22:26:40 local
    plot_timeline(csv, tmp_path / "t.png", ["sit", "walk"], recording="/data/wrist.cwa", timebase=tb)
    ax = figures[-1].axes[0]
    fig_text = [t.get_text() for t in ax.get_xticklabels()]
    assert ax.get_title() == "Activity over time: wrist.cwa"
    assert ax.get_xlabel() == "local time (Europe/Berlin)"
    assert fig_text and all(t[:3] in ("Thu", "Fri", "Sat") and t[-3] == ":" for t in fig_text), fig_text
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["sit", "walk", "non-wear", "unclassified window"]
    plot_timeline(csv, tmp_path / "u.png", ["sit", "walk"])  # no absolute time: hours since the start
    assert "hours since the start" in figures[-1].axes[0].get_xlabel()


def summary_rows():
    rows = []
    for proto, base in (("supervised", 0.5), ("linear-probe", 0.6)):
        for shots, add in ((1, 0.0), (5, 0.1), (10, 0.15), ("all", 0.2)):
            m = base + add
            rows.append({"method": "m", "protocol": proto, "shots": shots, "n_seeds": 3, "balanced_accuracy_mean": m,
                         "balanced_accuracy_ci95_low": m - 0.05, "balanced_accuracy_ci95_high": m + 0.05,
                         "per_class_recall_mean": [m] * 4, "confusion_matrix": [[7, 2, 1, 0], [1, 8, 1, 0],
                                                                                  [0, 0, 9, 1], [2, 0, 0, 8]]})
    return rows


def test_shots_curve_categorical_all_apart_chance_and_error_bars(tmp_path, figures):
    plot_shots_curve(summary_rows(), tmp_path / "s.png", title="Few-shot evaluation on hapt")
    ax = figures[-1].axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    ticks = list(ax.get_xticks())
    assert labels == ["1", "5", "10", "all"]
    assert ticks[1] - ticks[0] == ticks[2] - ticks[1] and ticks[3] - ticks[2] > 1.4 * (ticks[1] - ticks[0])
    joined = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert joined and all(max(ln.get_xdata()) < ticks[3] - 0.3 for ln in joined)  # no line runs to "all"
    chance = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert chance and chance[0].get_ydata()[0] == pytest.approx(0.25)
    assert "chance (1/4 classes)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "bars: 95% t-interval of the mean" in ax.get_title() and "hapt" in ax.get_title()
    assert ax.collections  # the error bars


def test_confusion_counts_and_pooling_caption(tmp_path, figures):
    plot_confusion(summary_rows(), ["a", "b", "c", "d"], tmp_path / "c.png")
    fig = figures[-1]
    assert "summed over seeds" in fig._suptitle.get_text()
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert "7\n70%" in cells and "9\n90%" in cells
    assert "(3 seeds)" in fig.axes[0].get_title()


def test_comparisons_forest_plot(tmp_path, figures):
    runs = []
    for method, off in (("random", 0.0), ("siglip", 0.08)):
        for s in range(4):
            runs.append({"method": method, "protocol": "linear-probe", "shots": 5, "seed": s, "fold": None,
                         "test_subjects": [f"p{s}"], "test": {"balanced_accuracy": 0.5 + off + 0.01 * s * (off > 0)}})
    comps, _ = compute_comparisons(runs)
    plot_comparisons(comps, tmp_path / "f.png")
    ax = figures[-1].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["siglip, linear-probe, 5 shots  vs  random"]
    zero = [ln for ln in ax.get_lines() if list(ln.get_xdata()) == [0.0, 0.0]]
    assert zero  # the line of no difference
    note = [t.get_text() for t in ax.texts]
    assert note and note[0].startswith(f"{comps[0]['mean_diff']:+.3f} [") and "n=4" in note[0]
