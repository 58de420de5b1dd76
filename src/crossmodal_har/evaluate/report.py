"""Summaries, ``results.json``, ``report.md`` and merging of several evaluations.

``summarize_runs(runs)`` turns per-run test metrics into one summary row per method × protocol ×
shots (mean, std and 95 % t-interval over seeds). ``write_outputs`` writes one evaluation's files;
``merge_results(paths)`` re-summarises any set of ``results.json`` files, from which
``evaluate.combined.build_report`` (``crossmodal-har report``) writes the merged tables and plots.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from crossmodal_har.errors import DataError
from crossmodal_har.evaluate.fewshot import shots_key
from crossmodal_har.evaluate.metrics import summarize
from crossmodal_har.evaluate.plots import plot_confusion, plot_shots_curve
from crossmodal_har.io import atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
METRIC_TITLES = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced acc.", "macro_f1": "Macro-F1"}
PROTOCOL_ORDER = ("supervised", "linear-probe", "knn", "finetune")
PathLike = Union[str, "os.PathLike[str]"]


def _group_key(run: Dict[str, Any]) -> tuple:
    return (run.get("method", ""), run["protocol"], run["shots"])


def _order_key(key: tuple, method_rank: Dict[str, int]) -> tuple:
    method, protocol, shots = key
    p = PROTOCOL_ORDER.index(protocol) if protocol in PROTOCOL_ORDER else len(PROTOCOL_ORDER)
    return (method_rank[method], p, protocol, shots_key(shots))


def summarize_runs(runs: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One summary row per (method, protocol, shots), ordered by method (first appearance), protocol,
    shots.

    Keys: ``method, protocol, shots, n_seeds``, and for each metric M in accuracy,
    balanced_accuracy, macro_f1: ``M_mean, M_std, M_ci95_low, M_ci95_high`` (the interval is a
    two-sided 95 % Student-t interval of the mean over seeds; ``None`` with one seed). Also
    ``per_class_recall_mean`` (list; ``None`` for a class absent from the test subjects) and
    ``confusion_matrix`` (counts summed over seeds).
    """
    groups: "OrderedDict[tuple, List[Dict[str, Any]]]" = OrderedDict()
    method_rank: Dict[str, int] = {}
    for r in runs:
        groups.setdefault(_group_key(r), []).append(r)
        method_rank.setdefault(r.get("method", ""), len(method_rank))
    rows = []
    for key in sorted(groups, key=lambda k: _order_key(k, method_rank)):
        rs = groups[key]
        row: Dict[str, Any] = {"method": key[0], "protocol": key[1], "shots": key[2], "n_seeds": len(rs)}
        for m in METRICS:
            s = summarize([r["test"][m] for r in rs])
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
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------- writing
def write_outputs(results: Dict[str, Any], out_dir: PathLike, *, plots: bool = True) -> List[Path]:
    """Write ``results.json``, ``config.json`` (when the results have a config), ``report.md`` (and the
    PNGs when ``plots``) for one evaluation or for merged results (:func:`merge_results`: the report
    then describes each source). Returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [atomic_write_json(out_dir / "results.json", json_safe(results))]
    if "config" in results:
        written.append(atomic_write_json(out_dir / "config.json", results["config"]))
    images: List[str] = []
    if plots and results.get("summary"):
        images = _write_plots(results, out_dir)
    sources = [{"method": s["method"], "dataset": s.get("dataset"), "encoder": s.get("encoder"),
                "split": s.get("split"), "seeds": s.get("seeds")} for s in results.get("sources", [])] or [results]
    written.append(atomic_write_text(out_dir / "report.md", render_markdown(sources, results["summary"], images)))
    return written + [out_dir / i for i in images]


def _write_plots(results: Dict[str, Any], out_dir: Path) -> List[str]:
    images = []
    plot_shots_curve(results["summary"], out_dir / "shots_curve.png")
    images.append("shots_curve.png")
    class_names = _class_names([results])
    if class_names and any("confusion_matrix" in r for r in results["summary"]):
        plot_confusion(results["summary"], class_names, out_dir / "confusion_matrix.png")
        images.append("confusion_matrix.png")
    return images


def json_safe(obj: Any) -> Any:
    """NaN/inf become null so results.json is strict JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    return obj


def _class_names(sources: Sequence[Dict[str, Any]]) -> List[str]:
    for s in sources:
        names = (s.get("dataset") or {}).get("class_names")
        if names:
            return list(names)
    return []


def _fmt(mean: Optional[float], std: Optional[float]) -> str:
    if mean is None:
        return "–"
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


def _fmt_ci(lo: Optional[float], hi: Optional[float]) -> str:
    return "–" if lo is None or hi is None else f"[{lo:.3f}, {hi:.3f}]"


