"""The few-shot evaluation harness behind ``crossmodal-har evaluate``.

One call, :func:`run_evaluation`, does: load the labelled dataset with the encoder's preprocessing →
subject-disjoint splits (by default one per seed; or grouped K-fold / leave-one-subject-out;
:func:`plan_splits`) → for each protocol × shots × split: draw k windows per class from the
training subjects (and, by default, at most k per class from the validation subjects), fit on them
(model selection on validation subjects), score the test subjects once → summaries (mean, std,
95 % t-interval over seeds or folds) and paired comparisons between protocols (vs ``supervised``)
→ ``results.json``, ``report.md``, ``shots_curve.png``, ``confusion_matrix.png``, ``config.json``
in the output directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from crossmodal_har.config import build_config, load_config_file, to_dict
from crossmodal_har.device import resolve_device
from crossmodal_har.errors import ConfigError, DataError, PartialRunError, UserError
from crossmodal_har.evaluate.comparisons import compute_comparisons
from crossmodal_har.evaluate.fewshot import parse_shots, sample_shots, shots_key
from crossmodal_har.evaluate.metrics import classification_metrics
from crossmodal_har.evaluate.protocol_config import FitConfig
from crossmodal_har.evaluate.protocols import PROTOCOLS, EncoderSource, fit_protocol, require_channels
from crossmodal_har.evaluate.report import write_outputs
from crossmodal_har.evaluate.results import EVALUATION_KIND, RunResult
from crossmodal_har.evaluate.summaries import PAPER_LABEL, summarize_runs
from crossmodal_har.io import read_json
from crossmodal_har.models.encoder_file import encoder_preprocess, find_encoder_dir
from crossmodal_har.models.classifier import embed_windows
from crossmodal_har.progress import progress as progress_bar
from crossmodal_har.signals.datasets import load_labelled
from crossmodal_har.signals.types import PreprocessConfig, WindowSet
from crossmodal_har.splits import (PAPER_TEST_PER_CLASS, SplitConfig, SubjectSplit, derive_seed, fold_splits,
                                   paper_split, parse_folds, subject_split)

log = logging.getLogger(__name__)

#: the paper's shots and repeats, used with ``split_scheme: paper`` unless shots / seeds are given
PAPER_SHOTS: List[Union[int, str]] = [10, 20, 50, 100]
PAPER_SEEDS = 5


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
        model: registry architecture for ``encoder: random`` (ignored otherwise); default ``convgru``.
        match: with ``encoder: random``: an encoder/run directory whose architecture (model and config)
            and preprocessing the random baseline takes, so it is matched to that pretrained encoder
            (``model`` and ``preprocess`` are then ignored).
        name: label of this encoder in tables (default: ``random`` or the encoder directory's name).
        protocols: any of supervised, linear-probe, knn, finetune.
        shots: labelled windows per class (ints) and/or ``all``.
        seeds: number of repetitions (new few-shot draw and new initialisation each).
        first_seed: seeds are first_seed .. first_seed + seeds - 1.
        skip_bad: skip unreadable recordings (listed in the report; exit status 3) instead of failing.
        cache_dir: dataset / window cache (default ``$CROSSMODAL_HAR_CACHE`` or ~/.cache/crossmodal-har).
        preprocess: windowing for ``encoder: random``; a saved encoder's own preprocessing always wins.
            ``preprocess.channels`` (``--channels``): ``acc+gyro`` (6 channels) or ``acc``
            (accelerometer only: the random encoder reads 3 channels, gyroscope columns are 0).
        split: subject-disjoint split (``crossmodal_har.splits``): fractions or explicit subjects, seed.
        split_scheme: ``per-seed`` (default): every seed draws its own subject split, with split seed
            ``derive_seed(split.seed, seed)``, so the spread over seeds covers which people are tested;
            ``fixed``: one split (``split.seed``) for every seed (the behaviour before issue 12);
            ``paper``: the paper's protocol (:func:`crossmodal_har.splits.paper_split`): per seed, 20
            random test windows per class from anyone, k training windows per class from the rest,
            the best epoch chosen on those test windows; shots 10, 20, 50, 100 and 5 seeds unless
            given. Optimistic: every row it produces carries :data:`PAPER_LABEL`.
        folds: grouped K-fold over subjects (an int >= 2) or ``loso`` (leave one subject out); each
            fold's subjects are tested once, each seed repeats the draws (and the fold's train/val
            split) inside every fold. ``None`` = no folds (``split_scheme`` decides).
        val: ``k-shot`` (default): at k shots, model selection sees at most k labelled windows per
            class of the validation subjects (a k-shot run uses k*C train + k*C validation labels);
            ``full``: every validation window (the behaviour before issue 12). ``all`` shots always
            use the full validation split.
        fit: protocol hyper-parameters and device.
    """

    dataset: str = ""
    encoder: str = "random"
    model: str = "convgru"
    match: str = ""
    name: str = ""
    protocols: List[str] = field(default_factory=lambda: ["supervised", "linear-probe"])
    shots: List[Union[int, str]] = field(default_factory=lambda: [5, "all"])
    seeds: int = 3
    first_seed: int = 0
    skip_bad: bool = False
    cache_dir: Optional[str] = None
    preprocess: PreprocessConfig = field(default_factory=_random_preprocess)
    split: SplitConfig = field(default_factory=SplitConfig)
    split_scheme: Literal["per-seed", "fixed", "paper"] = "per-seed"
    folds: Union[int, str, None] = None
    val: Literal["k-shot", "full"] = "k-shot"
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
        self.folds = parse_folds(self.folds)
        if self.match and self.encoder != "random":
            raise ConfigError("match (--match) is for encoder: random only: a saved encoder has its own "
                              "architecture and preprocessing")
        if self.split_scheme not in ("per-seed", "fixed", "paper"):
            raise ConfigError(f"split_scheme must be per-seed, fixed or paper, got {self.split_scheme!r}")
        if self.split_scheme == "paper" and self.folds is not None:
            raise ConfigError("split_scheme paper (the paper's window split) cannot be combined with folds")
        if self.folds is not None and (self.split.val_subjects or self.split.test_subjects):
            raise ConfigError("folds cannot be combined with split.val_subjects / split.test_subjects")


