"""A classifier bundle: ``MODEL_DIR/`` with ``bundle.json`` (:class:`BundleFile`) +
``model.safetensors`` [+ ``model.onnx``], written by :func:`save_bundle`, read by
:func:`read_bundle` / :func:`load_bundle`::

    {"format_version": 1, "kind": "crossmodal-har-classifier",
     "encoder": {"model": "patchtst-small", "config": {...}, "embed_dim": 64},
     "head": {"type": "linear", "in_features": 64, "num_classes": 6},
     "preprocess": {...},            # PreprocessConfig: rate, window, stride, normalization, ...
     "class_names": ["walking", ...],
     "metrics": {...},               # validation metrics at training time (caller-defined)
     "provenance": {...},            # dataset, encoder source, protocol, seed, versions, date
     "hmm": {"transitions": [[...]], "prior": [...], ...},  # optional: --smooth hmm (C x C, C)
     "nonwear": {"std_g": 0.013, "range_g": 0.05, ...}}     # optional: predict's non-wear defaults

A bundle's model maps windows in *physical units* [B, W, 6] (g, rad/s) to logits; its normalisation
runs inside ``forward`` so that ONNX export carries it too. ``read_bundle(with_model=False)`` reads
only ``bundle.json`` and never imports torch (the ONNX runtime's path).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple, Union

import numpy as np

from crossmodal_har.config import to_dict
from crossmodal_har.errors import ConfigError, DataError, UserError
from crossmodal_har.io import PathLike, read_json
from crossmodal_har.models.smoothing import Smoother, StreamingSmoother, StreamingViterbi
from crossmodal_har.models.weights import (arch_embed_dim, arch_params, check_architecture, check_weights_size,
                                           cpu_state_dict, load_state_strict, read_weights, write_weights)
from crossmodal_har.saved import SavedFile, build_saved, errors_naming, json_type, parse_saved, write_saved
from crossmodal_har.signals.text import short_number
from crossmodal_har.signals.types import PreprocessConfig

BUNDLE_KIND = "crossmodal-har-classifier"
BUNDLE_META = "bundle.json"
BUNDLE_WEIGHTS = "model.safetensors"
BUNDLE_ONNX = "model.onnx"

MAX_CLASSES = 10_000
MAX_HEAD_ELEMENTS = 1 << 30  # a head's stored values (kNN bank + one-hot labels): 4 GiB of float32
MAX_HMM_CLASSES = 1024  # C x C numbers in JSON: at most ~1 M
MAX_IN_FEATURES = 1 << 20
HEAD_KEYS = {"linear": ("type", "in_features", "num_classes"),
             "standardized-linear": ("type", "in_features", "num_classes"),
             "knn": ("type", "in_features", "num_classes", "bank_size", "k", "temperature")}


def _in_range(value: int, where: str, lo: int, hi: Optional[int] = None) -> int:
    if value < lo or (hi is not None and value > hi):
        raise ConfigError(f"{where} = {short_number(value)} is out of range [{lo}, {'...' if hi is None else hi}]")
    return value


def _probabilities(value: List[float], where: str, n: int) -> None:
    """``n`` finite numbers in [0, 1] that sum to 1 (within 1e-6)."""
    if len(value) != n:
        raise ConfigError(f"{where}: expected a list of {n} numbers, got {len(value)} entries")
    if not all(math.isfinite(v) for v in value):
        raise ConfigError(f"{where}: expected finite numbers")
    if not all(0.0 <= v <= 1.0 for v in value):
        raise ConfigError(f"{where}: probabilities must lie in [0, 1]")
    if abs(math.fsum(value) - 1.0) > 1e-6:
        raise ConfigError(f"{where}: must sum to 1, sums to {math.fsum(value):.6g}")


@dataclass
class EncoderSection:
    """The bundle's encoder: registry name, resolved config, embedding size."""

    OMIT_IF_NONE = ("embed_dim",)

    model: str
    config: Dict[str, Any]
    embed_dim: Optional[int] = None