def render_markdown(sources: Sequence[Dict[str, Any]], summary: Sequence[Dict[str, Any]],
                    images: Sequence[str] = ()) -> str:
    """The report: summary table (mean ± std over seeds), balanced accuracy by shots, per-class
    recall, what the data excluded, and the plots."""
    lines: List[str] = ["# Few-shot evaluation report", ""]
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"Generated {now}.")
    lines.append("")
    for s in sources:
        ds = s.get("dataset") or {}
        enc = s.get("encoder") or {}
        split = s.get("split") or {}
        subj = split.get("subjects") or {}
        lines.append(f"- **{s.get('method', '?')}**: encoder `{enc.get('encoder', '?')}` (architecture "
                     f"`{enc.get('model', '?')}`, {'pretrained' if enc.get('pretrained') else 'random initialisation'}); "
                     f"dataset `{ds.get('spec', '?')}` ({ds.get('n_windows', '?')} windows, "
                     f"{ds.get('n_subjects', '?')} subjects, {len(ds.get('class_names') or [])} classes); "
                     f"subject-disjoint split {len(subj.get('train', []))}/{len(subj.get('val', []))}/"
                     f"{len(subj.get('test', []))} subjects (train/val/test); seeds {s.get('seeds', '?')}"
                     + ("" if s.get("complete", True) else "; **incomplete run**"))
        pre = enc.get("preprocess") or {}
        if pre:
            lines.append(f"  - preprocessing: {pre.get('rate_hz')} Hz, window {pre.get('window_s')} s, stride "
                         f"{pre.get('stride_s')} s, normalisation `{pre.get('normalization')}`, median kernel "
                         f"{pre.get('median_kernel')}")
    lines += ["", "Test subjects are never seen in training or model selection (early stopping uses the "
              "validation subjects). Mean ± sample std over seeds; each seed is a new few-shot draw and a new "
              "initialisation, so the spread does not include the variation between test-subject groups.", ""]

    if summary:
        lines += ["## Results (test subjects)", "",
                  "| Method | Protocol | Shots/class | Seeds | Balanced acc. | Macro-F1 | Accuracy | Balanced acc. 95% CI |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in summary:
            lines.append(
                f"| {r.get('method', '')} | {r['protocol']} | {r['shots']} | {r['n_seeds']} | "
                f"{_fmt(r['balanced_accuracy_mean'], r['balanced_accuracy_std'])} | "
                f"{_fmt(r['macro_f1_mean'], r.get('macro_f1_std'))} | {_fmt(r['accuracy_mean'], r.get('accuracy_std'))} | "
                f"{_fmt_ci(r.get('balanced_accuracy_ci95_low'), r.get('balanced_accuracy_ci95_high'))} |")
        lines.append("")
        shots_all = sorted({r["shots"] for r in summary}, key=shots_key)
        if len(shots_all) > 1:
            lines += ["## Balanced accuracy by shots per class", "",
                      "| Method | Protocol | " + " | ".join(str(s) for s in shots_all) + " |",
                      "|---|---|" + "---|" * len(shots_all)]
            cells: "OrderedDict[tuple, Dict[Any, str]]" = OrderedDict()
            for r in summary:
                cells.setdefault((r.get("method", ""), r["protocol"]), {})[r["shots"]] = _fmt(
                    r["balanced_accuracy_mean"], r["balanced_accuracy_std"])
            for (m, p), c in cells.items():
                lines.append(f"| {m} | {p} | " + " | ".join(c.get(s, "–") for s in shots_all) + " |")
            lines.append("")
        names = _class_names(sources)
        rec_rows = [r for r in summary if r.get("per_class_recall_mean")]
        if names and rec_rows:
            lines += ["## Per-class recall (mean over seeds)", "",
                      "| Method | Protocol | Shots | " + " | ".join(names) + " |",
                      "|---|---|---|" + "---|" * len(names)]
            for r in rec_rows:
                vals = ["–" if v is None else f"{v:.2f}" for v in r["per_class_recall_mean"]]
                lines.append(f"| {r.get('method', '')} | {r['protocol']} | {r['shots']} | " + " | ".join(vals) + " |")
            lines.append("")

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


# ------------------------------------------------------------------------------------------- merging
def load_results(path: PathLike) -> Dict[str, Any]:
    """Read one ``results.json`` (a file, or a directory containing one) and check its shape."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    data = read_json(p)
    if not isinstance(data, dict) or not isinstance(data.get("summary"), list):
        raise DataError(p, "not an evaluation results.json (no 'summary' list)")
    data.setdefault("runs", [])
    data["_path"] = os.fspath(p)
    return data


def merge_results(paths: Iterable[PathLike]) -> Dict[str, Any]:
    """Merge several evaluations into one results dict with the same schema.

    Runs are re-summarised together. When two files use the same method label for different
    encoders or datasets, the later label gets the file's directory name appended, so rows never
    silently mix.
    """
    sources = []
    runs: List[Dict[str, Any]] = []
    summary_only: List[Dict[str, Any]] = []
    seen: Dict[str, str] = {}
    for path in paths:
        res = load_results(path)
        method = res.get("method") or (res.get("summary") or [{}])[0].get("method", "") or Path(res["_path"]).parent.name
        ident = f"{(res.get('encoder') or {}).get('encoder')}|{(res.get('dataset') or {}).get('spec')}"
        if method in seen and seen[method] != ident:
            method = f"{method} ({Path(res['_path']).parent.name})"
        seen.setdefault(method, ident)
        res["method"] = method
        sources.append(res)
        if res["runs"]:
            runs += [{**r, "method": method} for r in res["runs"]]
        else:  # a summary without runs (hand-made or trimmed): keep its rows as they are
            summary_only += [{**r, "method": method} for r in res["summary"]]
    summary = summarize_runs(runs) + summary_only
    return {
        "format_version": 1,
        "kind": "merged-evaluation",
        "complete": all(s.get("complete", True) for s in sources),
        "sources": [{"path": s["_path"], "method": s["method"], "dataset": s.get("dataset"),
                     "encoder": s.get("encoder"), "split": s.get("split"), "seeds": s.get("seeds")} for s in sources],
        "dataset": sources[0].get("dataset") if sources else {},
        "summary": summary,
        "runs": runs,
    }