def build_evaluate_config(flags: Dict[str, Any], *, protocols: Optional[str] = None, shots: Optional[str] = None,
                          config_file: Optional[str] = None, overrides: Sequence[str] = (),
                          channels_flag: Optional[str] = None) -> "EvaluateConfig":
    """The evaluation's settings from the command line: defaults < ``config_file`` < ``flags`` (config key ->
    value, None = not given) < ``overrides``; ``protocols``/``shots`` are the comma lists of ``--protocol``/
    ``--shots``. Refuses a missing dataset and a ``--channels`` (``channels_flag``) that contradicts the saved
    or matched encoder. ``config_file`` is read whole here, before anything is written, so re-running from an
    earlier run's ``OUT/config.json`` into the same ``OUT`` works."""
    flags = dict(flags)
    flags["protocols"] = None if protocols is None else [x.strip() for x in protocols.split(",") if x.strip()]
    flags["shots"] = None if shots is None else parse_shots(shots)
    file_cfg = load_config_file(config_file) if config_file else None
    cfg = build_config(EvaluateConfig, file_cfg, flags=flags, overrides=overrides, where="evaluate config")
    if cfg.split_scheme == "paper":  # the paper's shots and repeats, unless given
        given = set(file_cfg or {}) | {k for k, v in flags.items() if v is not None} | {
            o.split("=", 1)[0].strip() for o in overrides}
        cfg.shots = cfg.shots if "shots" in given else list(PAPER_SHOTS)
        cfg.seeds = cfg.seeds if "seeds" in given else PAPER_SEEDS
    if not cfg.dataset:
        raise UserError("--dataset is required (a generic dataset directory, 'hapt' or 'uestc:<dir>')")
    if cfg.match or saved_encoder(cfg):
        require_channels(channels_flag, cfg.match or saved_encoder(cfg))
    return cfg


def saved_encoder(cfg: "EvaluateConfig") -> Optional[str]:
    """The saved encoder directory the evaluation reads, or None for a randomly initialised one."""
    return None if cfg.encoder in (None, "", "random") else str(cfg.encoder)