@dataclass
class HeadSpec:
    """The head's shape (:func:`crossmodal_har.models.classifier.build_head` builds it): ``linear``,
    ``standardized-linear``, or ``knn`` with ``bank_size`` stored embeddings, ``k`` and ``temperature``."""

    OMIT_IF_NONE = ("bank_size", "k", "temperature")

    type: Literal["linear", "standardized-linear", "knn"]
    in_features: int
    num_classes: int
    bank_size: Optional[int] = None
    k: Optional[int] = None
    temperature: Optional[float] = None

    def validate(self) -> None:
        given = [key for key in ("bank_size", "k", "temperature") if getattr(self, key) is not None]
        allowed = HEAD_KEYS[self.type]
        extra = [key for key in given if key not in allowed]
        if extra:
            raise ConfigError(f"head: unknown key(s) {', '.join(map(repr, extra))}; allowed: {', '.join(allowed)}")
        for key in allowed[3:]:
            if getattr(self, key) is None:
                raise ConfigError(f"head: missing key {key!r}")
        d = _in_range(self.in_features, "head.in_features", 1, MAX_IN_FEATURES)
        c = _in_range(self.num_classes, "head.num_classes", 1, MAX_CLASSES)
        if self.type == "knn":
            n = _in_range(self.bank_size, "head.bank_size", 1)
            if n * (d + c) > MAX_HEAD_ELEMENTS:
                raise ConfigError(f"head.bank_size {short_number(n)} x (in_features + num_classes) = "
                                  f"{short_number(n * (d + c))} values, more than {short_number(MAX_HEAD_ELEMENTS)}")
            _in_range(self.k, "head.k", 1, n)
            if not (math.isfinite(self.temperature) and self.temperature > 0):
                raise ConfigError("head.temperature: expected a finite number > 0")

    def stored_values(self) -> int:
        """How many numbers the head's weights hold at least (bank + one-hot labels, or the matrix)."""
        if self.type == "knn":
            return self.bank_size * (self.in_features + self.num_classes)
        return self.in_features * self.num_classes


@dataclass
class HmmSection:
    """``predict --smooth hmm``'s model: ``transitions`` C x C (rows sum to 1) and ``prior`` C, with
    how they were estimated."""

    OMIT_IF_NONE = ("pseudo_count", "sequences", "transitions_counted", "source")

    transitions: List[List[float]]
    prior: List[float]
    pseudo_count: Optional[float] = None
    sequences: Optional[int] = None
    transitions_counted: Optional[int] = None
    source: Optional[str] = None

    def check(self, n_classes: int) -> None:
        """The matrix and prior fit ``n_classes`` and are probabilities (a ConfigError otherwise)."""
        c = int(n_classes)
        if c > MAX_HMM_CLASSES:
            raise ConfigError(f"hmm: {c} classes, more than {MAX_HMM_CLASSES}")
        if len(self.transitions) != c:
            raise ConfigError(f"hmm.transitions: expected a {c} x {c} matrix (one row per class)")
        for i, row in enumerate(self.transitions):
            _probabilities(row, f"hmm.transitions[{i}] (of {c} x {c})", c)
        _probabilities(self.prior, "hmm.prior", c)
        if self.pseudo_count is not None and not (math.isfinite(self.pseudo_count) and self.pseudo_count >= 0):
            raise ConfigError("hmm.pseudo_count: expected a finite number >= 0")
        for key in ("sequences", "transitions_counted"):
            if getattr(self, key) is not None:
                _in_range(getattr(self, key), f"hmm.{key}", 0)
        if self.source is not None and not self.source:
            raise ConfigError("hmm.source: expected a non-empty string")


