"""Saving and loading an encoder on its own: ``encoder.safetensors`` + ``encoder.json``.

``encoder.json``::

    {
      "format_version": 1,
      "model": "patchtst",                # registry name
      "config": {...},                    # resolved architecture config (create_model overrides)
      "embed_dim": 768,
      "kind": "imu",
      "preprocess": {...},                # PreprocessConfig as a dict: how windows were made
      "extra": {...}                      # optional, caller-defined (method, run id, …)
    }

The pair rebuilds the encoder with no outside config (nanoGPT style): ``load_encoder`` creates the
model from name + config and loads the weights with strict key matching. Weights are safetensors
(no pickle); both files are written atomically, the JSON last so its presence means "complete".
"""

from __future__ import annotations

import dataclasses
import os
import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.io import atomic_write, atomic_write_json, read_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS_NAME = "encoder.safetensors"
META_NAME = "encoder.json"

PathLike = Union[str, "os.PathLike[str]"]


def _plain(obj: Any) -> Any:
    if obj is None:
        return None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        from crossmodal_har.config import to_dict

        return to_dict(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"expected a dict or a config dataclass, got {type(obj).__name__}")


def encoder_state_dict(model) -> Dict[str, Any]:
    """The model's state dict as contiguous CPU tensors that safetensors can write."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_encoder(model, out_dir: PathLike, preprocess: Any, extra: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``out_dir/encoder.safetensors`` and ``out_dir/encoder.json`` (atomically).

    Args:
        model: a registry encoder (has ``model_name``, ``model_cfg``, ``embed_dim``, ``kind``).
            A DDP/compiled wrapper is unwrapped via ``.module`` / ``._orig_mod``.
        out_dir: directory to write into (created).
        preprocess: the ``PreprocessConfig`` (or its dict) the encoder's inputs were made with.
        extra: optional JSON-serialisable dict stored under ``"extra"``.

    Returns:
        Path of ``encoder.json``.
    """
    from safetensors.torch import save_file

    model = unwrap(model)
    name = getattr(model, "model_name", "")
    cfg = getattr(model, "model_cfg", None)
    if not name or not isinstance(cfg, dict):
        raise ValueError("save_encoder: model has no model_name/model_cfg; build it with models.registry.create_model")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = encoder_state_dict(model)
    atomic_write(out_dir / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"format": "pt", "model": name}))
    meta: Dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": name,
        "config": cfg,
        "embed_dim": int(model.embed_dim),
        "kind": model.kind,
        "preprocess": _plain(preprocess),
    }
    if extra is not None:
        meta["extra"] = _plain(extra)
    return atomic_write_json(out_dir / META_NAME, meta)


def unwrap(model):
    """Strip DistributedDataParallel (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif type(model).__name__ in ("DistributedDataParallel", "DataParallel") and hasattr(model, "module"):
            model = model.module
        else:
            return model


def find_encoder_dir(path: PathLike) -> Path:
    """The directory holding ``encoder.json``: ``path`` itself, its ``encoder/`` subfolder, or the
    parent of an ``encoder.json`` / ``encoder.safetensors`` file path."""
    p = Path(path)
    if p.is_file() and p.name in (META_NAME, WEIGHTS_NAME):
        p = p.parent
    if not p.exists():
        raise UserError(f"{p}: no such encoder or run directory")
    for cand in (p, p / "encoder"):
        if (cand / META_NAME).is_file():
            return cand
    raise DataError(p, f"no {META_NAME} here (expected an encoder directory or a run directory containing one)")


def load_encoder(path: PathLike, *, map_location: str = "cpu") -> Tuple[Any, Dict[str, Any]]:
    """Rebuild a saved encoder.

    Args:
        path: encoder directory, run directory containing ``encoder.json`` (or ``encoder/``), or the
            ``encoder.json`` file.
        map_location: device for the weights.

    Returns:
        ``(model, meta)``: the encoder in eval mode with the saved weights, and the ``encoder.json``
        dict (``meta["preprocess"]`` says how to preprocess inputs).

    Raises:
        DataError: unreadable/invalid files, or weights whose key set or shapes differ from the model's
            (the differing keys are listed; nothing is dropped silently).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from crossmodal_har.models.registry import create_model

    d = find_encoder_dir(path)
    meta_path = d / META_NAME
    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        raise DataError(meta_path, "expected a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(meta_path, f"unsupported format_version {version!r} (this version reads {FORMAT_VERSION})")
    for key, typ in (("model", str), ("config", dict), ("embed_dim", int)):
        if not isinstance(meta.get(key), typ):
            raise DataError(meta_path, f"missing or invalid {key!r}")
    try:
        model = create_model(meta["model"], **meta["config"])
    except UserError as exc:
        raise DataError(meta_path, f"cannot rebuild encoder: {exc}") from None
    if int(model.embed_dim) != meta["embed_dim"]:
        raise DataError(meta_path, f"embed_dim {meta['embed_dim']} does not match the rebuilt model's {model.embed_dim}")
    weights = d / WEIGHTS_NAME
    if not weights.is_file():
        raise DataError(weights, "weights file missing")
    try:
        state = load_file(str(weights), device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(weights, f"unreadable safetensors file: {exc}") from None
    load_state_strict(model, state, weights)
    model.eval()
    return model, meta


def load_state_strict(model, state: Mapping[str, Any], source: Optional[PathLike] = None) -> None:
    """``model.load_state_dict(state)`` but every missing/unexpected key or shape mismatch is an error
    naming the keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shape)):
        if keys:
            shown = ", ".join(keys[:15]) + (f" … ({len(keys)} in all)" if len(keys) > 15 else "")
            problems.append(f"{what} keys: {shown}")
    if problems:
        raise DataError(source, "weights do not match the model: " + "; ".join(problems))
    model.load_state_dict(dict(state), strict=True)
