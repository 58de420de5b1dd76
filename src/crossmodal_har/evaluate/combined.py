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
from crossmodal_har.evaluate.fewshot import shots_key
from crossmodal_har.evaluate.plots import plot_confusion, plot_shots_curve
from crossmodal_har.evaluate.report import json_safe, merge_results
from crossmodal_har.io import atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
METHOD_ORDER = ("siglip", "clip", "imu2clip", "imu-mae", "random", "supervised")
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
            zeroshot.append(data)
        else:
            raise DataError(f, "neither an evaluation results.json (no 'summary') nor a zero-shot one (no 'retrieval')")
    return evals, zeroshot


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
    lines: List[str] = []
    for metric, title in TABLE3_METRICS:
        cells: "OrderedDict[tuple, Dict[Any, str]]" = OrderedDict()
        for r in sorted(summary, key=lambda r: (_method_key(r.get("method", "")), r["protocol"])):
            cells.setdefault((r.get("method", ""), r["protocol"]), {})[r["shots"]] = _pm(
                r.get(f"{metric}_mean"), r.get(f"{metric}_std"))
        lines += [f"### {title} (mean ± std over seeds, test subjects)", "",
                  "| Method | Protocol | " + " | ".join(f"{s} shots" for s in shots) + " |",
                  "|---|---|" + "---|" * len(shots)]
        for (m, p), c in cells.items():
            lines.append(f"| {m} | {p} | " + " | ".join(c.get(s, "–") for s in shots) + " |")
        lines.append("")
    return lines


def render_table4(zeroshot: Sequence[Dict[str, Any]]) -> List[str]:
    """Zero-shot table: retrieval both ways and nearest-video-class classification, chance beside."""
    if not zeroshot:
        return []
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


def plot_retrieval(zeroshot: Sequence[Dict[str, Any]], path: Path) -> Path:
    """Bar chart of IMU→video R@1/R@3/R@10/MRR per method, chance as a dashed marker."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = sorted(zeroshot, key=lambda z: _method_key(z.get("method", "")))
    keys = ("R@1", "R@3", "R@10", "MRR")
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(keys))
    for i, z in enumerate(rows):
        m = z["retrieval"]["imu_to_video"]
        ax.bar(x + i * width, [m[k] for k in keys], width, label=z["method"])
    ref = rows[0]["retrieval"]["imu_to_video"]
    for j, k in enumerate(keys):
        c = ref.get(f"chance_{k}")
        if c is not None:
            ax.hlines(c, j - 0.05, j + 0.8, colors="k", linestyles="dashed", linewidth=1)
    ax.set_xticks(x + 0.4 - width / 2)
    ax.set_xticklabels(keys)
    top = max([z["retrieval"]["imu_to_video"][k] for z in rows for k in keys] + [ref.get("chance_R@10") or 0])
    ax.set_ylim(0, min(1.0, max(0.05, 1.25 * top)))
    ax.set_ylabel("IMU → video retrieval")
    ax.set_title("Zero-shot retrieval on held-out subjects (dashed: chance)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def build_report(paths: Sequence[PathLike], out_dir: PathLike, *, title: str = "crossmodal-har report",
                 preamble: Sequence[str] = (), caveats: Sequence[str] = ()) -> Dict[str, Any]:
    """Merge result files into ``out_dir``: results.json, report.md and PNG plots. Returns the merged dict."""
    if not paths:
        raise UserError("report: give at least one results directory")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evals, zeroshot = classify_inputs(paths)
    merged: Dict[str, Any] = merge_results(evals) if evals else {
        "format_version": 1, "kind": "merged-evaluation", "complete": True, "sources": [], "summary": [], "runs": []}
    merged["zeroshot"] = [{k: v for k, v in z.items() if not k.startswith("_")} | {"path": z["_path"]}
                          for z in zeroshot]
    summary = merged["summary"]
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
    if zeroshot:
        plot_retrieval(zeroshot, out / "retrieval.png")
        images.append("retrieval.png")

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {title}", "", f"Generated {now} from {len(evals)} evaluation and {len(zeroshot)} zero-shot "
             "result file(s).", ""]
    lines += list(preamble)
    if caveats:
        lines += ["## What these numbers mean — and what they cannot mean", ""] + [f"- {c}" for c in caveats] + [""]
    if zeroshot:
        lines += ["## Zero-shot on held-out subjects (Table 4 shape)", ""] + render_table4(zeroshot)
    if summary:
        ds = merged.get("dataset") or {}
        lines += ["## Few-shot evaluation (Table 3 shape)", "",
                  f"Dataset `{ds.get('spec', '?')}`: {ds.get('n_windows', '?')} windows, {ds.get('n_subjects', '?')} "
                  "subjects; subject-disjoint train/validation/test; k labelled windows per class drawn from the "
                  "training subjects; model selection on validation subjects; test subjects scored once per run.", ""]
        lines += render_table3(summary)
        lines += ["### Sources", ""]
        for s in merged.get("sources", []):
            enc = s.get("encoder") or {}
            lines.append(f"- **{s['method']}**: `{s['path']}` (encoder `{enc.get('encoder', '?')}`, architecture "
                         f"`{enc.get('model', '?')}`)")
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
