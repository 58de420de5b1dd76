"""The classifier bundle: a self-contained directory that classifies raw IMU windows.

Layout of ``MODEL_DIR/``::

    model.safetensors   encoder + head weights (keys ``encoder.*``, ``head.*``)
    bundle.json         everything needed to rebuild and use them (below)
    model.onnx          optional, written by ``crossmodal-har export``

``bundle.json``::

    {
      "format_version": 1,
      "kind": "crossmodal-har-classifier",
      "encoder": {"model": "patchtst-small", "config": {...}, "embed_dim": 64},
      "head": {"type": "linear", "in_features": 64, "num_classes": 6},
      "preprocess": {...},            # PreprocessConfig: rate, window, stride, normalization, ...
      "class_names": ["walking", ...],
      "metrics": {...},               # validation metrics at training time
      "provenance": {...}             # dataset, encoder source, protocol, seed, versions, date
    }

:func:`load_bundle` needs nothing else (no dataset, no run directory) and loads weights with strict
key matching: a missing or unexpected key is an error naming the keys, never a silent partial load.
The model maps windows in *physical units* [B, W, 6] (g, rad/s) to logits; the bundle's
normalisation runs inside ``forward`` so that ONNX export carries it too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.io import atomic_write, atomic_write_json, read_json
from crossmodal_har.signals.types import PreprocessConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
BUNDLE_KIND = "crossmodal-har-classifier"
WEIGHTS_NAME = "model.safetensors"
META_NAME = "bundle.json"
ONNX_NAME = "model.onnx"

PathLike = Union[str, "os.PathLike[str]"]


def build_head(spec: Mapping[str, Any]):
    """Build an (untrained) classification head from its JSON spec; weights come from the bundle.

    Types (the heads :func:`crossmodal_har.evaluate.protocols.fit_protocol` makes):
    ``linear`` (``nn.Linear``; finetune, supervised), ``standardized-linear`` (linear on
    standardised embeddings; linear-probe), ``knn`` (cosine vote against ``bank_size`` stored
    training embeddings, ``k``, ``temperature``). All need ``in_features`` and ``num_classes``.
    """
    import numpy as np
    import torch.nn as nn

    from crossmodal_har.evaluate.protocols import KnnHead, StandardizedLinear

    kind = spec.get("type")
    try:
        d, c = int(spec["in_features"]), int(spec["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"head spec needs in_features and num_classes: {dict(spec)}") from None
    if kind == "linear":
        return nn.Linear(d, c)
    if kind == "standardized-linear":
        return StandardizedLinear(np.zeros(d, np.float32), np.ones(d, np.float32), c)
    if kind == "knn":
        n = int(spec["bank_size"])
        return KnnHead(np.zeros((n, d), np.float32), np.arange(n) % c, c, int(spec["k"]),
                       float(spec["temperature"]))
    raise UserError(f"unknown head type {kind!r} (expected linear | standardized-linear | knn)")


def head_spec(head, n_classes: int) -> Dict[str, Any]:
    """The JSON spec that :func:`build_head` turns back into a head of the same shape."""
    import torch.nn as nn

    from crossmodal_har.evaluate.protocols import KnnHead, StandardizedLinear

    if isinstance(head, StandardizedLinear):
        return {"type": "standardized-linear", "in_features": int(head.linear.in_features),
                "num_classes": int(n_classes)}
    if isinstance(head, KnnHead):
        return {"type": "knn", "in_features": int(head.bank.shape[1]), "num_classes": int(n_classes),
                "bank_size": int(head.bank.shape[0]), "k": int(head.k), "temperature": float(head.temperature)}
    if isinstance(head, nn.Linear):
        return {"type": "linear", "in_features": int(head.in_features), "num_classes": int(n_classes)}
    raise TypeError(f"cannot describe head of type {type(head).__name__} in a bundle")


def make_classifier(encoder, head, normalization: str):
    """Encoder + head as one module, physical windows -> logits (normalisation inside ``forward``).

    This is the evaluation harness's ``WindowClassifier``, so a fitted classifier is saved as is.
    """
    from crossmodal_har.evaluate.protocols import WindowClassifier

    return WindowClassifier(encoder, head, normalization)


@dataclass
class Bundle:
    """A loaded classifier bundle.

    Attributes:
        model: ``nn.Module`` in eval mode, physical windows [B, W, 6] -> logits [B, C].
        class_names: label of each logit.
        preprocess: how windows must be made (rate, window, stride, filter, quality thresholds).
        meta: the full ``bundle.json``.
        path: the bundle directory.
    """

    model: Any
    class_names: List[str]
    preprocess: PreprocessConfig
    meta: Dict[str, Any] = field(default_factory=dict)
    path: Optional[Path] = None

    @property
    def onnx_path(self) -> Optional[Path]:
        if self.path is None:
            return None
        p = self.path / ONNX_NAME
        return p if p.is_file() else None


def save_bundle(out_dir: PathLike, model, *, encoder_name: str, encoder_config: Mapping[str, Any],
                head_spec: Mapping[str, Any], preprocess: PreprocessConfig, class_names: List[str],
                metrics: Optional[Mapping[str, Any]] = None,
                provenance: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model.safetensors`` then ``bundle.json`` (atomically; the JSON last = complete).

    Args:
        model: a module made by :func:`make_classifier` (``encoder`` + ``head`` submodules).
        encoder_name: registry name to rebuild the encoder with ``create_model``.
        encoder_config: the encoder's resolved config (``model.encoder.model_cfg``).
        head_spec: see :func:`build_head`.
    """
    from safetensors.torch import save_file

    from crossmodal_har.config import to_dict

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    head_spec = dict(head_spec)
    if len(class_names) != int(head_spec["num_classes"]):
        raise ValueError(f"{len(class_names)} class names for a head with {head_spec['num_classes']} outputs")
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    stale = out_dir / ONNX_NAME
    if stale.exists():  # an export of older weights would silently disagree
        stale.unlink()
    atomic_write(out_dir / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": BUNDLE_KIND,
        "encoder": {"model": encoder_name, "config": dict(encoder_config),
                    "embed_dim": int(getattr(model.encoder, "embed_dim", head_spec["in_features"]))},
        "head": dict(head_spec),
        "preprocess": to_dict(preprocess),
        "class_names": list(class_names),
        "metrics": dict(metrics or {}),
        "provenance": dict(provenance or {}),
    }
    return atomic_write_json(out_dir / META_NAME, meta)


