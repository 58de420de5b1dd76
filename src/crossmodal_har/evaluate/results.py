"""The result files of evaluation, typed: :class:`RunResult` and :class:`ZeroshotResult`.

``crossmodal-har evaluate`` writes one evaluation's ``results.json`` (``kind: few-shot-evaluation``),
``crossmodal-har report`` a merged one (``kind: merged-evaluation``, the same schema plus ``sources``,
``mismatches`` and the zero-shot lists); both are a :class:`RunResult`. ``crossmodal-har zeroshot``
writes a :class:`ZeroshotResult`. Each is a :class:`crossmodal_har.saved.SavedFile`: typed fields, one
``validate()``, a ``format_version`` (files written before zero-shot results carried one, and
hand-made files, are version 1). A result read from disk knows its file (``path``).

Summary rows, runs and comparisons stay dicts (their keys are listed in docs/evaluation.md): they
are made by :mod:`crossmodal_har.evaluate.summaries` and :mod:`crossmodal_har.evaluate.comparisons`
and read by the tables. The JSON written keeps the key order of every earlier version, so a file
written again is the same text; NaN and infinities are written as ``null``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from crossmodal_har.errors import DataError
from crossmodal_har.evaluate.metrics import METRICS
from crossmodal_har.io import PathLike, read_json
from crossmodal_har.saved import VERSION_KEY, SavedFile, parse_saved, write_saved

log = logging.getLogger(__name__)

EVALUATION_KIND = "few-shot-evaluation"
MERGED_KIND = "merged-evaluation"
RESULTS_JSON = "results.json"
RUN_KEYS = ("protocol", "shots", "seed", "test")
SUMMARY_ROW_KEYS = ("protocol", "shots", "n_seeds", "balanced_accuracy_mean")
RETRIEVAL_KEYS = ("R@1", "R@3", "R@10", "MRR")
# per-class retrieval over C class prototypes (the paper's zero-shot R@k; chance min(k, C)/C)
CLASS_RETRIEVAL_KEYS = ("R@1", "R@3", "MRR")
# a merged results.json lists its keys in this order (an evaluation's follow the field order)
MERGED_KEY_ORDER = ("kind", "complete", "sources", "dataset", "summary", "runs", "reference", "comparisons",
                    "mismatches", "zeroshot", "zeroshot_summary", "control_comparisons")


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
    return obj


def _present_fields(obj: Any, keep_none: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """Every field of ``obj`` in field order, leaving out the unset ones (None)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
            if getattr(obj, f.name) is not None or f.name in keep_none}