def split_scheme_name(cfg: "EvaluateConfig") -> str:
    """``per-seed``, ``fixed``, ``paper``, ``K-fold`` or ``loso``: how the data were split (in results.json)."""
    if cfg.folds == "loso":
        return "loso"
    if cfg.folds is not None:
        return f"{cfg.folds}-fold"
    return cfg.split_scheme


def plan_splits(subject: np.ndarray, y: np.ndarray, n_classes: int, cfg: "EvaluateConfig", seeds: List[int]
                ) -> Dict[Tuple[Optional[int], int], Tuple[SubjectSplit, int]]:
    """{(fold or None, seed): (split, split seed)}: every split the evaluation uses. The same inputs
    give the same splits for every method (they depend on the subjects, labels and seeds only)."""
    out: Dict[Tuple[Optional[int], int], Tuple[SubjectSplit, int]] = {}
    if cfg.split_scheme == "paper":
        for seed in seeds:
            s = derive_seed(cfg.split.seed, seed)
            out[(None, seed)] = (paper_split(y, subject, n_classes, s), s)
        return out
    if cfg.folds is not None:
        for seed in seeds:
            for i, sp in enumerate(fold_splits(subject, cfg.folds, cfg.split, y, n_classes, inner_seed=seed)):
                out[(i, seed)] = (sp, derive_seed(cfg.split.seed, seed, i))
        return out
    fixed = subject_split(subject, cfg.split, y, n_classes) if cfg.split_scheme == "fixed" else None
    for seed in seeds:
        if fixed is not None:
            out[(None, seed)] = (fixed, cfg.split.seed)
        else:
            s = derive_seed(cfg.split.seed, seed)
            out[(None, seed)] = (subject_split(subject, dataclasses.replace(cfg.split, seed=s), y, n_classes), s)
    return out


def run_evaluation(cfg: EvaluateConfig, out_dir: Union[str, os.PathLike], *, progress: Optional[bool] = None,
                   windows: Optional[WindowSet] = None) -> RunResult:
    """Run the evaluation and write every output into ``out_dir``; returns its results.

    Args:
        cfg: resolved configuration.
        out_dir: output directory (created).
        progress: tqdm bars (``None`` = only on a terminal).
        windows: an already-loaded :class:`WindowSet` to use instead of loading ``cfg.dataset``
            (it must have been made with the encoder's preprocessing).

    Raises:
        PartialRunError: after writing all outputs, when recordings were skipped (``skip_bad``).
    """
    resolve_device(cfg.fit.device)  # fail before loading data if the device is missing
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _evaluate(cfg, out_dir, progress, windows)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed run leaves no empty --out behind
        raise


