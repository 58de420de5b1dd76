"""A saved encoder: ``encoder.json`` (:class:`EncoderFile`) + ``encoder.safetensors``, written by
:func:`save_encoder` and rebuilt by :func:`load_encoder` with no outside config (nanoGPT style)::

    {"format_version": 1, "model": "patchtst", "config": {...}, "embed_dim": 768, "kind": "imu",
     "preprocess": {...},     # PreprocessConfig as a dict: how windows were made
     "extra": {...}}          # optional, caller-defined (method, run id, seed ...)

Both files are written atomically, the JSON last, so its presence means "complete".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from crossmodal_har.config import from_dict
from crossmodal_har.errors import ConfigError, DataError, UserError
from crossmodal_har.io import PathLike
from crossmodal_har.models.registry import create_model_from_config
from crossmodal_har.models.weights import (arch_embed_dim, arch_params, check_architecture, check_weights_size,
                                           cpu_state_dict, load_state_strict, read_weights, unwrap, write_weights)
from crossmodal_har.saved import (SavedFile, build_saved, errors_naming, json_value, read_saved, short_repr,
                                  write_saved)
from crossmodal_har.signals.types import PreprocessConfig

ENCODER_META = "encoder.json"
ENCODER_WEIGHTS = "encoder.safetensors"


@dataclass
class EncoderFile(SavedFile):
    """``encoder.json``: the registry name and resolved config that rebuild the encoder.

    Attributes:
        model: registry name.
        config: the architecture's resolved config (checked against the registry on load).
        embed_dim: size of the embedding the encoder outputs.
        kind: ``imu`` or ``video`` (None in files that do not say).
        preprocess: the ``PreprocessConfig`` the inputs were made with, as written (keys it lacks
            take the defaults; see :meth:`preprocess_config`).
        extra: caller-defined (method, source, run directory, pretraining seed).
    """

    VERSION = 1
    WHAT = ENCODER_META
    OMIT_IF_NONE = ("kind", "preprocess", "extra")

    model: str
    config: Dict[str, Any]
    embed_dim: int
    kind: Optional[str] = None
    preprocess: Optional[Dict[str, Any]] = None
    extra: Optional[Dict[str, Any]] = None

    def validate(self) -> None:
        if self.kind is not None and self.kind not in ("imu", "video"):
            raise ConfigError(f"kind: {short_repr(self.kind)} is not imu or video")
        if self.embed_dim < 1:
            raise ConfigError(f"embed_dim = {self.embed_dim} is out of range [1, ...]")
        if self.preprocess is not None:
            self.preprocess_config()

    def preprocess_config(self) -> Optional[PreprocessConfig]:
        """The ``PreprocessConfig`` of the ``preprocess`` section (None when the file has none)."""
        if self.preprocess is None:
            return None
        return from_dict(PreprocessConfig, self.preprocess, where="preprocess")

    def architecture(self) -> Any:
        """The architecture dataclass this file names, checked against the registry (nothing built),
        with its ``embed_dim`` agreeing with the file's."""
        arch = check_architecture(self.model, self.config, "encoder", kind=self.kind)
        declared = arch_embed_dim(arch)
        if declared is not None and declared != self.embed_dim:
            raise ConfigError(f"embed_dim {self.embed_dim} does not match its architecture's {declared}")
        return arch