@dataclass
class RunResult(SavedFile):
    """One evaluation's ``results.json`` (or a merged one, ``kind == MERGED_KIND``).

    ``summary``: one row per method × protocol × shots (:func:`~crossmodal_har.evaluate.summaries.summarize_runs`);
    ``runs``: one entry per protocol × shots × split (each with ``protocol, shots, seed, test`` and the
    test metrics); an evaluation has ``method, dataset, encoder, split, protocols, shots, seeds, config``,
    ``comparisons`` and ``reference`` once a run is done and ``elapsed_s`` once complete; a merged file has
    ``sources`` (one entry per merged file), ``mismatches``, ``zeroshot``, ``zeroshot_summary`` and
    ``control_comparisons``. Unset (None) fields are not written.
    """

    WHAT = "evaluation results"
    UNVERSIONED = 1  # hand-made files without format_version read as version 1

    kind: Optional[str] = None
    complete: bool = True
    method: Optional[str] = None
    sources: Optional[List[Dict[str, Any]]] = None
    dataset: Optional[Dict[str, Any]] = None
    encoder: Optional[Dict[str, Any]] = None
    split: Optional[Dict[str, Any]] = None
    protocols: Optional[List[str]] = None
    shots: Optional[List[Union[int, str]]] = None
    seeds: Optional[List[int]] = None
    summary: List[Dict[str, Any]] = field(default_factory=list)
    runs: List[Dict[str, Any]] = field(default_factory=list)
    config: Optional[Dict[str, Any]] = None
    comparisons: Optional[List[Dict[str, Any]]] = None
    reference: Optional[str] = None
    elapsed_s: Optional[float] = None
    mismatches: Optional[List[Dict[str, Any]]] = None
    zeroshot: Optional[List[Dict[str, Any]]] = None
    zeroshot_summary: Optional[List[Dict[str, Any]]] = None
    control_comparisons: Optional[List[Dict[str, Any]]] = None
    # the file it was read from (None when built in memory); not a field, so never written
    path = None  # type: Optional[Path]

    def validate(self) -> None:
        """Every run has ``protocol, shots, seed, test`` and the test metrics; without runs, every summary
        row has what the tables need."""
        for i, r in enumerate(self.runs):
            for key in RUN_KEYS:
                if key not in r:
                    raise ValueError(f"runs[{i}] has no key {key!r}")
            if not isinstance(r["test"], dict):
                raise ValueError(f"runs[{i}].test is not an object")
            for key in METRICS:
                if key not in r["test"]:
                    raise ValueError(f"runs[{i}].test has no key {key!r}")
        if not self.runs:
            for i, r in enumerate(self.summary):
                for key in SUMMARY_ROW_KEYS:
                    if key not in r:
                        raise ValueError(f"summary[{i}] has no key {key!r}")

    def to_json(self) -> Dict[str, Any]:
        body = _present_fields(self)
        if self.kind == MERGED_KIND:
            body = {**{k: body[k] for k in MERGED_KEY_ORDER if k in body}, **body}
        return json_safe({VERSION_KEY: self.VERSION, **body})


@dataclass
class ZeroshotResult(SavedFile):
    """A zero-shot ``results.json``: retrieval both ways (``retrieval[direction]`` holds R@1, R@3, R@10,
    MRR and their ``chance_*``: windows ranked among N windows), the nearest-video-class
    ``classification`` and the per-class retrieval ``class_retrieval`` (R@1, R@3, MRR of the true class
    among the C class prototypes, ``chance_*`` = min(k, C)/C and H_C/C, ``classes``, ``windows``) when the
    windows are labelled, and what was evaluated (``run``, ``store``, ``split``: ``test`` or ``all``, ``subjects``,
    ``windows``). ``method`` labels the row in reports; ``pretrain_method`` is the run's own method."""

    WHAT = "zero-shot results"
    UNVERSIONED = 1  # zero-shot results written before they carried format_version are version 1

    retrieval: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    classification: Optional[Dict[str, Any]] = None
    class_retrieval: Optional[Dict[str, Any]] = None
    run: Optional[str] = None
    method: Optional[str] = None
    pretrain_method: Optional[str] = None
    pretrain_seed: Optional[int] = None
    store: Optional[str] = None
    split: Optional[str] = None
    subjects: Optional[List[Any]] = None
    windows: Optional[int] = None
    class_names: Optional[List[str]] = None
    # the file it was read from and its keys in the file's order (when read); not fields, never written
    path = None  # type: Optional[Path]
    file_keys = ()  # type: Tuple[str, ...]

    @property
    def evaluated_split(self) -> str:
        """``test`` (the run's held-out subjects, the default) or ``all``."""
        return self.split or "test"

    def validate(self) -> None:
        """Every retrieval direction has its numbers, and a classification its two metrics."""
        for direction, m in self.retrieval.items():
            if not isinstance(m, Mapping):
                raise ValueError(f"retrieval.{direction} is not an object")
            for k in RETRIEVAL_KEYS:
                if isinstance(m.get(k), bool) or not isinstance(m.get(k), (int, float)):
                    raise ValueError(f"retrieval.{direction} has no number {k!r}")
        if self.classification is not None:
            for k in ("balanced_accuracy", "macro_f1"):
                if isinstance(self.classification.get(k), bool) or not isinstance(self.classification.get(k),
                                                                                   (int, float)):
                    raise ValueError(f"classification has no number {k!r}")
        if self.class_retrieval is not None:
            for k in CLASS_RETRIEVAL_KEYS:
                v = self.class_retrieval.get(k)
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"class_retrieval has no number {k!r}")

    def to_json(self) -> Dict[str, Any]:
        return {VERSION_KEY: self.VERSION, **_present_fields(self, keep_none=("pretrain_seed",))}

    def listing(self) -> Dict[str, Any]:
        """This result as a merged results.json lists it: its file's keys in the file's order (every field
        when it was not read from a file), then ``method`` and ``pretrain_seed`` if the file had none,
        then ``path``."""
        names = [f.name for f in dataclasses.fields(self)]
        keys = [k for k in self.file_keys if k in names] or names
        keys += [k for k in ("method", "pretrain_seed") if k not in keys]
        return {**{k: getattr(self, k) for k in keys}, "path": None if self.path is None else os.fspath(self.path)}


