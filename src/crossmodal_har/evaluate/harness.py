"""The few-shot evaluation harness behind ``crossmodal-har evaluate``.

One call, :func:`run_evaluation`, does: load the labelled dataset with the encoder's preprocessing →
subject-disjoint split → for each protocol × shots × seed: draw k windows per class from the
training subjects, fit on them (model selection on validation subjects), score the test subjects
once → summaries (mean, std, 95 % t-interval over seeds) → ``results.json``, ``report.md``,
``shots_curve.png``, ``confusion_matrix.png``, ``config.json`` in the output directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from crossmodal_har.config import to_dict
from crossmodal_har.device import resolve_device
from crossmodal_har.errors import ConfigError, PartialRunError
from crossmodal_har.evaluate.fewshot import parse_shots, sample_shots, shots_key
from crossmodal_har.evaluate.metrics import classification_metrics
from crossmodal_har.evaluate.protocol_config import FitConfig
from crossmodal_har.evaluate.protocols import PROTOCOLS, EncoderSource, fit_protocol
from crossmodal_har.evaluate.report import summarize_runs, write_outputs
from crossmodal_har.io import read_json
from crossmodal_har.models.artefacts import find_encoder_dir
from crossmodal_har.models.classifier import embed_windows
from crossmodal_har.signals.datasets import load_labelled
from crossmodal_har.signals.types import PreprocessConfig, WindowSet
from crossmodal_har.splits import SplitConfig, subject_split

log = logging.getLogger(__name__)

RESULTS_FORMAT_VERSION = 1


def _random_preprocess() -> PreprocessConfig:
    # A randomly initialised encoder has no training-time preprocessing to inherit. Physical units
    # (gravity kept) are the default here: per-window z-scoring removes the gravity direction, the
    # main cue separating sitting, standing and lying (exploratory HAPT run, supervised
    # patchtst-small: 0.75-0.80 vs 0.89-0.92 test balanced accuracy). Set
    # preprocess.normalization=zscore to compare.
    return PreprocessConfig(normalization="none")


@dataclass
class EvaluateConfig:
    """Resolved configuration of one evaluation (saved as ``config.json``).

    Attributes:
        dataset: generic dataset directory, ``hapt`` or ``uestc:<dir>``.
        encoder: ``random`` or an encoder/run directory (``encoder.json`` + ``encoder.safetensors``).
        model: registry architecture for ``encoder: random`` (ignored otherwise).
        name: label of this encoder in tables (default: ``random`` or the encoder directory's name).
        protocols: any of supervised, linear-probe, knn, finetune.
        shots: labelled windows per class (ints) and/or ``all``.
        seeds: number of repetitions (new few-shot draw and new initialisation each).
        first_seed: seeds are first_seed .. first_seed + seeds - 1.
        skip_bad: skip unreadable recordings (listed in the report; exit status 3) instead of failing.
        cache_dir: dataset / window cache (default ``$CROSSMODAL_HAR_CACHE`` or ~/.cache/crossmodal-har).
        preprocess: windowing for ``encoder: random``; a saved encoder's own preprocessing always wins.
        split: subject-disjoint split (``crossmodal_har.splits``): fractions or explicit subjects, seed.
        fit: protocol hyper-parameters and device.
    """

    dataset: str = ""
    encoder: str = "random"
    model: str = "convgru"
    name: str = ""
    protocols: List[str] = field(default_factory=lambda: ["supervised", "linear-probe"])
    shots: List[Union[int, str]] = field(default_factory=lambda: [5, "all"])
    seeds: int = 3
    first_seed: int = 0
    skip_bad: bool = False
    cache_dir: Optional[str] = None
    preprocess: PreprocessConfig = field(default_factory=_random_preprocess)
    split: SplitConfig = field(default_factory=SplitConfig)
    fit: FitConfig = field(default_factory=FitConfig)

    def validate(self) -> None:
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad or not self.protocols:
            raise ConfigError(f"protocols: unknown {bad or 'empty list'}; choose from {', '.join(PROTOCOLS)}")
        self.shots = parse_shots([str(s) for s in self.shots])
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        if not (self.split.val_fraction > 0 or self.split.val_subjects):  # model selection needs them
            raise ConfigError(f"split.val_fraction must be in (0, 1), got {self.split.val_fraction}")
        if self.split.shuffle_train_pairs:
            raise ConfigError("split.shuffle_train_pairs is a pretraining control; evaluation keeps true labels")


def run_evaluation(cfg: EvaluateConfig, out_dir: Union[str, os.PathLike], *, progress: Optional[bool] = None,
                   windows: Optional[WindowSet] = None) -> Dict[str, Any]:
    """Run the evaluation and write every output into ``out_dir``; returns the results dict.

    Args:
        cfg: resolved configuration.
        out_dir: output directory (created).
        progress: tqdm bars (``None`` = only on a terminal).
        windows: an already-loaded :class:`WindowSet` to use instead of loading ``cfg.dataset``
            (it must have been made with the encoder's preprocessing).

    Raises:
        PartialRunError: after writing all outputs, when recordings were skipped (``skip_bad``).
    """
    t_start = time.perf_counter()
    resolve_device(cfg.fit.device)  # fail before loading data if the device is missing
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.encoder == "random":
        source = EncoderSource.random(cfg.model, cfg.preprocess)
        label = cfg.name or "random"
    else:
        source = EncoderSource.from_dir(cfg.encoder)
        label = cfg.name or _encoder_label(Path(cfg.encoder))
        # the saved encoder's preprocessing is what is used: config.json must say so
        cfg = dataclasses.replace(cfg, preprocess=source.preprocess, model=source.model_name)
    if windows is None:
        log.info("loading %s (rate %.0f Hz, window %.2f s, stride %.2f s, normalisation %s)", cfg.dataset,
                 source.preprocess.rate_hz, source.preprocess.window_s, source.preprocess.stride_s,
                 source.preprocess.normalization)
        windows = load_labelled(cfg.dataset, source.preprocess, skip_bad=cfg.skip_bad, cache_dir=cfg.cache_dir,
                                progress=progress is not False)
    ws = windows
    if len(ws) == 0:
        raise ConfigError(f"dataset {cfg.dataset!r} has no labelled windows")
    if ws.x.shape[1] != source.preprocess.window_samples:
        raise ConfigError(f"windows have {ws.x.shape[1]} samples; the encoder expects "
                          f"{source.preprocess.window_samples}")
    n_classes = len(ws.class_names)
    split = subject_split(ws.subject, cfg.split, ws.y, n_classes)
    log.info("subjects: %d train, %d val, %d test; windows: %d / %d / %d", len(split.subjects["train"]),
             len(split.subjects["val"]), len(split.subjects["test"]), len(split.train), len(split.val),
             len(split.test))
    val_ws, test_ws = ws.subset(split.val), ws.subset(split.test)

    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    plan = [(p, s, seed) for p in cfg.protocols for s in sorted(cfg.shots, key=shots_key) for seed in seeds]
    results: Dict[str, Any] = {
        "format_version": RESULTS_FORMAT_VERSION,
        "kind": "few-shot-evaluation",
        "complete": False,
        "method": label,
        "dataset": _dataset_info(cfg.dataset, ws),
        "encoder": source.info(),
        "split": {**split.to_dict(), "val_fraction": cfg.split.val_fraction,
                  "test_fraction": cfg.split.test_fraction, "seed": cfg.split.seed},
        "protocols": list(cfg.protocols),
        "shots": sorted(cfg.shots, key=shots_key),
        "seeds": seeds,
        "summary": [],
        "runs": [],
        "config": to_dict(cfg),
    }
    write_outputs(results, out_dir, plots=False)
    # A pretrained encoder is the same in every frozen run: embed every window once.
    frozen_z, frozen_encoder = None, None
    bar = tqdm(plan, desc="evaluate", unit="run", disable=None if progress is None else not progress)
    for protocol, shots, seed in bar:
        bar.set_postfix_str(f"{protocol} shots={shots} seed={seed}")
        idx, per_class = sample_shots(ws.y, split.train, shots, seed, n_classes)
        train_ws = ws.subset(idx)
        frozen = protocol in ("linear-probe", "knn") and not source.is_random
        if frozen and frozen_z is None:
            frozen_encoder = source.build(pretrained=True)
            frozen_z = embed_windows(frozen_encoder, ws.x, source.preprocess.normalization,
                                     cfg.fit.eval_batch_size, resolve_device(cfg.fit.device))
        fitted = fit_protocol(protocol, source, train_ws, val_ws, cfg.fit, seed, progress=progress,
                              desc=f"{protocol} k={shots} s={seed}",
                              frozen_embeddings=(frozen_z[idx], frozen_z[split.val]) if frozen else None,
                              encoder=frozen_encoder if frozen else None)
        if frozen:  # same maths as fitted.predict, on the cached embeddings
            with torch.no_grad():
                pred = fitted.module.head(torch.as_tensor(frozen_z[split.test])).argmax(1).numpy()
        else:
            pred = fitted.predict(test_ws.x, cfg.fit.eval_batch_size)  # the test split, scored once
        test = classification_metrics(test_ws.y, pred, n_classes)
        val = {k: v for k, v in fitted.val_metrics.items() if k != "confusion_matrix"}
        results["runs"].append({
            "method": label, "protocol": protocol, "shots": shots, "seed": seed,
            "n_train": int(len(idx)), "shots_per_class": {ws.class_names[int(c)]: n for c, n in per_class.items()},
            "best_epoch": fitted.best_epoch, "fit_seconds": round(fitted.seconds, 3),
            "val": val, "test": test,
        })
        log.info("%s shots=%s seed=%d: test balanced accuracy %.3f (val %.3f, %d train windows)", protocol, shots,
                 seed, test["balanced_accuracy"], val.get("balanced_accuracy", float("nan")), len(idx))
        results["summary"] = summarize_runs(results["runs"])
        write_outputs(results, out_dir, plots=False)  # partial results survive an interruption
    bar.close()
    results["complete"] = True
    results["elapsed_s"] = round(time.perf_counter() - t_start, 2)
    write_outputs(results, out_dir, plots=True)
    skipped = ws.report.skipped_recordings
    if skipped:
        raise PartialRunError(f"{len(skipped)} recording(s) were skipped (listed in {out_dir / 'report.md'}); "
                              f"results cover the rest")
    return results


def _encoder_label(path: Path) -> str:
    d = find_encoder_dir(path)
    meta = read_json(d / "encoder.json")
    extra = meta.get("extra") if isinstance(meta, dict) else None
    if isinstance(extra, dict) and isinstance(extra.get("method"), str) and extra["method"]:
        return extra["method"]
    p = path.resolve()
    return (p.parent.name if p.name == "encoder" else p.name) or "encoder"


def _dataset_info(spec: str, ws: WindowSet) -> Dict[str, Any]:
    r = ws.report
    return {
        "spec": str(spec),
        "name": ws.name,
        "class_names": list(ws.class_names),
        "n_windows": int(len(ws)),
        "n_subjects": int(len(np.unique(ws.subject.astype(str)))),
        "windows_per_class": {c: int(n) for c, n in zip(ws.class_names, np.bincount(ws.y, minlength=len(ws.class_names)))},
        "report": {
            "recordings_read": r.recordings_read,
            "windows_kept": r.windows_kept,
            "windows_excluded": dict(r.windows_excluded),
            "unlabelled_windows": r.unlabelled_windows,
            "short_recordings": list(r.short_recordings),
            "skipped_recordings": list(r.skipped_recordings),
        },
    }
