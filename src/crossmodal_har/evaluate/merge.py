"""Merging several result files into one comparison (``crossmodal-har report``).

:func:`read_inputs` tells evaluation results from zero-shot results; :func:`merge_results`
re-summarises any set of evaluations into one merged :class:`~crossmodal_har.evaluate.results.RunResult`,
pooling pretraining seeds of one method, refusing a run given twice and, unless asked, an evaluation
whose settings (:func:`matched_settings`) differ from the reference's.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.evaluate.comparisons import choose_reference, compute_comparisons
from crossmodal_har.evaluate.results import (MERGED_KIND, RunResult, ZeroshotResult, is_evaluation, is_zeroshot,
                                             load_results, parse_zeroshot, pretrain_seed_of, results_file)
from crossmodal_har.evaluate.summaries import summarize_runs
from crossmodal_har.io import PathLike, read_json

log = logging.getLogger(__name__)


def read_inputs(paths: Sequence[PathLike]) -> Tuple[List[Path], List[ZeroshotResult]]:
    """Split inputs into evaluation result files and loaded zero-shot results (each with its ``method``,
    by default its directory's name, and its pretraining seed, :func:`pretrain_seed_of`).

    Raises DataError naming the file when an input is neither, UserError when a zero-shot result (method,
    store, split, pretraining seed) is given twice.
    """
    evals: List[Path] = []
    zeroshot: List[ZeroshotResult] = []
    for raw in paths:
        f = results_file(raw)
        if not f.exists():
            raise DataError(f, "no results.json here (expected the --out directory of evaluate or zeroshot)")
        data = read_json(f)
        if is_evaluation(data):
            evals.append(f)
        elif is_zeroshot(data):
            z = parse_zeroshot(data, f)
            if z.method is None:
                z.method = f.parent.name
            z.pretrain_seed = pretrain_seed_of(z)
            key = _zeroshot_key(z)
            for other in zeroshot:
                if _zeroshot_key(other) == key:
                    seed = "" if key[3] is None else f", pretraining seed {key[3]}"
                    raise UserError(f"report: {f}: the zero-shot result (method {key[0]!r}, store {key[1] or '?'}, "
                                    f"split {key[2]}{seed}) is already in {other.path}"
                                    + ("; the same results were given twice" if other.path == f else
                                       "; give one of them another --name")
                                    + " - each result may be merged once")
            zeroshot.append(z)
        else:
            raise DataError(f, "neither an evaluation results.json (no 'summary') nor a zero-shot one (no 'retrieval')")
    return evals, zeroshot


def _zeroshot_key(z: ZeroshotResult) -> tuple:
    """A zero-shot result may be merged once: (method, store, split, pretraining seed)."""
    return (z.method, os.fspath(z.store or ""), z.evaluated_split, z.pretrain_seed)


def matched_settings(result: RunResult) -> Dict[str, Any]:
    """What must match between merged rows for a comparison to be like for like: the dataset, the
    split scheme (and validation budget), the preprocessing and the architecture. Results written
    before issue 12 have a ``fixed`` split and ``full`` validation."""
    ds = result.dataset or {}
    enc = result.encoder or {}
    split = result.split or {}
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


@dataclass
class _Source:
    """One merged evaluation: its results, the label its rows get, its pretraining seed and, when merged
    with --allow-mismatch, the settings that differ from the reference's."""

    result: RunResult
    method: str
    pretrain_seed: Optional[int]
    mismatch: Optional[List[str]] = None

    @property
    def path(self) -> str:
        return os.fspath(self.result.path)


def merge_results(paths: Iterable[PathLike], *, reference: Optional[str] = None,
                  allow_mismatch: bool = False) -> RunResult:
    """Merge several evaluations into one result with the same schema (``kind: merged-evaluation``),
    plus ``comparisons`` (paired differences against the reference, ``evaluate.comparisons``).

    Runs are re-summarised together. Every run records ``pretrain_seed`` (:func:`pretrain_seed_of`;
    None for random encoders). Files with the same method label whose encoders are different
    pretraining seeds of one method (same dataset and architecture) are one method pretrained with
    several seeds; for any other two encoders or datasets under one label, the later label gets the
    file's directory name appended, so rows never silently mix.

    Raises:
        UserError: a (method, protocol, shots, seed, fold, pretraining seed) run in two files (the
            same results given twice), or a file whose dataset, split scheme, preprocessing or
            architecture differ from the reference's (unless ``allow_mismatch``: then its rows carry
            ``mismatch`` and the report flags them). Both messages name the two files.
    """
    sources: List[_Source] = []
    seen: Dict[str, Dict[Any, tuple]] = {}  # method label -> {pretraining seed: (encoder, dataset, architecture)}
    owner: Dict[tuple, str] = {}
    for path in paths:
        res = load_results(path)
        where = res.path
        method = res.method or (res.summary or [{}])[0].get("method", "") or where.parent.name
        pseed = pretrain_seed_of(res)
        enc = res.encoder or {}
        ident = (enc.get("encoder"), (res.dataset or {}).get("spec"), enc.get("model"))
        known = seen.get(method, {})
        if known and ident not in known.values():
            # another encoder under this label: one more pretraining seed of the method (same dataset
            # and architecture, a known seed not seen yet), or a clash
            other_seed = (pseed is not None and pseed not in known and None not in known
                          and all(i[1:] == ident[1:] for i in known.values()))
            if not other_seed:
                method = f"{method} ({where.parent.name})"
        seen.setdefault(method, {}).setdefault(pseed, ident)
        src = _Source(res, method, pseed)
        rows = res.runs or res.summary
        for r in rows:
            r.setdefault("pretrain_seed", pseed)
        for r in rows:
            key = _run_key(method, r)
            if key in owner:
                what = (f"method {method!r}, protocol {r['protocol']}, shots {r['shots']}"
                        + (f", seed {r['seed']}" if "seed" in r else "") + ("" if r.get("fold") is None else f", fold {r['fold']}")
                        + ("" if r.get("pretrain_seed") is None else f", pretraining seed {r['pretrain_seed']}"))
                same = owner[key] == src.path
                raise UserError(f"report: {src.path}: the run ({what}) is already in {owner[key]}"
                                + ("; the same results were given twice" if same else "")
                                + " - each run may be merged once (it would be counted twice)")
        for r in rows:
            owner[_run_key(method, r)] = src.path
        sources.append(src)
    ref_name = choose_reference([s.method for s in sources], reference)
    ref_src = next((s for s in sources if s.method == ref_name), sources[0] if sources else None)
    mismatches: List[Dict[str, Any]] = []
    if ref_src is not None:
        ref_settings = matched_settings(ref_src.result)
        for s in sources:
            if s is ref_src:
                continue
            settings = matched_settings(s.result)
            diff = [k for k in settings if settings[k] != ref_settings[k]]
            if not diff:
                continue
            detail = "; ".join(f"{k}: {settings[k]} vs {ref_settings[k]}" for k in diff)
            if not allow_mismatch:
                raise UserError(f"report: {s.path} differs from the reference {ref_src.path} in "
                                f"{', '.join(diff)} ({detail}); rows would not be a matched comparison "
                                f"(pass --allow-mismatch to merge them anyway, flagged in the tables)")
            log.warning("%s differs from the reference %s in %s", s.path, ref_src.path, ", ".join(diff))
            s.mismatch = diff
            mismatches.append({"method": s.method, "path": s.path, "reference_path": ref_src.path,
                               "differs_in": diff})
    runs: List[Dict[str, Any]] = []
    summary_only: List[Dict[str, Any]] = []
    for s in sources:
        if s.result.runs:
            runs += [{**r, "method": s.method} for r in s.result.runs]
        else:  # a summary without runs (hand-made or trimmed): keep its rows as they are
            summary_only += [{**r, "method": s.method} for r in s.result.summary]
    summary = summarize_runs(runs) + summary_only
    flagged = {s.method: s.mismatch for s in sources if s.mismatch}
    for row in summary:
        if row.get("method") in flagged:
            row["mismatch"] = flagged[row["method"]]
    # one random encoder's protocols against each other would compare a method with itself
    pretrained = any((s.result.encoder or {}).get("pretrained", True) for s in sources)
    if runs and not pretrained and len({s.method for s in sources}) == 1:
        log.warning("no paired comparison: one random encoder's protocols would be compared with each other (a "
                    "method with itself); merge a pretrained encoder's evaluation too")
    comparisons, ref_used = (compute_comparisons(runs, ref_name, within_method=pretrained) if runs
                             else ([], ref_name))
    for c in comparisons:
        if c["method"] in flagged:
            c["mismatch"] = flagged[c["method"]]
    return RunResult(
        kind=MERGED_KIND,
        complete=all(s.result.complete for s in sources),
        sources=[{"path": s.path, "method": s.method, "dataset": s.result.dataset, "encoder": s.result.encoder,
                  "split": s.result.split, "seeds": s.result.seeds, "pretrain_seed": s.pretrain_seed,
                  **({"mismatch": s.mismatch} if s.mismatch else {})} for s in sources],
        dataset=sources[0].result.dataset if sources else {},
        summary=summary,
        runs=runs,
        reference=ref_used,
        comparisons=comparisons,
        mismatches=mismatches,
    )


def _run_key(method: str, r: Dict[str, Any]) -> tuple:
    """What makes a run distinct when merging: a run (or summary row) may be merged once."""
    return (method, r["protocol"], str(r["shots"]), r.get("seed"), r.get("fold"), r.get("pretrain_seed"))