# ------------------------------------------------------------------------------------------- reading
def results_file(path: PathLike) -> Path:
    """``path`` itself, or the ``results.json`` inside it when it is a directory."""
    p = Path(path)
    return p / RESULTS_JSON if p.is_dir() else p


def is_evaluation(data: Any) -> bool:
    """A parsed results.json of an evaluation (or a merged one): it has a ``summary`` list."""
    return isinstance(data, dict) and isinstance(data.get("summary"), list)


def is_zeroshot(data: Any) -> bool:
    """A parsed zero-shot results.json: it has a ``retrieval`` object."""
    return isinstance(data, dict) and isinstance(data.get("retrieval"), dict)


def parse_results(data: Any, path: Optional[PathLike] = None) -> RunResult:
    """A :class:`RunResult` from a parsed results.json (DataError naming ``path`` when it is not one)."""
    if not is_evaluation(data):
        raise DataError(path, "not an evaluation results.json (no 'summary' list)")
    res = parse_saved(RunResult, data, path, where="results")
    res.path = None if path is None else Path(path)
    return res


def parse_zeroshot(data: Any, path: Optional[PathLike] = None) -> ZeroshotResult:
    """A :class:`ZeroshotResult` from a parsed zero-shot results.json (DataError naming ``path``)."""
    if not is_zeroshot(data):
        raise DataError(path, "not a zero-shot results.json (no 'retrieval' object)")
    res = parse_saved(ZeroshotResult, data, path, where="results")
    res.path = None if path is None else Path(path)
    res.file_keys = tuple(data)
    return res


def load_results(path: PathLike) -> RunResult:
    """Read one evaluation ``results.json`` (a file, or a directory containing one) and check its shape.

    Raises DataError naming the file and the first problem (``runs[i] has no key 'seed'``).
    """
    p = results_file(path)
    return parse_results(read_json(p), p)


def write_results(result: Union[RunResult, ZeroshotResult], path: PathLike) -> Path:
    """Validate ``result`` and write it atomically as JSON."""
    return write_saved(result, path)


# ------------------------------------------------------------------------------- pretraining seeds
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


def pretrain_seed_of(result: Union[RunResult, ZeroshotResult]) -> Optional[int]:
    """The pretraining seed of the encoder behind an evaluation or zero-shot result: its own recorded
    ``pretrain_seed`` (a zero-shot result's, or the evaluation's ``encoder.pretrain_seed``) when there
    is one, else the ``seed`` of the run directory it names (``encoder.encoder`` of a pretrained encoder,
    ``run`` of a zero-shot result); None for a random encoder or when the run directory is not there to
    read."""
    if isinstance(result, ZeroshotResult):
        return result.pretrain_seed if result.pretrain_seed is not None else run_dir_seed(result.run)
    enc = result.encoder or {}
    if enc.get("pretrain_seed") is not None:
        return enc["pretrain_seed"]
    if enc.get("pretrained"):
        return run_dir_seed(enc.get("encoder"))
    return None