def _evaluate(cfg: EvaluateConfig, out_dir: Path, progress: Optional[bool], windows: Optional[WindowSet]) -> RunResult:
    t_start = time.perf_counter()
    if cfg.encoder == "random" and cfg.match:
        source = _matched_random(cfg.match)
        label = cfg.name or "random"
        cfg = dataclasses.replace(cfg, preprocess=source.preprocess, model=source.model_name)
    elif cfg.encoder == "random":
        source = EncoderSource.random(cfg.model, cfg.preprocess)
        label = cfg.name or "random"
    else:
        source = EncoderSource.from_dir(cfg.encoder)
        label = cfg.name or _encoder_label(Path(cfg.encoder))
        # the saved encoder's preprocessing is what is used: config.json must say so
        cfg = dataclasses.replace(cfg, preprocess=source.preprocess, model=source.model_name)
    paper = cfg.split_scheme == "paper"
    if paper:
        label += PAPER_LABEL
    if windows is None:
        log.info("loading %s (rate %.0f Hz, window %.2f s, stride %.2f s, normalisation %s, channels %s)",
                 cfg.dataset, source.preprocess.rate_hz, source.preprocess.window_s, source.preprocess.stride_s,
                 source.preprocess.normalization, source.preprocess.channels)
        windows = load_labelled(cfg.dataset, source.preprocess, skip_bad=cfg.skip_bad, cache_dir=cfg.cache_dir,
                                progress=progress is not False)
    ws = windows
    if ws.preprocess.n_channels < source.preprocess.n_channels:
        raise ConfigError(f"windows were made for channels {ws.preprocess.channels!r}; the encoder reads "
                          f"{source.preprocess.channels!r}")
    if len(ws) == 0:
        raise ConfigError(f"dataset {cfg.dataset!r} has no labelled windows")
    if ws.x.shape[1] != source.preprocess.window_samples:
        raise ConfigError(f"windows have {ws.x.shape[1]} samples; the encoder expects "
                          f"{source.preprocess.window_samples}")
    n_classes = len(ws.class_names)
    if np.array_equal(ws.subject.astype(str), ws.recording.astype(str)):
        log.warning("%s: every subject id is its recording's name (no 'subject' column?): each recording counts "
                    "as a person, so one person's recordings can land in train and test", cfg.dataset)
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    splits = plan_splits(ws.subject, ws.y, n_classes, cfg, seeds)
    scheme = split_scheme_name(cfg)
    first = next(iter(splits.values()))[0]
    log.info("%s subject splits (%s); first: %d train, %d val, %d test subjects", len(splits), scheme,
             len(first.subjects["train"]), len(first.subjects["val"]), len(first.subjects["test"]))
    n_test = min(len(sp.subjects["test"]) for sp, _ in splits.values())
    if not cfg.folds and not paper and n_test < 3:
        log.warning("a split tests on only %d of %d subjects: every number rests on so few people; --folds loso "
                    "tests each subject once (one fold per subject)", n_test, len(set(ws.subject.tolist())))
    if source.is_random and len(set(cfg.protocols)) > 1:
        log.warning("no paired comparison: the protocols of one random encoder would be compared with each other "
                    "(a method with itself); evaluate a pretrained --encoder too and merge with crossmodal-har report")
    split_info: Dict[str, Any] = {
        "scheme": scheme, "seed": cfg.split.seed, "val_fraction": cfg.split.val_fraction,
        "test_fraction": cfg.split.test_fraction, "folds": cfg.folds, "val": cfg.val,
        "splits": [{"id": _split_id(scheme, fold, seed), "fold": fold, "seed": seed, "split_seed": sseed,
                    **sp.to_dict()} for (fold, seed), (sp, sseed) in splits.items()],
    }
    if scheme == "fixed":  # one split: as before issue 12
        split_info.update(first.to_dict())
    if paper:
        split_info.update({"optimistic": True, "test_per_class": PAPER_TEST_PER_CLASS, "subject_disjoint": False,
                           "val": "test",
                           "model_selection": "test windows (the paper's best epoch)"})
    keys = list(splits)
    plan = [(p, s, key) for p in cfg.protocols for s in sorted(cfg.shots, key=shots_key) for key in keys]
    results = RunResult(
        kind=EVALUATION_KIND,
        complete=False,
        method=label,
        dataset=_dataset_info(cfg.dataset, ws),
        encoder={**source.info(), **({"matched_to": cfg.match} if cfg.match else {})},
        split=split_info,
        protocols=list(cfg.protocols),
        shots=sorted(cfg.shots, key=shots_key),
        seeds=seeds,
        summary=[],
        runs=[],
        config=to_dict(cfg),
    )
    write_outputs(results, out_dir, plots=False)
    # A pretrained encoder is the same in every frozen run: embed every window once.
    frozen_z, frozen_encoder = None, None
    bar = progress_bar(plan, desc="evaluate", unit="run", enabled=progress)
    for protocol, shots, (fold, seed) in bar:
        split, split_seed = splits[(fold, seed)]
        bar.set_postfix_str(f"{protocol} shots={shots} seed={seed}" + ("" if fold is None else f" fold={fold}"))
        idx, per_class = sample_shots(ws.y, split.train, shots, seed, n_classes)
        train_ws = ws.subset(idx)
        if paper:  # the paper selects on its test windows: validation = test
            val_idx, val_per_class = sample_shots(ws.y, split.test, "all", seed, n_classes)
        elif cfg.val == "k-shot" and shots != "all":  # honest: no more validation labels than shots
            val_idx, val_per_class = sample_shots(ws.y, split.val, shots, seed, n_classes)
        else:
            val_idx, val_per_class = sample_shots(ws.y, split.val, "all", seed, n_classes)
        val_ws, test_ws = ws.subset(val_idx), ws.subset(split.test)
        frozen = protocol in ("linear-probe", "knn") and not source.is_random
        if frozen and frozen_z is None:
            frozen_encoder = source.build(pretrained=True)
            frozen_z = embed_windows(frozen_encoder, ws.x, source.preprocess.normalization,
                                     cfg.fit.eval_batch_size, resolve_device(cfg.fit.device))
        fitted = fit_protocol(protocol, source, train_ws, val_ws, cfg.fit, seed, progress=progress,
                              desc=f"{protocol} k={shots} s={seed}",
                              frozen_embeddings=(frozen_z[idx], frozen_z[val_idx]) if frozen else None,
                              encoder=frozen_encoder if frozen else None)
        if frozen:  # same maths as fitted.predict, on the cached embeddings
            with torch.no_grad():
                pred = fitted.module.head(torch.as_tensor(frozen_z[split.test])).argmax(1).numpy()
        else:
            pred = fitted.predict(test_ws.x, cfg.fit.eval_batch_size)  # the test split, scored once
        test = classification_metrics(test_ws.y, pred, n_classes)
        val = {k: v for k, v in fitted.val_metrics.items() if k != "confusion_matrix"}
        n_val_used = 0 if protocol == "knn" else int(len(val_idx))  # kNN selects nothing
        results.runs.append({
            "method": label, "protocol": protocol, "shots": shots, "seed": seed,
            "fold": fold, "split_id": _split_id(scheme, fold, seed), "split_seed": split_seed,
            "train_subjects": split.subjects["train"], "val_subjects": split.subjects["val"],
            "test_subjects": split.subjects["test"],
            "n_train": int(len(idx)), "shots_per_class": {ws.class_names[int(c)]: n for c, n in per_class.items()},
            "val_mode": "test" if paper else cfg.val,  # k-shot: at most `shots` per class (all at shots=all)
            "n_val": int(len(val_idx)),
            "val_shots_per_class": {ws.class_names[int(c)]: n for c, n in val_per_class.items()},
            "n_labels": int(len(idx)) + n_val_used,
            "best_epoch": fitted.best_epoch, "fit_seconds": round(fitted.seconds, 3),
            "val": val, "test": test, **({"optimistic": True} if paper else {}),
        })
        log.info("%s shots=%s seed=%d: test balanced accuracy %.3f (val %.3f, %d train windows)", protocol, shots,
                 seed, test["balanced_accuracy"], val.get("balanced_accuracy", float("nan")), len(idx))
        results.summary = summarize_runs(results.runs)
        # several protocols with supervised among them: each against supervised, paired by split and draw
        results.comparisons, results.reference = compute_comparisons(results.runs, within_method=not source.is_random)
        write_outputs(results, out_dir, plots=False)  # partial results survive an interruption
    bar.close()
    results.complete = True
    results.elapsed_s = round(time.perf_counter() - t_start, 2)
    write_outputs(results, out_dir, plots=True)
    skipped = ws.report.skipped_recordings
    if skipped:
        raise PartialRunError(f"{len(skipped)} recording(s) were skipped (listed in {out_dir / 'report.md'}); "
                              f"results cover the rest")
    return results


def _matched_random(path: str) -> EncoderSource:
    """A random-init encoder with the architecture, config and preprocessing of the saved encoder at ``path``."""
    d = find_encoder_dir(Path(path))
    meta = read_json(d / "encoder.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), str) or not isinstance(meta.get("config"), dict):
        raise DataError(d / "encoder.json", "no 'model'/'config': cannot match a random baseline to it")
    return EncoderSource("random", meta["model"], meta["config"], encoder_preprocess(meta, d / "encoder.json"))


def _split_id(scheme: str, fold: Optional[int], seed: int) -> str:
    if fold is not None:
        return f"fold{fold}-seed{seed}"
    return "fixed" if scheme == "fixed" else f"seed{seed}"


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
        # no subject column: the loaders use the recording name, so each recording counts as a person
        "subjects_are_recordings": bool(len(ws) and np.array_equal(ws.subject.astype(str), ws.recording.astype(str))),
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
