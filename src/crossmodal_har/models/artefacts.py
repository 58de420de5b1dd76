"""Every persisted model of the package: three formats, their file names, one strict loader.

Each format is a directory holding a safetensors weights file (no pickle) and a JSON file that is
enough to rebuild the module with no outside config (nanoGPT style). Both files are written
atomically, the JSON last, so its presence means "complete". Every reader loads weights through
:func:`load_state_strict`: a missing, unexpected or mis-shaped key is an error naming the keys,
never a silent partial load.

**Encoder** (``encoder.json`` + ``encoder.safetensors``; :func:`save_encoder`, :func:`load_encoder`)::

    {"format_version": 1, "model": "patchtst", "config": {...}, "embed_dim": 768, "kind": "imu",
     "preprocess": {...},     # PreprocessConfig as a dict: how windows were made
     "extra": {...}}          # optional, caller-defined (method, run id, ...)

**Pretraining run** (``model.json`` + ``model.safetensors`` in a run directory, beside the encoder;
:func:`save_run_model`, :func:`load_run_model`): the whole method (towers, heads, loss temperature)
for zero-shot evaluation::

    {"format_version": 1, "method": "siglip", "config": {...PretrainConfig...}, "data": {...},
     "architecture": {...}, "split": {...}, "data_meta": {...}}

The method's code lives in ``train/`` (which builds on ``models/``), so the caller hands
:func:`load_run_model` the function that rebuilds the untrained method from ``model.json``.

**Classifier bundle** (``MODEL_DIR/``: ``bundle.json`` + ``model.safetensors`` [+ ``model.onnx``];
:func:`save_bundle`, :func:`read_bundle`, :func:`load_bundle`)::

    {"format_version": 1, "kind": "crossmodal-har-classifier",
     "encoder": {"model": "patchtst-small", "config": {...}, "embed_dim": 64},
     "head": {"type": "linear", "in_features": 64, "num_classes": 6},
     "preprocess": {...},            # PreprocessConfig: rate, window, stride, normalization, ...
     "class_names": ["walking", ...],
     "metrics": {...},               # validation metrics at training time
     "provenance": {...},            # dataset, encoder source, protocol, seed, versions, date
     "hmm": {"transitions": [[...]], "prior": [...], ...},  # optional: --smooth hmm (C x C, C)
     "nonwear": {"std_g": 0.013, "range_g": 0.05, ...}}     # optional: predict's non-wear defaults

A bundle's model maps windows in *physical units* [B, W, 6] (g, rad/s) to logits; its normalisation
runs inside ``forward`` so that ONNX export carries it too. ``read_bundle(with_model=False)`` reads
only ``bundle.json`` and never imports torch (the ONNX runtime's path).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from crossmodal_har.config import from_dict, to_dict
from crossmodal_har.errors import DataError, UserError
from crossmodal_har.io import atomic_write, atomic_write_json, read_json
from crossmodal_har.models.registry import architecture_config, create_model_from_config, model_kind
from crossmodal_har.signals.text import short_number
from crossmodal_har.signals.types import PreprocessConfig

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

ENCODER_FORMAT_VERSION = 1
ENCODER_META = "encoder.json"
ENCODER_WEIGHTS = "encoder.safetensors"

RUN_FORMAT_VERSION = 1
RUN_META = "model.json"
RUN_WEIGHTS = "model.safetensors"

BUNDLE_FORMAT_VERSION = 1
BUNDLE_KIND = "crossmodal-har-classifier"
BUNDLE_META = "bundle.json"
BUNDLE_WEIGHTS = "model.safetensors"
BUNDLE_ONNX = "model.onnx"


# --------------------------------------------------------------------------- weights, strict loading

def unwrap(model):
    """Strip DistributedDataParallel (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif type(model).__name__ in ("DistributedDataParallel", "DataParallel") and hasattr(model, "module"):
            model = model.module
        else:
            return model


def cpu_state_dict(model) -> Dict[str, Any]:
    """The model's state dict as contiguous CPU tensors that safetensors can write."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _write_weights(path: Path, state: Mapping[str, Any], metadata: Mapping[str, str]) -> None:
    from safetensors.torch import save_file

    atomic_write(path, lambda p: save_file(dict(state), str(p), metadata=dict(metadata)))


def read_weights(path: Path, map_location: str = "cpu") -> Dict[str, Any]:
    """A safetensors file as a state dict; a missing or unreadable file is a :class:`DataError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise DataError(path, "weights file missing")
    try:
        return load_file(str(path), device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(path, f"unreadable safetensors file: {exc}") from None


def load_state_strict(model, state: Mapping[str, Any], source: Optional[PathLike] = None) -> None:
    """``model.load_state_dict(state)``, but every missing or unexpected key and every shape
    mismatch is a :class:`DataError` naming the keys (``missing 1 [head.bias]``)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shape)):
        if keys:
            shown = ", ".join(keys[:15]) + (" …" if len(keys) > 15 else "")
            problems.append(f"{what} {len(keys)} [{shown}]")
    if problems:
        raise DataError(source, "weights do not match the model: " + "; ".join(problems))
    model.load_state_dict(dict(state), strict=True)


def _plain(obj: Any) -> Any:
    if obj is None:
        return None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_dict(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"expected a dict or a config dataclass, got {type(obj).__name__}")


def _read_meta(path: Path) -> Dict[str, Any]:
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise DataError(path, "expected a JSON object")
    return meta


# --------------------------------------------------------------------------- schemas (files are data)
#
# Every JSON file here is validated against its schema before any model is built: allowed keys only,
# typed values in bounded ranges, the encoder's ``config`` only with its architecture's own fields
# (sizes bounded by that architecture's ``validate``). Loading keys (``pretrained``,
# ``allow_download``...) are refused: only the command line decides whether weights are fetched.

MAX_CLASSES = 10_000
MAX_HEAD_ELEMENTS = 1 << 30  # a head's stored values (kNN bank + one-hot labels): 4 GiB of float32

ENCODER_KEYS = ("format_version", "model", "config", "embed_dim", "kind", "preprocess", "extra")
BUNDLE_KEYS = ("format_version", "kind", "encoder", "head", "preprocess", "class_names", "metrics", "provenance",
               "hmm", "nonwear")
HMM_KEYS = ("transitions", "prior", "pseudo_count", "sequences", "transitions_counted", "source")
MAX_HMM_CLASSES = 1024  # C x C numbers in JSON: at most ~1 M
BUNDLE_ENCODER_KEYS = ("model", "config", "embed_dim")
HEAD_KEYS = {"linear": ("type", "in_features", "num_classes"),
             "standardized-linear": ("type", "in_features", "num_classes"),
             "knn": ("type", "in_features", "num_classes", "bank_size", "k", "temperature")}
RUN_KEYS = ("format_version", "method", "config", "data", "architecture", "split", "data_meta")


def _type_name(v: Any) -> str:
    return "null" if v is None else {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(v), "number")


def _object(value: Any, path: Path, where: str, allowed: Optional[Tuple[str, ...]] = None,
            required: Tuple[str, ...] = ()) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(path, f"{where}: expected a JSON object, got {_type_name(value)}")
    if allowed is not None:
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            shown = ", ".join(repr(k[:40]) for k in unknown[:5])
            raise DataError(path, f"{where}: unknown key(s) {shown}; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in value:
            raise DataError(path, f"{where}: missing key {key!r}")
    return value


def _int(value: Any, path: Path, where: str, lo: int, hi: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(path, f"{where}: expected an integer, got {_type_name(value)}")
    if value < lo or (hi is not None and value > hi):
        raise DataError(path, f"{where} = {short_number(value)} is out of range [{lo}, {'...' if hi is None else hi}]")
    return value


def _str(value: Any, path: Path, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise DataError(path, f"{where}: expected a non-empty string, got {_type_name(value)}")
    return value


def check_architecture(model: Any, config: Any, path: Path, where: str, kind: Optional[str] = None) -> Any:
    """The architecture dataclass of a persisted ``{model, config}`` pair, checked (nothing built):
    a registered name (of ``kind`` when given) and a config with only its fields, in range."""
    name = _str(model, path, f"{where}.model")
    try:
        actual = model_kind(name)
        if kind is not None and actual != kind:
            raise DataError(path, f"{where}.model: {name!r} is a {actual} encoder, expected an {kind} encoder")
        return architecture_config(name, config, where=f"{where}.config")
    except DataError:
        raise
    except UserError as exc:  # unknown model, a key outside the schema, a size out of range
        raise DataError(path, str(exc)) from None


def _preprocess(value: Any, path: Path, where: str = "preprocess") -> PreprocessConfig:
    try:
        return from_dict(PreprocessConfig, _object(value, path, where), where=where)
    except DataError:
        raise
    except (UserError, TypeError, ValueError, OverflowError) as exc:
        raise DataError(path, str(exc) if isinstance(exc, UserError) else f"{where}: {exc}") from None


def _arch_embed_dim(arch: Any) -> Optional[int]:
    """The embedding size an architecture config declares (``embed_dim``), or None if it has none."""
    value = getattr(arch, "embed_dim", None)
    return None if value is None else int(value)


def _arch_params(arch: Any) -> int:
    """An architecture config's lower-bound parameter count (``approx_parameters()``), 0 if unknown."""
    fn = getattr(arch, "approx_parameters", None)
    return int(fn()) if callable(fn) else 0


def check_bundle_meta(meta: Any, path: Path, *, architecture_too: bool = True) -> Tuple[PreprocessConfig, List[str]]:
    """Validate a ``bundle.json`` against its schema; returns ``(preprocess, class_names)``.

    ``architecture_too=False`` skips the encoder's architecture check (it needs the registry, which
    imports torch; the ONNX runtime builds no encoder)."""
    meta = _object(meta, path, "bundle.json")
    if meta.get("kind") != BUNDLE_KIND:
        raise DataError(path, f"not a classifier bundle (kind must be {BUNDLE_KIND!r})")
    if meta.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise DataError(path, f"unsupported bundle format_version {_short_repr(meta.get('format_version'))} "
                              f"(this version reads {BUNDLE_FORMAT_VERSION})")
    _object(meta, path, "bundle.json", BUNDLE_KEYS, ("encoder", "head", "preprocess", "class_names"))
    enc = _object(meta["encoder"], path, "encoder", BUNDLE_ENCODER_KEYS, ("model", "config"))
    _object(enc["config"], path, "encoder.config")
    _str(enc["model"], path, "encoder.model")
    embed_dim = None
    if architecture_too:
        arch = check_architecture(enc["model"], enc["config"], path, "encoder", kind="imu")
        embed_dim = _arch_embed_dim(arch)
    if "embed_dim" in enc:
        declared = _int(enc["embed_dim"], path, "encoder.embed_dim", 1)
        if embed_dim is not None and declared != embed_dim:
            raise DataError(path, f"encoder.embed_dim {declared} does not match its architecture's {embed_dim}")
        embed_dim = declared
    head = _object(meta["head"], path, "head")
    kind = head.get("type")
    if not isinstance(kind, str) or kind not in HEAD_KEYS:
        raise DataError(path, f"head.type: {_short_repr(kind)} is not one of {', '.join(HEAD_KEYS)}")
    _object(head, path, "head", HEAD_KEYS[kind], HEAD_KEYS[kind])
    d = _int(head["in_features"], path, "head.in_features", 1, 1 << 20)
    if embed_dim is not None and d != embed_dim:
        raise DataError(path, f"head.in_features {d} does not match the encoder's embed_dim {embed_dim}")
    c = _int(head["num_classes"], path, "head.num_classes", 1, MAX_CLASSES)
    if kind == "knn":
        n = _int(head["bank_size"], path, "head.bank_size", 1)
        if n * (d + c) > MAX_HEAD_ELEMENTS:
            raise DataError(path, f"head.bank_size {short_number(n)} x (in_features + num_classes) = "
                                  f"{short_number(n * (d + c))} values, more than {short_number(MAX_HEAD_ELEMENTS)}")
        _int(head["k"], path, "head.k", 1, n)
        t = head["temperature"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise DataError(path, "head.temperature: expected a finite number > 0")
    preprocess = _preprocess(meta["preprocess"], path)
    names = meta["class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(path, "class_names: expected a list of strings")
    if len(names) != c:
        raise DataError(path, f"{len(names)} class names but the head has {c} outputs")
    if len(set(names)) != len(names):
        raise DataError(path, "class_names: names must be unique")
    for key in ("metrics", "provenance"):
        if key in meta:
            _object(meta[key], path, key)
    if "hmm" in meta:
        check_hmm(meta["hmm"], path, c)
    if "nonwear" in meta:
        check_nonwear(meta["nonwear"], path)
    return preprocess, list(names)


def check_nonwear(value: Any, path: Path) -> Dict[str, Any]:
    """A bundle's optional ``nonwear`` section: the non-wear detector settings ``predict`` uses unless
    its flags override them (an object of JSON scalars; its keys and ranges are checked against
    ``crossmodal_har.infer.nonwear.NonwearConfig`` by :func:`crossmodal_har.config.from_dict` where
    predict builds the config)."""
    sec = _object(value, path, "nonwear")
    for k, v in sec.items():
        if isinstance(v, (dict, list)) or (isinstance(v, float) and not math.isfinite(v)):
            raise DataError(path, f"nonwear.{k}: expected a finite number, string or boolean")
    return sec


def _probabilities(value: Any, path: Path, where: str, n: int) -> List[float]:
    """A list of ``n`` finite numbers in [0, 1] that sums to 1 (within 1e-6)."""
    if not isinstance(value, list) or len(value) != n:
        got = f"{len(value)} entries" if isinstance(value, list) else _type_name(value)
        raise DataError(path, f"{where}: expected a list of {n} numbers, got {got}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise DataError(path, f"{where}: expected finite numbers")
    if not all(0.0 <= v <= 1.0 for v in value):
        raise DataError(path, f"{where}: probabilities must lie in [0, 1]")
    if abs(math.fsum(value) - 1.0) > 1e-6:
        raise DataError(path, f"{where}: must sum to 1, sums to {math.fsum(value):.6g}")
    return [float(v) for v in value]


def check_hmm(value: Any, path: Path, n_classes: int) -> Tuple[List[List[float]], List[float]]:
    """Validate a bundle's ``hmm`` section: ``transitions`` C x C (rows sum to 1), ``prior`` C."""
    hmm = _object(value, path, "hmm", HMM_KEYS, ("transitions", "prior"))
    c = int(n_classes)
    if c > MAX_HMM_CLASSES:
        raise DataError(path, f"hmm: {c} classes, more than {MAX_HMM_CLASSES}")
    rows = hmm["transitions"]
    if not isinstance(rows, list) or len(rows) != c:
        raise DataError(path, f"hmm.transitions: expected a {c} x {c} matrix (one row per class)")
    trans = [_probabilities(r if isinstance(r, list) else None, path, f"hmm.transitions[{i}] (of {c} x {c})", c)
             for i, r in enumerate(rows)]
    prior = _probabilities(hmm["prior"], path, "hmm.prior", c)
    if "pseudo_count" in hmm:
        pc = hmm["pseudo_count"]
        if isinstance(pc, bool) or not isinstance(pc, (int, float)) or not math.isfinite(pc) or pc < 0:
            raise DataError(path, "hmm.pseudo_count: expected a finite number >= 0")
    for key in ("sequences", "transitions_counted"):
        if key in hmm:
            _int(hmm[key], path, f"hmm.{key}", 0)
    if "source" in hmm:
        _str(hmm["source"], path, "hmm.source")
    return trans, prior


def _short_repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def check_encoder_meta(meta: Any, path: Path) -> Any:
    """Validate an ``encoder.json`` against its schema; returns the architecture dataclass."""
    meta = _object(meta, path, ENCODER_META)
    version = meta.get("format_version")
    if version != ENCODER_FORMAT_VERSION:
        raise DataError(path, f"unsupported format_version {_short_repr(version)} (this version reads "
                              f"{ENCODER_FORMAT_VERSION})")
    _object(meta, path, ENCODER_META, ENCODER_KEYS, ("model", "config", "embed_dim"))
    kind = meta.get("kind")
    if kind is not None and kind not in ("imu", "video"):
        raise DataError(path, f"kind: {_short_repr(kind)} is not imu or video")
    arch = check_architecture(meta["model"], meta["config"], path, "encoder", kind=kind)
    declared = _int(meta["embed_dim"], path, "embed_dim", 1)
    if _arch_embed_dim(arch) is not None and declared != _arch_embed_dim(arch):
        raise DataError(path, f"embed_dim {declared} does not match its architecture's {_arch_embed_dim(arch)}")
    if "preprocess" in meta:
        _preprocess(meta["preprocess"], path)
    if "extra" in meta:
        _object(meta["extra"], path, "extra")
    return arch


def check_run_meta(meta: Any, path: Path) -> Dict[str, Any]:
    """Validate a run's ``model.json`` against its schema (the method's own ``config`` section is
    checked by the ``build`` function :func:`load_run_model` is handed)."""
    meta = _object(meta, path, RUN_META)
    version = meta.get("format_version")
    if version != RUN_FORMAT_VERSION:
        raise DataError(path, f"unsupported format_version {_short_repr(version)} (this version reads "
                              f"{RUN_FORMAT_VERSION})")
    _object(meta, path, RUN_META, RUN_KEYS, ("method",))
    _str(meta["method"], path, "method")
    for key in ("config", "data"):
        if key in meta:
            _object(meta[key], path, key)
    if "architecture" not in meta:
        return meta
    arch = _object(meta["architecture"], path, "architecture", ("imu_encoder", "video_encoder"), ("imu_encoder",))
    for key, kind in (("imu_encoder", "imu"), ("video_encoder", "video")):
        sec = arch.get(key)
        if sec is None and key == "video_encoder":
            continue
        sec = _object(sec, path, f"architecture.{key}", ("model", "config"), ("model", "config"))
        check_architecture(sec["model"], sec["config"], path, f"architecture.{key}", kind=kind)
    return meta


def check_weights_size(meta_path: Path, weights: Path, what: str, parameters: int, head_bytes: int = 0) -> None:
    """Before building: a file of a few bytes cannot make us allocate gigabytes. The architecture's
    lower-bound parameter count (at 2 bytes each, allowing half precision) plus ``head_bytes`` must
    fit in the weights file that will fill them."""
    if not weights.is_file():
        raise DataError(weights, "weights file missing")
    size = weights.stat().st_size
    need = 2 * int(parameters) + int(head_bytes)
    if need > size:
        raise DataError(meta_path, f"{what} declares about {short_number(need)} bytes of weights but {weights.name} holds "
                                   f"{size}: the architecture does not match the weights")


def _without_loading_options(meta: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of ``model.json`` whose method config cannot load or download weights: a rebuilt run
    takes its architecture from ``architecture`` and its weights from ``model.safetensors``."""
    out = dict(meta)
    cfg = dict(out.get("config") or {})
    for key in list(cfg):
        if key == "allow_download":
            cfg[key] = False
        elif key == "pretrained" or key.endswith("_pretrained"):
            cfg[key] = None
    out["config"] = cfg
    return out


# --------------------------------------------------------------------------- encoder

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
    model = unwrap(model)
    name = getattr(model, "model_name", "")
    cfg = getattr(model, "model_cfg", None)
    if not name or not isinstance(cfg, dict):
        raise ValueError("save_encoder: model has no model_name/model_cfg; build it with models.registry.create_model")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_weights(out_dir / ENCODER_WEIGHTS, cpu_state_dict(model), {"format": "pt", "model": name})
    meta: Dict[str, Any] = {
        "format_version": ENCODER_FORMAT_VERSION,
        "model": name,
        "config": cfg,
        "embed_dim": int(model.embed_dim),
        "kind": model.kind,
        "preprocess": _plain(preprocess),
    }
    if extra is not None:
        meta["extra"] = _plain(extra)
    return atomic_write_json(out_dir / ENCODER_META, meta)


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


def read_encoder_meta(path: PathLike) -> Dict[str, Any]:
    """The ``encoder.json`` of an encoder or run directory (see :func:`find_encoder_dir`), checked."""
    meta_path = find_encoder_dir(path) / ENCODER_META
    meta = _read_meta(meta_path)
    check_encoder_meta(meta, meta_path)
    return meta


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
    d = find_encoder_dir(path)
    meta = read_encoder_meta(d)
    meta_path = d / ENCODER_META
    arch = check_encoder_meta(meta, meta_path)
    check_weights_size(meta_path, d / ENCODER_WEIGHTS, "encoder", _arch_params(arch))
    try:
        model = create_model_from_config(meta["model"], meta["config"], where="encoder.config")
    except DataError:
        raise
    except UserError as exc:
        raise DataError(meta_path, f"cannot rebuild encoder: {exc}") from None
    if int(model.embed_dim) != meta["embed_dim"]:
        raise DataError(meta_path, f"embed_dim {meta['embed_dim']} does not match the rebuilt model's {model.embed_dim}")
    weights = d / ENCODER_WEIGHTS
    load_state_strict(model, read_weights(weights, map_location), weights)
    model.eval()
    return model, meta


def encoder_preprocess(meta: Mapping[str, Any], where: PathLike) -> PreprocessConfig:
    """The ``PreprocessConfig`` an encoder's inputs must be made with (its ``preprocess`` section)."""
    if not isinstance(meta.get("preprocess"), dict):
        raise DataError(where, f"{ENCODER_META} has no 'preprocess' section: cannot preprocess like training did")
    return from_dict(PreprocessConfig, meta["preprocess"], where=f"{where}: preprocess")


# --------------------------------------------------------------------------- pretraining run

def save_run_model(model, run_dir: PathLike, meta: Mapping[str, Any]) -> Path:
    """Write a run's whole method: ``run_dir/model.safetensors`` then ``run_dir/model.json``.

    Args:
        model: the method module (DDP/compiled wrappers are unwrapped).
        meta: ``method``, ``config``, ``data``, ``architecture``, ``split``, ``data_meta`` (see the
            module docstring); ``format_version`` is added here.

    Returns:
        Path of ``model.json``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_weights(run_dir / RUN_WEIGHTS, cpu_state_dict(unwrap(model)), {"format": "pt"})
    return atomic_write_json(run_dir / RUN_META, {"format_version": RUN_FORMAT_VERSION, **meta})


def read_run_meta(run_dir: PathLike) -> Dict[str, Any]:
    """A finished run's ``model.json`` (a :class:`UserError` when the run has none yet)."""
    run_dir = Path(run_dir)
    meta_path = run_dir / RUN_META
    if not meta_path.is_file():
        raise UserError(f"{run_dir}: not a finished pretraining run (no {RUN_META}); "
                        "run `crossmodal-har pretrain` (or --resume it) first")
    return check_run_meta(_read_meta(meta_path), meta_path)


def load_run_model(run_dir: PathLike, build: Callable[[Dict[str, Any], Path], Any],
                   device: str = "cpu") -> Tuple[Any, Dict[str, Any]]:
    """Rebuild a pretraining run's full method from ``model.json`` + ``model.safetensors``.

    Args:
        build: ``build(meta, meta_path)`` returns the untrained method ``model.json`` describes
            (the method's code is ``train``'s; this module reads the files and loads the weights,
            strictly); ``meta_path`` is for its error messages.
        device: where the loaded model is moved.

    Returns:
        ``(model, meta)``, the model in eval mode.
    """
    run_dir = Path(run_dir)
    meta = read_run_meta(run_dir)
    arch = meta.get("architecture")
    if isinstance(arch, dict):
        params = sum(_arch_params(check_architecture(sec["model"], sec["config"], run_dir / RUN_META,
                                                     f"architecture.{key}"))
                     for key, sec in arch.items() if sec is not None)
        check_weights_size(run_dir / RUN_META, run_dir / RUN_WEIGHTS, RUN_META, params)
    try:
        model = build(_without_loading_options(meta), run_dir / RUN_META)
    except DataError:
        raise
    except (UserError, KeyError, TypeError, ValueError) as exc:  # the method's config section
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DataError(run_dir / RUN_META, f"cannot rebuild the run's method: {what}") from None
    weights = run_dir / RUN_WEIGHTS
    load_state_strict(model, read_weights(weights), weights)
    model.to(device).eval()
    return model, meta


# --------------------------------------------------------------------------- classifier bundle

@dataclass
class Bundle:
    """A loaded classifier bundle.

    Attributes:
        model: ``nn.Module`` in eval mode, physical windows [B, W, 6] -> logits [B, C]
            (``None`` after ``read_bundle(with_model=False)``).
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
        p = self.path / BUNDLE_ONNX
        return p if p.is_file() else None


def save_bundle(out_dir: PathLike, model, *, encoder_name: str, encoder_config: Mapping[str, Any],
                head_spec: Mapping[str, Any], preprocess: PreprocessConfig, class_names: List[str],
                metrics: Optional[Mapping[str, Any]] = None,
                provenance: Optional[Mapping[str, Any]] = None,
                hmm: Optional[Mapping[str, Any]] = None,
                nonwear: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model.safetensors`` then ``bundle.json`` (atomically; the JSON last = complete).

    An older ``model.onnx`` in ``out_dir`` is removed (an export of other weights would silently
    disagree).

    Args:
        model: a :class:`~crossmodal_har.models.classifier.WindowClassifier` (``encoder`` + ``head``).
        encoder_name: registry name to rebuild the encoder with ``create_model``.
        encoder_config: the encoder's resolved config (``model.encoder.model_cfg``).
        head_spec: see :func:`crossmodal_har.models.classifier.build_head`.
        hmm: optional ``{"transitions": C x C, "prior": C, ...}`` for ``predict --smooth hmm``
            (checked by :func:`check_hmm` before anything is written).
        nonwear: optional non-wear settings (``NonwearConfig`` fields) that ``predict`` uses by default.

    Returns:
        Path of ``bundle.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    head_spec = dict(head_spec)
    if len(class_names) != int(head_spec["num_classes"]):
        raise ValueError(f"{len(class_names)} class names for a head with {head_spec['num_classes']} outputs")
    if hmm is not None:
        hmm = _plain(dict(hmm))
        check_hmm(hmm, out_dir / BUNDLE_META, len(class_names))
    if nonwear is not None:
        nonwear = check_nonwear(_plain(nonwear), out_dir / BUNDLE_META)
    state = cpu_state_dict(model)
    stale = out_dir / BUNDLE_ONNX
    if stale.exists():
        stale.unlink()
    _write_weights(out_dir / BUNDLE_WEIGHTS, state, {"format": "pt"})
    meta = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "kind": BUNDLE_KIND,
        "encoder": {"model": encoder_name, "config": dict(encoder_config),
                    "embed_dim": int(getattr(model.encoder, "embed_dim", head_spec["in_features"]))},
        "head": dict(head_spec),
        "preprocess": to_dict(preprocess),
        "class_names": list(class_names),
        "metrics": dict(metrics or {}),
        "provenance": dict(provenance or {}),
    }
    if hmm is not None:
        meta["hmm"] = hmm
    if nonwear is not None:
        meta["nonwear"] = nonwear
    return atomic_write_json(out_dir / BUNDLE_META, meta)


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
    meta = read_json(meta_path)
    preprocess, class_names = check_bundle_meta(meta, meta_path, architecture_too=with_model)
    bundle = Bundle(model=None, class_names=class_names, preprocess=preprocess, meta=meta, path=path)
    if with_model:
        # lazy: the classifier modules import torch, which the ONNX path (with_model=False) must not
        from crossmodal_har.models.classifier import build_classifier

        weights = path / BUNDLE_WEIGHTS
        head = meta["head"]
        arch = check_architecture(meta["encoder"]["model"], meta["encoder"]["config"], meta_path, "encoder", "imu")
        head_values = head["in_features"] * head["num_classes"]
        if head["type"] == "knn":
            head_values = head["bank_size"] * (head["in_features"] + head["num_classes"])
        check_weights_size(meta_path, weights, "bundle.json", _arch_params(arch), 2 * head_values)
        try:
            model = build_classifier(meta["encoder"], head, preprocess.normalization, channels=preprocess.channels)
        except DataError:
            raise
        except UserError as exc:
            raise DataError(meta_path, f"cannot rebuild the classifier: {exc}") from None
        load_state_strict(model, read_weights(weights), weights)
        bundle.model = model.eval()
    return bundle


def bundle_hmm(bundle: Bundle) -> Optional[Tuple[Any, Any]]:
    """``(transitions [C, C], prior [C])`` as float64 arrays from a read bundle, or None if it has none."""
    if "hmm" not in bundle.meta:
        return None
    path = (bundle.path / BUNDLE_META) if bundle.path is not None else Path(BUNDLE_META)
    trans, prior = check_hmm(bundle.meta["hmm"], path, len(bundle.class_names))
    return np.asarray(trans, np.float64), np.asarray(prior, np.float64)


def bundle_nonwear(bundle: Bundle) -> Optional[Dict[str, Any]]:
    """The bundle's ``nonwear`` section (non-wear settings predict uses by default), or None."""
    sec = bundle.meta.get("nonwear")
    return dict(sec) if isinstance(sec, dict) else None


def load_bundle(path: PathLike) -> Bundle:
    """Rebuild a bundle's model from ``bundle.json`` + ``model.safetensors`` (strict keys)."""
    return read_bundle(path, with_model=True)


def weights_digest(path: PathLike) -> str:
    """sha256 of a bundle's ``model.safetensors`` (stored in an exported ONNX file to detect staleness)."""
    h = hashlib.sha256()
    with open(Path(path) / BUNDLE_WEIGHTS, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
