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

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.evaluate.comparisons import (choose_reference, compute_comparisons, render_comparisons,
                                                  run_units, unit_value)
from crossmodal_har.evaluate.fewshot import shots_key
from crossmodal_har.evaluate.metrics import summarize
from crossmodal_har.evaluate.plots import plot_comparisons, plot_confusion, plot_shots_curve
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

    Keys: ``method, protocol, shots, n_seeds`` (distinct seeds), ``n_runs``, ``unit`` and ``n_units``,
    and for each metric M in accuracy, balanced_accuracy, macro_f1: ``M_mean, M_std, M_ci95_low,
    M_ci95_high`` (a two-sided 95 % Student-t interval of the mean over units; ``None`` with one
    unit). The unit is the run (``seed``: one subject split and draw per seed) or, with folds, the
    ``fold`` (its runs' mean over seeds), so the interval is over groups of test people. Also
    ``per_class_recall_mean`` (list; ``None`` for a class absent from the test subjects) and
    ``confusion_matrix`` (counts summed over seeds).

    Runs of one method pretrained with several seeds (``pretrain_seed`` in the runs, set by
    :func:`merge_results`) are averaged inside each unit, so the mean and CI are over units of
    pretraining-seed means; the spread across pretraining seeds is added separately
    (:func:`pretrain_spread`).
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
    written.append(atomic_write_text(out_dir / "report.md", render_markdown(
        sources, results["summary"], images, results.get("comparisons") or (), results.get("reference"))))
    return written + [out_dir / i for i in images]


def _write_plots(results: Dict[str, Any], out_dir: Path) -> List[str]:
    images = []
    plot_shots_curve(results["summary"], out_dir / "shots_curve.png")
    images.append("shots_curve.png")
    class_names = _class_names([results])
    if class_names and any("confusion_matrix" in r for r in results["summary"]):
        plot_confusion(results["summary"], class_names, out_dir / "confusion_matrix.png")
        images.append("confusion_matrix.png")
    if results.get("comparisons"):
        plot_comparisons(results["comparisons"], out_dir / "comparisons.png")
        images.append("comparisons.png")
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


def split_text(split: Dict[str, Any]) -> str:
    """One line on how subjects were split (``split`` as in results.json, old or new form)."""
    scheme = split.get("scheme") or "fixed"
    splits = split.get("splits") or []
    subj = split.get("subjects") or ((splits[0].get("subjects") if splits else None) or {})
    sizes = f"{len(subj.get('train', []))}/{len(subj.get('val', []))}/{len(subj.get('test', []))} subjects (train/val/test)"
    if scheme == "fixed":
        return f"one fixed subject-disjoint split (`fixed`, split seed {split.get('seed', 0)}), {sizes}"
    if scheme == "per-seed":
        return (f"a new subject-disjoint split per seed (`per-seed`, split seeds derived from split seed "
                f"{split.get('seed', 0)} and the run seed), {sizes}")
    return f"grouped cross-validation over subjects (`{scheme}`, {len(splits)} fold x seed splits), first {sizes}"


SUBJECTS_ARE_RECORDINGS = ("**every subject id is a recording name** (no `subject` column in labels.csv?): each "
                           "recording counts as a person, so one person's recordings can be in train and test and "
                           "the split is not subject-disjoint")


def val_text(mode: Optional[str]) -> str:
    """The validation label budget in words (``val`` of results.json's split)."""
    if mode == "full":
        return "validation `full`: model selection on every window of the validation subjects"
    return ("validation `k-shot`: at k shots, model selection sees at most k labelled windows per class of the "
            "validation subjects (k·C training + k·C validation labels; kNN uses none; `all` shots use every "
            "validation window)")


def render_markdown(sources: Sequence[Dict[str, Any]], summary: Sequence[Dict[str, Any]],
                    images: Sequence[str] = (), comparisons: Sequence[Dict[str, Any]] = (),
                    reference: Optional[str] = None) -> str:
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
        lines.append(f"- **{s.get('method', '?')}**: encoder `{enc.get('encoder', '?')}` (architecture "
                     f"`{enc.get('model', '?')}`, {'pretrained' if enc.get('pretrained') else 'random initialisation'}); "
                     f"dataset `{ds.get('spec', '?')}` ({ds.get('n_windows', '?')} windows, "
                     f"{ds.get('n_subjects', '?')} subjects, {len(ds.get('class_names') or [])} classes); "
                     f"{split_text(split)}; seeds {s.get('seeds', '?')}"
                     + ("" if s.get("complete", True) else "; **incomplete run**"))
        lines.append(f"  - {val_text(split.get('val', 'full' if 'scheme' not in split else None))}")
        pre = enc.get("preprocess") or {}
        if pre:
            lines.append(f"  - preprocessing: {pre.get('rate_hz')} Hz, window {pre.get('window_s')} s, stride "
                         f"{pre.get('stride_s')} s, normalisation `{pre.get('normalization')}`, median kernel "
                         f"{pre.get('median_kernel')}")
    lines += ["", "Test subjects are never seen in training or model selection (early stopping uses the "
              "validation subjects). Mean ± sample std over units: a unit is a seed (with `per-seed` a new "
              "subject split, few-shot draw and initialisation; with `fixed` only a new draw and initialisation, "
              "so the spread then leaves out which people are tested) or, with folds, a fold (mean over its seeds).",
              ""]

    if summary:
        lines += ["## Results (test subjects)", "",
                  "| Method | Protocol | Shots/class | Seeds | Balanced acc. | Macro-F1 | Accuracy | Balanced acc. 95% CI "
                  "| Validation | Labels/run |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in summary:
            flag = " †" if r.get("mismatch") else ""
            labels = "–" if r.get("n_labels_mean") is None else f"{r['n_labels_mean']:.0f}"
            lines.append(
                f"| {r.get('method', '')}{flag} | {r['protocol']} | {r['shots']} | {r['n_seeds']} | "
                f"{_fmt(r['balanced_accuracy_mean'], r['balanced_accuracy_std'])} | "
                f"{_fmt(r['macro_f1_mean'], r.get('macro_f1_std'))} | {_fmt(r['accuracy_mean'], r.get('accuracy_std'))} | "
                f"{_fmt_ci(r.get('balanced_accuracy_ci95_low'), r.get('balanced_accuracy_ci95_high'))} | "
                f"{r.get('val_mode', '–')} | {labels} |")
        if any(r.get("mismatch") for r in summary):
            lines += ["", "† differs from the reference in: " + "; ".join(sorted(
                {f"{r['method']}: {', '.join(r['mismatch'])}" for r in summary if r.get("mismatch")}))
                + " (merged with --allow-mismatch: not a matched comparison)."]
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
        lines += render_comparisons(comparisons, reference)
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
        if ds.get("subjects_are_recordings"):
            lines.append(f"  - {SUBJECTS_ARE_RECORDINGS}")
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
RUN_KEYS = ("protocol", "shots", "seed", "test")
SUMMARY_ROW_KEYS = ("protocol", "shots", "n_seeds", "balanced_accuracy_mean")


def load_results(path: PathLike) -> Dict[str, Any]:
    """Read one ``results.json`` (a file, or a directory containing one) and check its shape.

    Raises DataError naming the file and the first missing key (``runs[i]: no key 'seed'``).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    data = read_json(p)
    if not isinstance(data, dict) or not isinstance(data.get("summary"), list):
        raise DataError(p, "not an evaluation results.json (no 'summary' list)")
    data.setdefault("runs", [])
    if not isinstance(data["runs"], list):
        raise DataError(p, "'runs' is not a list")
    for i, r in enumerate(data["runs"]):
        if not isinstance(r, dict):
            raise DataError(p, f"runs[{i}] is not an object")
        for key in RUN_KEYS:
            if key not in r:
                raise DataError(p, f"runs[{i}] has no key {key!r}")
        if not isinstance(r["test"], dict):
            raise DataError(p, f"runs[{i}].test is not an object")
        for key in METRICS:
            if key not in r["test"]:
                raise DataError(p, f"runs[{i}].test has no key {key!r}")
    if not data["runs"]:
        for i, r in enumerate(data["summary"]):
            for key in SUMMARY_ROW_KEYS:
                if not isinstance(r, dict) or key not in r:
                    raise DataError(p, f"summary[{i}] has no key {key!r}")
    data["_path"] = os.fspath(p)
    return data


def fingerprint(res: Dict[str, Any]) -> Dict[str, Any]:
    """What must match between merged rows for a comparison to be like for like: the dataset, the
    split scheme (and validation budget), the preprocessing and the architecture. Results written
    before issue 12 have a ``fixed`` split and ``full`` validation."""
    ds = res.get("dataset") or {}
    enc = res.get("encoder") or {}
    split = res.get("split") or {}
    pre = enc.get("preprocess") or {}
    new = "scheme" in split
    return {
        "dataset": (ds.get("name"), ds.get("n_windows"), ds.get("n_subjects"), tuple(ds.get("class_names") or ())),
        "split scheme": ((split.get("scheme") if new else ("fixed" if split else None)), split.get("seed"),
                         split.get("val_fraction"), split.get("test_fraction"), split.get("folds"),
                         split.get("val") if new else ("full" if split else None),
                         None if new else tuple(sorted((split.get("subjects") or {}).get("test") or ()))),
        "preprocessing": tuple(pre.get(k) for k in ("rate_hz", "window_s", "stride_s", "normalization",
                                                    "median_kernel")),
        "architecture": enc.get("model"),
    }


def run_dir_seed(run_dir: Any) -> Optional[int]:
    """The ``seed`` in a pretraining run directory's ``config.json`` (None when there is none to read)."""
    if not run_dir:
        return None
    f = Path(run_dir) / "config.json"
    if not f.is_file():
        return None
    try:
        cfg = read_json(f)
    except DataError as exc:
        log.warning("pretraining seed unknown: %s", exc)
        return None
    seed = cfg.get("seed", 0) if isinstance(cfg, dict) else None  # a run's config without "seed" used 0
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def pretrain_seed_of(res: Dict[str, Any]) -> Optional[int]:
    """The pretraining seed of the encoder behind an evaluation or zero-shot result: its own
    ``pretrain_seed`` (top level or in ``encoder``) when recorded, else the ``seed`` of the run
    directory it names (``encoder.encoder`` of a pretrained encoder, ``run`` of a zero-shot result);
    None for a random encoder or when the run directory is not there to read."""
    enc = res.get("encoder") if isinstance(res.get("encoder"), dict) else {}
    for v in (res.get("pretrain_seed"), enc.get("pretrain_seed")):
        if v is not None:
            return v
    if "retrieval" in res:
        return run_dir_seed(res.get("run"))
    if enc.get("pretrained"):
        return run_dir_seed(enc.get("encoder"))
    return None


def merge_results(paths: Iterable[PathLike], *, reference: Optional[str] = None,
                  allow_mismatch: bool = False) -> Dict[str, Any]:
    """Merge several evaluations into one results dict with the same schema, plus ``comparisons``
    (paired differences against the reference, ``evaluate.comparisons``).

    Runs are re-summarised together. Every run records ``pretrain_seed`` (:func:`pretrain_seed_of`;
    None for random encoders). Files with the same method label whose encoders are different
    pretraining seeds of one method (same dataset and architecture) are one method pretrained with
    several seeds; for
    any other two encoders or datasets under one label, the later label gets the file's directory
    name appended, so rows never silently mix.

    Raises:
        UserError: a (method, protocol, shots, seed, fold, pretraining seed) run in two files (the
            same results given twice), or a file whose dataset, split scheme, preprocessing or architecture differ from
            the reference's (unless ``allow_mismatch``: then its rows carry ``mismatch`` and the report
            flags them). Both messages name the two files.
    """
    sources = []
    runs: List[Dict[str, Any]] = []
    summary_only: List[Dict[str, Any]] = []
    seen: Dict[str, Dict[Any, tuple]] = {}  # method label -> {pretraining seed: (encoder, dataset, architecture)}
    owner: Dict[tuple, str] = {}
    for path in paths:
        res = load_results(path)
        method = res.get("method") or (res.get("summary") or [{}])[0].get("method", "") or Path(res["_path"]).parent.name
        pseed = pretrain_seed_of(res)
        enc = res.get("encoder") or {}
        ident = (enc.get("encoder"), (res.get("dataset") or {}).get("spec"), enc.get("model"))
        known = seen.get(method, {})
        if known and ident not in known.values():
            # another encoder under this label: one more pretraining seed of the method (same dataset
            # and architecture, a known seed not seen yet), or a clash
            other_seed = (pseed is not None and pseed not in known and None not in known
                          and all(i[1:] == ident[1:] for i in known.values()))
            if not other_seed:
                method = f"{method} ({Path(res['_path']).parent.name})"
        seen.setdefault(method, {}).setdefault(pseed, ident)
        res["method"], res["_pretrain_seed"] = method, pseed
        rows = res["runs"] or res["summary"]
        for r in rows:
            r.setdefault("pretrain_seed", pseed)
        for r in rows:
            key = _run_key(method, r)
            if key in owner:
                what = (f"method {method!r}, protocol {r['protocol']}, shots {r['shots']}"
                        + (f", seed {r['seed']}" if "seed" in r else "") + ("" if r.get("fold") is None else f", fold {r['fold']}")
                        + ("" if r.get("pretrain_seed") is None else f", pretraining seed {r['pretrain_seed']}"))
                same = owner[key] == res["_path"]
                raise UserError(f"report: {res['_path']}: the run ({what}) is already in {owner[key]}"
                                + ("; the same results were given twice" if same else "")
                                + " - each run may be merged once (it would be counted twice)")
        for r in rows:
            owner[_run_key(method, r)] = res["_path"]
        sources.append(res)
    methods = [s["method"] for s in sources]
    ref_name = _reference_name(methods, reference)
    ref_src = next((s for s in sources if s["method"] == ref_name), sources[0] if sources else None)
    mismatches: List[Dict[str, Any]] = []
    if ref_src is not None:
        ref_fp = fingerprint(ref_src)
        for s in sources:
            if s is ref_src:
                continue
            fp = fingerprint(s)
            diff = [k for k in fp if fp[k] != ref_fp[k]]
            if not diff:
                continue
            detail = "; ".join(f"{k}: {fp[k]} vs {ref_fp[k]}" for k in diff)
            if not allow_mismatch:
                raise UserError(f"report: {s['_path']} differs from the reference {ref_src['_path']} in "
                                f"{', '.join(diff)} ({detail}); rows would not be a matched comparison "
                                f"(pass --allow-mismatch to merge them anyway, flagged in the tables)")
            log.warning("%s differs from the reference %s in %s", s["_path"], ref_src["_path"], ", ".join(diff))
            s["_mismatch"] = diff
            mismatches.append({"method": s["method"], "path": s["_path"], "reference_path": ref_src["_path"],
                               "differs_in": diff})
    for s in sources:
        if s["runs"]:
            runs += [{**r, "method": s["method"]} for r in s["runs"]]
        else:  # a summary without runs (hand-made or trimmed): keep its rows as they are
            summary_only += [{**r, "method": s["method"]} for r in s["summary"]]
    summary = summarize_runs(runs) + summary_only
    flagged = {s["method"]: s["_mismatch"] for s in sources if s.get("_mismatch")}
    for row in summary:
        if row.get("method") in flagged:
            row["mismatch"] = flagged[row["method"]]
    comparisons, ref_used = compute_comparisons(runs, ref_name) if runs else ([], ref_name)
    for c in comparisons:
        if c["method"] in flagged:
            c["mismatch"] = flagged[c["method"]]
    return {
        "format_version": 1,
        "kind": "merged-evaluation",
        "complete": all(s.get("complete", True) for s in sources),
        "sources": [{"path": s["_path"], "method": s["method"], "dataset": s.get("dataset"),
                     "encoder": s.get("encoder"), "split": s.get("split"), "seeds": s.get("seeds"),
                     "pretrain_seed": s.get("_pretrain_seed"),
                     **({"mismatch": s["_mismatch"]} if s.get("_mismatch") else {})} for s in sources],
        "dataset": sources[0].get("dataset") if sources else {},
        "summary": summary,
        "runs": runs,
        "reference": ref_used,
        "comparisons": comparisons,
        "mismatches": mismatches,
    }


def _run_key(method: str, r: Dict[str, Any]) -> tuple:
    """What makes a run distinct when merging: a run (or summary row) may be merged once."""
    return (method, r["protocol"], str(r["shots"]), r.get("seed"), r.get("fold"), r.get("pretrain_seed"))


def _reference_name(methods: Sequence[str], requested: Optional[str]) -> Optional[str]:
    return choose_reference(methods, requested)
