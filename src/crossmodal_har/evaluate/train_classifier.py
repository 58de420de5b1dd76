"""Train a deployable classifier bundle on every labelled training subject (``crossmodal-har
train-classifier``): :class:`TrainClassifierConfig` -> :func:`train_classifier` -> ``MODEL_DIR/``.

The dataset's subjects are split into training and validation (subject-disjoint, no test split);
the evaluation protocols' code (:func:`~crossmodal_har.evaluate.protocols.fit_protocol`) fits on
every training subject and the validation subjects only choose the epoch / stop early, so the
validation metrics stored in the bundle are optimistic (``crossmodal-har evaluate`` gives an
unbiased estimate). The bundle also stores the HMM that ``predict --smooth hmm`` uses, estimated from
consecutive training windows of each recording.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

import torch

from crossmodal_har import __version__
from crossmodal_har.config import to_dict
from crossmodal_har.errors import ConfigError
from crossmodal_har.evaluate.harness import EvaluateConfig
from crossmodal_har.evaluate.protocol_config import FitConfig
from crossmodal_har.evaluate.protocols import EncoderSource, fit_protocol, require_channels
from crossmodal_har.models.smoothing import estimate_prior, estimate_transitions, label_sequences
from crossmodal_har.models.bundle import MAX_HMM_CLASSES, save_bundle
from crossmodal_har.models.classifier import head_spec
from crossmodal_har.signals.datasets import load_labelled
from crossmodal_har.signals.types import WindowSet
from crossmodal_har.splits import SplitConfig, subject_split

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
HMM_PSEUDO_COUNT = 1.0  # add-one (Dirichlet(1)) prior on the transitions and the class prior


@dataclass
class TrainClassifierConfig:
    """What ``train-classifier`` trains (built by ``config.build_config``; unknown keys are errors).

    Attributes:
        dataset: generic dataset directory, ``hapt``, ``hapt:<path>`` or ``uestc:<dir>``.
        encoder: ``random`` or an encoder/run directory (``encoder.json``).
        protocol: ``supervised``, ``finetune``, ``linear-probe`` or ``knn``.
        model: architecture for ``encoder: random`` (None = the evaluation harness's default).
        normalization: per-window normalisation for ``encoder: random`` (None = the harness's, none).
        channels: ``acc+gyro`` or ``acc`` (None = ``acc+gyro`` for ``random``, a saved encoder's own;
            a saved encoder's channels contradicted here are refused).
        fit: protocol hyper-parameters and device.
        split: the subject split: validation subjects only choose the epoch; no test subjects.
        seed: seed of initialisation and batch order (the command's ``--seed`` also sets ``split.seed``).
        skip_bad: skip unreadable recordings (listed in ``bundle.json``) instead of failing.
        cache_dir: dataset / window cache directory.
    """

    dataset: str = ""
    encoder: str = "random"
    protocol: Literal["linear-probe", "finetune", "supervised", "knn"] = "supervised"
    model: Optional[str] = None
    normalization: Optional[Literal["zscore", "recording", "none"]] = None
    channels: Optional[Literal["acc", "acc+gyro"]] = None
    fit: FitConfig = field(default_factory=FitConfig)
    split: SplitConfig = field(default_factory=lambda: SplitConfig(val_fraction=0.15, test_fraction=0.0))
    seed: int = 0
    skip_bad: bool = False
    cache_dir: Optional[str] = None

    def validate(self) -> None:
        if not self.dataset:
            raise ConfigError("dataset is required (a generic dataset directory, 'hapt' or 'uestc:<dir>')")
        if self.encoder != "random" and (self.model or self.normalization):
            raise ConfigError("--model/--normalization apply to --encoder random only (a saved encoder "
                              "brings its own architecture and preprocessing)")
        if self.split.test_fraction or self.split.test_subjects:
            raise ConfigError("split: a bundle has no test subjects (use `crossmodal-har evaluate` for a test score)")
        if not self.split.val_fraction > 0 and not self.split.val_subjects:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {self.split.val_fraction}")


@dataclass
class TrainedClassifier:
    """What :func:`train_classifier` wrote.

    Attributes:
        bundle_json: ``MODEL_DIR/bundle.json`` (the weights beside it).
        protocol: the protocol that fitted it.
        channels: what the model reads (``acc`` | ``acc+gyro``).
        class_names: the classes, in score order.
        val_metrics: validation metrics of the selected model (optimistic: they chose it).
        skipped_recordings: recordings ``skip_bad`` left out (each ``{"path", "error"}``).
    """

    bundle_json: Path
    protocol: str
    channels: str
    class_names: List[str]
    val_metrics: Dict[str, Any]
    skipped_recordings: List[Dict[str, Any]]

    def summary_line(self) -> str:
        """One line for the terminal: where the bundle is and its validation balanced accuracy."""
        ba = self.val_metrics.get("balanced_accuracy")
        if ba is None:
            return f"wrote bundle {self.bundle_json.parent}"
        return (f"wrote bundle {self.bundle_json.parent} ({self.protocol}, {self.channels}, {len(self.class_names)} "
                f"classes, validation balanced accuracy {ba:.3f})")


def encoder_source(cfg: TrainClassifierConfig) -> EncoderSource:
    """The starting encoder: a random-init architecture with the harness's preprocessing (and
    ``cfg``'s normalisation / channels), or a saved encoder with its own."""
    if cfg.encoder == "random":
        defaults = EvaluateConfig()
        pre = defaults.preprocess
        if cfg.normalization:
            pre = dataclasses.replace(pre, normalization=cfg.normalization)
        if cfg.channels:
            pre = dataclasses.replace(pre, channels=cfg.channels)
        return EncoderSource.random(cfg.model or defaults.model, pre)
    require_channels(cfg.channels, cfg.encoder)
    return EncoderSource.from_dir(cfg.encoder)


def fit_hmm(train: WindowSet, n_classes: int) -> Optional[Dict[str, Any]]:
    """The HMM for ``predict --smooth hmm``: transitions between consecutive windows of each training
    recording and the class prior, both with an add-one prior; None (with a warning) above
    ``MAX_HMM_CLASSES`` classes."""
    if n_classes > MAX_HMM_CLASSES:
        log.warning("%d classes: no HMM stored (at most %d), so `predict --smooth hmm` will not be available",
                    n_classes, MAX_HMM_CLASSES)
        return None
    seqs = label_sequences(train.recording, train.start_s, train.y)
    return {"transitions": estimate_transitions(seqs, n_classes, HMM_PSEUDO_COUNT).tolist(),
            "prior": estimate_prior(seqs, n_classes, HMM_PSEUDO_COUNT).tolist(), "pseudo_count": HMM_PSEUDO_COUNT,
            "sequences": len(seqs), "transitions_counted": int(sum(max(len(q) - 1, 0) for q in seqs)),
            "source": "training windows, consecutive per recording"}


def _versions() -> Dict[str, str]:
    # transformers' version from its metadata: importing it would cost seconds and is not needed here
    return {"crossmodal_har": __version__, "torch": torch.__version__,
            "transformers": importlib.metadata.version("transformers"), "python": platform.python_version()}


def train_classifier(cfg: TrainClassifierConfig, out: PathLike, *, progress: Optional[bool] = None
                     ) -> TrainedClassifier:
    """Fit ``cfg.protocol`` on the training subjects of ``cfg.dataset`` and write the bundle to ``out``.

    Args:
        cfg: what to train (validated again here).
        out: the bundle directory (``model.safetensors`` + ``bundle.json``; created). The caller
            decides whether an existing one may be replaced (the command's ``--force``).
        progress: progress bars (``None`` = only on a terminal; False = none).

    Raises:
        ConfigError: a bad setting, a dataset without labelled windows.
        DataError: an unreadable recording (without ``skip_bad``) or encoder.
    """
    cfg.validate()
    source = encoder_source(cfg)
    ws = load_labelled(cfg.dataset, source.preprocess, skip_bad=cfg.skip_bad, cache_dir=cfg.cache_dir,
                       progress=progress is not False)
    if len(ws) == 0:
        raise ConfigError(f"dataset {cfg.dataset!r} has no labelled windows")
    n_classes = len(ws.class_names)
    # a deployable model: every subject not used for validation trains (no test split here)
    split = subject_split(ws.subject, cfg.split, ws.y, n_classes)
    train_subjects = sorted(split.subjects["train"])
    train_ws, val_ws = ws.subset(split.train), ws.subset(split.val)
    log.info("training on %d windows of %d subjects; validation %d windows of %d subjects", len(train_ws),
             len(train_subjects), len(val_ws), len(split.subjects["val"]))
    fitted = fit_protocol(cfg.protocol, source, train_ws, val_ws, cfg.fit, cfg.seed, progress=progress,
                          desc=cfg.protocol)
    provenance = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dataset": str(cfg.dataset),
        "encoder": source.info(),
        "protocol": cfg.protocol,
        "seed": cfg.seed,
        "best_epoch": fitted.best_epoch,
        "fit_seconds": round(fitted.seconds, 2),
        "fit_config": to_dict(cfg.fit),
        "subjects": {"train": train_subjects, "val": split.subjects["val"]},
        "windows": {"train": int(len(train_ws)), "val": int(len(val_ws))},
        "dataset_report": to_dict(ws.report),
        "versions": _versions(),
        "note": "validation metrics were used for early stopping/model selection (optimistic)",
    }
    module = fitted.module
    path = save_bundle(out, module, encoder_name=source.model_name, encoder_config=source.config,
                       head_spec=head_spec(module.head, n_classes), preprocess=source.preprocess,
                       class_names=list(ws.class_names), metrics=fitted.val_metrics, provenance=provenance,
                       hmm=fit_hmm(train_ws, n_classes))
    return TrainedClassifier(bundle_json=Path(path), protocol=cfg.protocol, channels=source.preprocess.channels,
                             class_names=list(ws.class_names), val_metrics=dict(fitted.val_metrics),
                             skipped_recordings=list(ws.report.skipped_recordings))