def save_encoder(model, out_dir: PathLike, preprocess: Any, extra: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``out_dir/encoder.safetensors`` and ``out_dir/encoder.json`` (atomically).

    Args:
        model: a registry encoder (has ``model_name``, ``model_cfg``, ``embed_dim``, ``kind``).
            A DDP/compiled wrapper is unwrapped via ``.module`` / ``._orig_mod``.
        out_dir: directory to write into (created).
        preprocess: the ``PreprocessConfig`` (or its dict, written as given) the encoder's inputs
            were made with.
        extra: optional JSON-serialisable dict stored under ``"extra"``.

    Returns:
        Path of ``encoder.json``.
    """
    model = unwrap(model)
    name = getattr(model, "model_name", "")
    cfg = getattr(model, "model_cfg", None)
    if not name or not isinstance(cfg, dict):
        raise ValueError("save_encoder: model has no model_name/model_cfg; build it with models.registry.create_model")
    out_dir = Path(out_dir)
    meta = build_saved(EncoderFile, {"model": name, "config": cfg, "embed_dim": int(model.embed_dim),
                                     "kind": model.kind, "preprocess": json_value(preprocess), "extra": json_value(extra)},
                       out_dir / ENCODER_META)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_weights(out_dir / ENCODER_WEIGHTS, cpu_state_dict(model), {"format": "pt", "model": name})
    return write_saved(meta, out_dir / ENCODER_META)


def find_encoder_dir(path: PathLike) -> Path:
    """The directory holding ``encoder.json``: ``path`` itself, its ``encoder/`` subfolder, or the
    parent of an ``encoder.json`` / ``encoder.safetensors`` file path."""
    p = Path(path)
    if p.is_file() and p.name in (ENCODER_META, ENCODER_WEIGHTS):
        p = p.parent
    if not p.exists():
        raise UserError(f"{p}: no such encoder or run directory")
    for cand in (p, p / "encoder"):
        if (cand / ENCODER_META).is_file():
            return cand
    raise DataError(p, f"no {ENCODER_META} here (expected an encoder directory or a run directory containing one)")


def read_encoder_meta(path: PathLike) -> EncoderFile:
    """The ``encoder.json`` of an encoder or run directory (see :func:`find_encoder_dir`), checked,
    its architecture against the registry too."""
    meta_path = find_encoder_dir(path) / ENCODER_META
    meta = read_saved(EncoderFile, meta_path)
    with errors_naming(meta_path):
        meta.architecture()
    return meta


def load_encoder(path: PathLike, *, map_location: str = "cpu") -> Tuple[Any, EncoderFile]:
    """Rebuild a saved encoder.

    Args:
        path: encoder directory, run directory containing ``encoder.json`` (or ``encoder/``), or the
            ``encoder.json`` file.
        map_location: device for the weights.

    Returns:
        ``(model, meta)``: the encoder in eval mode with the saved weights, and its ``encoder.json``
        (``meta.preprocess_config()`` says how to preprocess inputs).

    Raises:
        DataError: unreadable/invalid files, or weights whose key set or shapes differ from the model's
            (the differing keys are listed; nothing is dropped silently).
    """
    d = find_encoder_dir(path)
    meta_path, weights = d / ENCODER_META, d / ENCODER_WEIGHTS
    meta = read_saved(EncoderFile, meta_path)
    with errors_naming(meta_path):
        arch = meta.architecture()
    check_weights_size(meta_path, weights, "encoder", arch_params(arch))
    try:
        model = create_model_from_config(meta.model, meta.config, where="encoder.config")
    except DataError:
        raise
    except UserError as exc:
        raise DataError(meta_path, f"cannot rebuild encoder: {exc}") from None
    if int(model.embed_dim) != meta.embed_dim:
        raise DataError(meta_path, f"embed_dim {meta.embed_dim} does not match the rebuilt model's {model.embed_dim}")
    load_state_strict(model, read_weights(weights, map_location), weights)
    model.eval()
    return model, meta


def encoder_preprocess(meta: Mapping[str, Any], where: PathLike) -> PreprocessConfig:
    """The ``PreprocessConfig`` an encoder's inputs must be made with (its ``preprocess`` section);
    ``meta`` is an :class:`EncoderFile` or the file's JSON."""
    section = meta.get("preprocess")
    if not isinstance(section, dict):
        raise DataError(where, f"{ENCODER_META} has no 'preprocess' section: cannot preprocess like training did")
    return from_dict(PreprocessConfig, section, where=f"{where}: preprocess")