@dataclass
class BundleFile(SavedFile):
    """``bundle.json``: everything that rebuilds the classifier and says how to use it."""

    VERSION = 1
    WHAT = BUNDLE_META
    OMIT_IF_NONE = ("hmm", "nonwear")

    kind: str
    encoder: EncoderSection
    head: HeadSpec
    preprocess: PreprocessConfig
    class_names: List[str]
    metrics: Dict[str, Any] = field(default_factory=dict)
    provenance: Dict[str, Any] = field(default_factory=dict)
    hmm: Optional[HmmSection] = None
    nonwear: Optional[Dict[str, Any]] = None

    def validate(self) -> None:
        if self.kind != BUNDLE_KIND:
            raise ConfigError(f"not a classifier bundle (kind must be {BUNDLE_KIND!r})")
        if not self.encoder.model:
            raise ConfigError("encoder.model: expected a non-empty string")
        if self.encoder.embed_dim is not None:
            _in_range(self.encoder.embed_dim, "encoder.embed_dim", 1)
            if self.head.in_features != self.encoder.embed_dim:
                raise ConfigError(f"head.in_features {self.head.in_features} does not match the encoder's embed_dim "
                                  f"{self.encoder.embed_dim}")
        c = self.head.num_classes
        if len(self.class_names) != c:
            raise ConfigError(f"{len(self.class_names)} class names but the head has {c} outputs")
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError("class_names: names must be unique")
        if self.hmm is not None:
            self.hmm.check(c)
        for k, v in (self.nonwear or {}).items():
            if isinstance(v, (dict, list)) or (isinstance(v, float) and not math.isfinite(v)):
                raise ConfigError(f"nonwear.{k}: expected a finite number, string or boolean")

    def architecture(self) -> Any:
        """The encoder's architecture dataclass, checked against the registry (nothing built; imports
        the architecture's module), its embedding size agreeing with ``encoder`` and ``head``."""
        arch = check_architecture(self.encoder.model, self.encoder.config, "encoder", kind="imu")
        embed_dim = arch_embed_dim(arch)
        if embed_dim is not None:
            if self.encoder.embed_dim is not None and self.encoder.embed_dim != embed_dim:
                raise ConfigError(f"encoder.embed_dim {self.encoder.embed_dim} does not match its architecture's "
                                  f"{embed_dim}")
            if self.head.in_features != embed_dim:
                raise ConfigError(f"head.in_features {self.head.in_features} does not match the encoder's embed_dim "
                                  f"{embed_dim}")
        return arch


def parse_bundle_file(data: Any, path: PathLike) -> BundleFile:
    """``bundle.json``'s parsed JSON as a :class:`BundleFile` (a DataError naming ``path`` otherwise);
    a JSON object of another kind is "not a classifier bundle" before anything else is said."""
    if not isinstance(data, dict):
        raise DataError(path, f"bundle.json: expected a JSON object, got {json_type(data)}")
    if data.get("kind") != BUNDLE_KIND:
        raise DataError(path, f"not a classifier bundle (kind must be {BUNDLE_KIND!r})")
    return parse_saved(BundleFile, data, path)


@dataclass
class Bundle:
    """A read classifier bundle.

    Attributes:
        model: ``nn.Module`` in eval mode, physical windows [B, W, 6] -> logits [B, C]
            (``None`` after ``read_bundle(with_model=False)``).
        meta: its ``bundle.json``.
        path: the bundle directory.
    """

    model: Any
    meta: BundleFile
    path: Optional[Path] = None

    @property
    def class_names(self) -> List[str]:
        """Label of each logit."""
        return list(self.meta.class_names)

    @property
    def preprocess(self) -> PreprocessConfig:
        """How windows must be made (rate, window, stride, filter, quality thresholds)."""
        return self.meta.preprocess

    @property
    def onnx_path(self) -> Optional[Path]:
        if self.path is None:
            return None
        p = self.path / BUNDLE_ONNX
        return p if p.is_file() else None

    def smoother(self, smooth: Union[int, str] = 0) -> Smoother:
        """The smoother of this bundle's window labels (``predict --smooth``): ``"hmm"`` = Viterbi with
        the transitions and prior the bundle saved (a UserError when it saved none), an int N = the
        majority filter over N windows (0 or 1: none)."""
        if smooth == "hmm":
            hmm = bundle_hmm(self)
            if hmm is None:
                raise UserError(f"--smooth hmm: bundle {self.path} has no hmm section (transition matrix); "
                                "retrain it with this version's `crossmodal-har train-classifier`, or use "
                                "--smooth majority")
            return StreamingViterbi(*hmm)
        return StreamingSmoother(max(int(smooth), 1), len(self.meta.class_names))


