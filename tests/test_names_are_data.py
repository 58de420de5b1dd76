"""Names are data (issue 23, item 4): any label, class, method or file name reaches plots, Markdown
tables, CSV and HTML as text: math text off in plots, ``|`` and line breaks escaped in Markdown,
non-UTF-8 file names shown with replacement characters, line breaks refused in class names."""

from __future__ import annotations

import json
import os
import re
import sys

import numpy as np
import pandas as pd
import pytest

from helpers.bundles import UNITS, make_bundle, make_recording

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError
from crossmodal_har.evaluate.plots import plot_confusion
from crossmodal_har.evaluate.tables import render_recall_table, render_results_table
from crossmodal_har.infer.timeline import plot_timeline
from crossmodal_har.signals.generic import read_labels, read_meta
from crossmodal_har.signals.text import md_cell, shown
from crossmodal_har.signals.units import Units

HOSTILE = ["$\\frac{$", "a|b", "x$^{2}$", "_hidden", "c\\|d"]


def test_plots_show_names_as_text(tmp_path):
    """The plotting library parsed ``$\\frac{$`` as math text and raised (a traceback after the
    predictions were written)."""
    pred = tmp_path / "p.csv"
    pd.DataFrame({"start": np.arange(20.0), "end": np.arange(20.0) + 2, "status": ["ok"] * 20,
                  "label": [HOSTILE[i % len(HOSTILE)] for i in range(20)]}).to_csv(pred, index=False)
    assert plot_timeline(pred, tmp_path / "t.png", HOSTILE).stat().st_size > 0
    k = len(HOSTILE)
    summary = [{"method": "m$\\frac{$", "protocol": "p", "shots": 5, "confusion_matrix": np.eye(k).tolist()}]
    assert plot_confusion(summary, HOSTILE, tmp_path / "c.png").stat().st_size > 0


def _cells(line: str):
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def test_markdown_tables_escape_pipes_and_line_breaks():
    summary = [{"method": "m|x", "protocol": "linear\nprobe", "shots": 5, "n_seeds": 2,
                "balanced_accuracy_mean": 0.5, "balanced_accuracy_std": 0.1, "macro_f1_mean": 0.4,
                "accuracy_mean": 0.6, "per_class_recall_mean": [0.1, 0.2, 0.3]}]
    names = ["sit|stand", "walk\nfast", "lie"]
    lines = [ln for ln in render_recall_table(summary, names) if ln.startswith("|")]
    header, _, row = lines
    assert len(_cells(header)) == len(_cells(row)) == 6  # the recall columns do not shift
    assert "sit\\|stand" in header and "walk\\nfast" in header
    assert _cells(row)[3:] == [" 0.10 ", " 0.20 ", " 0.30 "]
    for ln in [ln for ln in render_results_table(summary) if ln.startswith("|")][2:]:
        assert len(_cells(ln)) == 10 and "\n" not in ln
    assert md_cell("a\\|b") == "a\\\\\\|b"  # a backslash before the pipe cannot unescape it


def test_line_breaks_in_class_names_are_refused_at_training(tmp_path):
    """A quoted label with a line break was silently changed (the line break dropped) at training."""
    lab = tmp_path / "labels.csv"
    lab.write_text('recording,start,end,label\nr1,0,10,walk\nr1,10,20,"sit\nstand"\nr1,20,30,lie\n')
    with pytest.raises(DataError) as exc:
        read_labels(lab, ["r1"], Units())
    assert str(exc.value).startswith(f"{lab}:3: label 'sit\\nstand' holds a line break")
    # rows after a quoted multi-line cell keep their own line numbers
    lab.write_text('recording,start,end,label\nr1,0,10,"a,b"\nr1,10,20,x\nr1,5,8,y\n')
    with pytest.raises(DataError, match=r"labels.csv:4: segment of 'r1' overlaps the one on line 2"):
        read_labels(lab, ["r1"], Units())
    (tmp_path / "dataset.json").write_text(json.dumps({"acc_unit": "g", "gyro_unit": "rad/s", "time_unit": "s",
                                                       "classes": ["a", "b\u2028c"]}))
    with pytest.raises(DataError, match="dataset.json: classes: .* holds a line break"):
        read_meta(tmp_path)


@pytest.mark.skipif(sys.platform != "linux", reason="non-UTF-8 file names need a byte file system")
def test_non_utf8_file_names_are_shown_with_replacement_characters(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "bundle")
    rec = make_recording(tmp_path / "r.csv", seconds=30)
    bad = os.fsdecode(os.fsencode(str(tmp_path)) + b"/rec\xff.csv")
    os.rename(rec, bad)
    rep = tmp_path / "rep"
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/out\xfe.csv")
    assert main(["predict", "--model", str(bundle), "--input", bad, "--out", out, *UNITS,
                 "--start", "2024-05-01T10:00Z", "--report", str(rep), "--timeline", str(tmp_path / "t.png")]) == 0
    page = (rep / "report.html").read_text(encoding="utf-8")
    assert "rec\ufffd.csv" in page
    assert shown(bad).endswith("rec\ufffd.csv") and shown("ok") == "ok" and shown("\udcff") == "\ufffd"