def read_bundle(path: PathLike, *, with_model: bool = True) -> Bundle:
    """Read a bundle; with ``with_model=False`` only ``bundle.json`` is read (no torch import), for
    the ONNX runtime. See :func:`load_bundle`."""
    from crossmodal_har.config import from_dict

    path = Path(path)
    if path.is_file() and path.name in (META_NAME, WEIGHTS_NAME):
        path = path.parent
    meta_path = path / META_NAME
    if not meta_path.is_file():
        raise UserError(f"{path}: not a classifier bundle (no {META_NAME}); make one with "
                        "`crossmodal-har train-classifier`")
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("kind") != BUNDLE_KIND:
        raise DataError(meta_path, f"not a classifier bundle (kind must be {BUNDLE_KIND!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(meta_path, f"unsupported bundle format_version {meta.get('format_version')!r} "
                                   f"(this version reads {FORMAT_VERSION})")
    for key in ("encoder", "head", "preprocess", "class_names"):
        if key not in meta:
            raise DataError(meta_path, f"missing key {key!r}")
    preprocess = from_dict(PreprocessConfig, meta["preprocess"], where=f"{meta_path}:preprocess")
    class_names = [str(c) for c in meta["class_names"]]
    if len(class_names) != int(meta["head"]["num_classes"]):
        raise DataError(meta_path, f"{len(class_names)} class names but the head has "
                                   f"{meta['head']['num_classes']} outputs")
    bundle = Bundle(model=None, class_names=class_names, preprocess=preprocess, meta=meta, path=path)
    if with_model:
        bundle.model = _load_model(path, meta, preprocess)
    return bundle


def load_bundle(path: PathLike) -> Bundle:
    """Rebuild a bundle's model from ``bundle.json`` + ``model.safetensors`` (strict keys)."""
    return read_bundle(path, with_model=True)


def weights_digest(path: PathLike) -> str:
    """sha256 of a bundle's ``model.safetensors`` (stored in an exported ONNX file to detect staleness)."""
    import hashlib

    h = hashlib.sha256()
    with open(Path(path) / WEIGHTS_NAME, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load_model(path: Path, meta: Dict[str, Any], preprocess: PreprocessConfig):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from crossmodal_har.models.registry import create_model

    enc = meta["encoder"]
    encoder = create_model(enc["model"], **dict(enc.get("config") or {}))
    head = build_head(meta["head"])
    model = make_classifier(encoder, head, preprocess.normalization)
    wpath = path / WEIGHTS_NAME
    if not wpath.is_file():
        raise DataError(wpath, "weights file missing")
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError) as exc:
        raise DataError(wpath, f"cannot read weights ({exc})") from None
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        def show(keys: List[str]) -> str:
            return ", ".join(keys[:8]) + (" …" if len(keys) > 8 else "")
        raise DataError(wpath, f"weights do not match the architecture in {META_NAME}: "
                               f"missing {len(missing)} [{show(missing)}], unexpected {len(unexpected)} "
                               f"[{show(unexpected)}]")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shape mismatch
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise DataError(wpath, f"weights do not fit the architecture: {' '.join(lines[:2])}") from None
    model.eval()
    return model