def save_bundle(out_dir: PathLike, model, *, encoder_name: str, encoder_config: Mapping[str, Any],
                head_spec: Mapping[str, Any], preprocess: PreprocessConfig, class_names: List[str],
                metrics: Optional[Mapping[str, Any]] = None,
                provenance: Optional[Mapping[str, Any]] = None,
                hmm: Optional[Mapping[str, Any]] = None,
                nonwear: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model.safetensors`` then ``bundle.json`` (atomically; the JSON last = complete).
    ``bundle.json`` is checked before anything is written. An older ``model.onnx`` in ``out_dir`` is
    removed (an export of other weights would silently disagree).

    Args:
        model: a :class:`~crossmodal_har.models.classifier.WindowClassifier` (``encoder`` + ``head``).
        encoder_name: registry name to rebuild the encoder with ``create_model``.
        encoder_config: the encoder's resolved config (``model.encoder.model_cfg``).
        head_spec: see :func:`crossmodal_har.models.classifier.build_head`.
        hmm: optional ``{"transitions": C x C, "prior": C, ...}`` for ``predict --smooth hmm``.
        nonwear: optional non-wear settings (``NonwearConfig`` fields) that ``predict`` uses by default.

    Returns:
        Path of ``bundle.json``.
    """
    out_dir = Path(out_dir)
    head_spec = dict(head_spec)
    if len(class_names) != int(head_spec["num_classes"]):
        raise ValueError(f"{len(class_names)} class names for a head with {head_spec['num_classes']} outputs")
    meta_path = out_dir / BUNDLE_META
    meta = build_saved(BundleFile, {
        "kind": BUNDLE_KIND,
        "encoder": {"model": encoder_name, "config": dict(encoder_config),
                    "embed_dim": int(getattr(model.encoder, "embed_dim", head_spec["in_features"]))},
        "head": head_spec,
        "preprocess": to_dict(preprocess),
        "class_names": list(class_names),
        "metrics": dict(metrics or {}),
        "provenance": dict(provenance or {}),
        "hmm": None if hmm is None else dict(hmm),
        "nonwear": None if nonwear is None else dict(nonwear),
    }, meta_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = cpu_state_dict(model)
    (out_dir / BUNDLE_ONNX).unlink(missing_ok=True)
    write_weights(out_dir / BUNDLE_WEIGHTS, state, {"format": "pt"})
    return write_saved(meta, meta_path)


def read_bundle(path: PathLike, *, with_model: bool = True) -> Bundle:
    """Read a bundle directory (or its ``bundle.json`` / ``model.safetensors``); with
    ``with_model=False`` only ``bundle.json`` is read and torch is never imported (ONNX runtime)."""
    path = Path(path)
    if path.is_file() and path.name in (BUNDLE_META, BUNDLE_WEIGHTS):
        path = path.parent
    meta_path = path / BUNDLE_META
    if not meta_path.is_file():
        raise UserError(f"{path}: not a classifier bundle (no {BUNDLE_META}); make one with "
                        "`crossmodal-har train-classifier`")
    meta = parse_bundle_file(read_json(meta_path), meta_path)
    bundle = Bundle(model=None, meta=meta, path=path)
    if with_model:
        # lazy: the classifier modules import torch, which the ONNX path (with_model=False) must not
        from crossmodal_har.models.classifier import build_classifier

        weights = path / BUNDLE_WEIGHTS
        with errors_naming(meta_path):
            arch = meta.architecture()
        check_weights_size(meta_path, weights, BUNDLE_META, arch_params(arch), 2 * meta.head.stored_values())
        try:
            model = build_classifier(meta["encoder"], meta["head"], meta.preprocess.normalization,
                                     channels=meta.preprocess.channels)
        except DataError:
            raise
        except UserError as exc:
            raise DataError(meta_path, f"cannot rebuild the classifier: {exc}") from None
        load_state_strict(model, read_weights(weights), weights)
        bundle.model = model.eval()
    return bundle


def load_bundle(path: PathLike) -> Bundle:
    """Rebuild a bundle's model from ``bundle.json`` + ``model.safetensors`` (strict keys)."""
    return read_bundle(path, with_model=True)


def bundle_hmm(bundle: Bundle) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """``(transitions [C, C], prior [C])`` as float64 arrays from a read bundle, or None if it has none."""
    hmm = bundle.meta.hmm
    if hmm is None:
        return None
    return np.asarray(hmm.transitions, np.float64), np.asarray(hmm.prior, np.float64)


def bundle_nonwear(bundle: Bundle) -> Optional[Dict[str, Any]]:
    """The bundle's ``nonwear`` section (non-wear settings predict uses by default), or None."""
    sec = bundle.meta.nonwear
    return None if sec is None else dict(sec)


def weights_digest(path: PathLike) -> str:
    """sha256 of a bundle's ``model.safetensors`` (stored in an exported ONNX file to detect staleness)."""
    h = hashlib.sha256()
    with open(Path(path) / BUNDLE_WEIGHTS, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
