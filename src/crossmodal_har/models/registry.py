"""Registry of encoders: architectures are data.

Every name (``patchtst``, ``patchtst-tiny``, ``videomae-base`` …) has a JSON file in
``models/configs/<name>.json`` holding its architecture fields, and a builder registered with
:func:`register_model`. :func:`create_model` merges the named config with keyword overrides, validates
the result as a typed dataclass (unknown keys are errors) and calls the builder::

    enc = create_model("patchtst-tiny")                      # random init, ms on CPU
    enc = create_model("patchtst", d_model=64)               # override a field
    enc = create_model("videomae-base", pretrained="path/to/local/dir")
    enc = create_model("videomae-base", pretrained="MCG-NJU/videomae-base-ssv2", allow_download=True)

A config read from a *file* (``encoder.json``, ``bundle.json``, a run's ``model.json``) goes through
:func:`checked_config` / :func:`create_model_from_config` instead: only the architecture's own fields,
sizes bounded by its ``validate``, and never a loading key (``pretrained``, ``allow_download`` ...:
:data:`LOADING_KEYS`) — whether weights are loaded or downloaded is the command line's decision only.
A config dataclass may define ``embed_dim`` and ``approx_parameters()`` (a lower bound of its weight
count), which the artefact readers check against the file's declared sizes and weights file.

Each created module carries ``model_name`` and ``model_cfg`` (resolved config dict), so
:func:`crossmodal_har.models.encoder_file.save_encoder` needs nothing else to save it and rebuild it later.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from crossmodal_har.config import from_dict
from crossmodal_har.errors import ConfigError, UserError

log = logging.getLogger(__name__)

# Modules whose import registers the built-in models (imported lazily: no work at package import).
_BUILTIN_MODULES = (
    "crossmodal_har.models.imu_patchtst",
    "crossmodal_har.models.imu_convgru",
    "crossmodal_har.models.video_videomae",
    "crossmodal_har.models.video_clip",
    "crossmodal_har.models.video_efficientnet",
)


@dataclass(frozen=True)
class ModelEntry:
    """A registered name: its builder and its modality (``imu`` | ``video``)."""

    name: str
    builder: Callable[..., Any]
    kind: str
    config_cls: Optional[type] = None  # the architecture's config dataclass: the schema of files


# Keyword arguments that load weights or reach the network. They are options of the person at the
# command line (``--pretrained``-like flags, ``--allow-download``), never architecture: a file's
# ``config`` section naming one is refused (:func:`checked_config`).
LOADING_KEYS = frozenset({
    "pretrained", "allow_download", "pretrained_model_name_or_path", "local_files_only", "cache_dir",
    "revision", "token", "use_auth_token", "trust_remote_code", "force_download", "resume_download",
    "proxies", "subfolder", "use_safetensors", "from_tf", "from_flax", "mirror", "hub", "hub_id",
    "repo_id", "endpoint", "url", "weights", "checkpoint", "path",
})


_REGISTRY: Dict[str, ModelEntry] = {}
_builtins_loaded = False


def register_model(name: str, *, kind: Optional[str] = None,
                   config: Optional[type] = None) -> Callable[[Callable], Callable]:
    """Decorator registering ``builder`` under ``name``.

    The builder is called as ``builder(config: dict, *, pretrained, allow_download)`` where ``config``
    is the named JSON config merged with overrides; it returns an :class:`~crossmodal_har.models.base.Encoder`
    (or any module with ``kind``/``embed_dim``/``model_cfg``). ``kind`` is ``imu`` or ``video`` (used by
    :func:`list_models`); when omitted, the builder's ``kind`` attribute is used. ``config`` is the
    architecture's config dataclass: the schema a persisted ``config`` section is checked against
    (:func:`checked_config`) before anything is built.

    The same builder may be registered under several names (e.g. ``patchtst`` and ``patchtst-tiny``).
    """

    def deco(builder: Callable) -> Callable:
        k = kind or getattr(builder, "kind", None)
        if k not in ("imu", "video"):
            raise ValueError(f"register_model({name!r}): kind must be 'imu' or 'video', got {k!r}")
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name=name, builder=builder, kind=k, config_cls=config)
        return builder

    return deco


def _ensure_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)
    _builtins_loaded = True


def list_models(kind: Optional[str] = None) -> List[str]:
    """Registered model names, sorted; ``kind`` = ``imu`` or ``video`` filters."""
    _ensure_builtins()
    if kind is not None and kind not in ("imu", "video"):
        raise UserError(f"unknown model kind {kind!r}: expected imu or video")
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def model_kind(name: str) -> str:
    """``imu`` or ``video`` for a registered name."""
    return _entry(name).kind


def _entry(name: str) -> ModelEntry:
    _ensure_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def model_config(name: str) -> Dict[str, Any]:
    """The named config ``models/configs/<name>.json`` as a dict (architecture fields only)."""
    _entry(name)
    fname = f"{name}.json"
    try:
        text = resources.files("crossmodal_har.models").joinpath("configs", fname).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"model {name!r} has no config file models/configs/{fname}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:  # a packaging bug, but say where
        raise ConfigError(f"models/configs/{fname}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"models/configs/{fname}: expected a JSON object")
    return data


def create_model(
    name: str,
    *,
    pretrained: Optional[str] = None,
    allow_download: bool = False,
    **overrides: Any,
):
    """Build encoder ``name`` from its named config plus ``overrides``.

    Args:
        name: a registered name (see :func:`list_models`).
        pretrained: a local directory in Hugging Face layout (``config.json`` + ``*.safetensors``) or,
            only with ``allow_download=True``, a hub id. ``None`` = random initialisation.
        allow_download: permit fetching ``pretrained`` from the Hugging Face hub.
        **overrides: config fields replacing the named config's (unknown keys raise ConfigError).

    Returns:
        The encoder, with ``model_name`` and ``model_cfg`` set, in training mode.
    """
    entry = _entry(name)
    cfg = dict(model_config(name))
    cfg.update(overrides)
    model = entry.builder(cfg, pretrained=pretrained, allow_download=allow_download)
    model.model_name = name
    if getattr(model, "kind", None) != entry.kind:
        raise RuntimeError(f"builder for {name!r} returned kind {getattr(model, 'kind', None)!r}, expected {entry.kind!r}")
    return model


def checked_config(name: str, config: Any, *, where: str = "config") -> Dict[str, Any]:
    """Check a *persisted* architecture config (``encoder.config`` of ``bundle.json``,
    ``encoder.json``, a run's ``model.json``) before any model is built; returns it as a dict.

    Files are data: only the architecture's own fields (those of its config dataclass) are allowed,
    with the ranges its ``validate`` enforces (sizes bounded, so a few bytes of JSON cannot ask for
    terabytes). Loading keys (:data:`LOADING_KEYS`: ``pretrained``, ``allow_download`` ...) are
    refused: whether weights are fetched is decided at the command line only.

    Raises:
        ConfigError: naming ``where`` and the key (callers turn it into a DataError naming the file).
    """
    architecture_config(name, config, where=where)
    return dict(config)


def architecture_config(name: str, config: Any, *, where: str = "config") -> Any:
    """The architecture config dataclass of ``name`` with a persisted ``config`` applied, checked as
    :func:`checked_config` describes (nothing is built)."""
    entry = _entry(name)
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(config).__name__}")
    for key in config:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be strings")
        if key in LOADING_KEYS or key.lower() in LOADING_KEYS:
            raise ConfigError(f"{where}: {key!r} is a loading option, not architecture; a file may not set it "
                              "(weights are loaded or downloaded only on the command line's say-so)")
    if entry.config_cls is None:
        raise ConfigError(f"{where}: model {name!r} has no config schema; it cannot be rebuilt from a file")
    try:
        return from_dict(entry.config_cls, {**model_config(name), **dict(config)}, where=where)
    except (TypeError, ValueError, OverflowError, ArithmeticError) as exc:  # a validate() on odd values
        raise ConfigError(f"{where}: invalid architecture ({exc})") from None


def create_model_from_config(name: str, config: Any, *, where: str = "config"):
    """``create_model(name, **config)`` for a config read from a file: :func:`checked_config` first,
    so a file can never pass ``pretrained``/``allow_download`` or an absurd size."""
    return create_model(name, **checked_config(name, config, where=where))


def with_input_channels(name: str, config: Mapping[str, Any], n_channels: int) -> Dict[str, Any]:
    """``config`` (an IMU architecture's resolved or partial config) changed to read ``n_channels``
    input channels (3 = accelerometer only, 6 = accelerometer + gyroscope): the fields the
    architecture's ``channel_overrides`` names (``num_input_channels``; ``in_channels`` and
    ``input_groups`` ...). Raises ConfigError for an architecture that cannot change them."""
    entry = _entry(name)
    if entry.kind != "imu":
        raise ConfigError(f"model {name!r} is not an IMU encoder")
    arch = architecture_config(name, dict(config), where=f"{name} config")
    overrides = getattr(arch, "channel_overrides", None)
    if overrides is None:
        if int(n_channels) == int(getattr(arch, "input_channels", 6)):
            return dict(config)
        raise ConfigError(f"model {name!r} cannot change its number of input channels")
    return {**dict(config), **overrides(int(n_channels))}


def resolve_pretrained(pretrained: str, allow_download: bool) -> Tuple[str, bool]:
    """Where to load ``pretrained`` weights from: ``(path_or_id, local_files_only)``.

    A path that exists is used locally. Anything else is treated as a hub id and needs
    ``allow_download=True``; otherwise a UserError explains what to do. No network call happens here.
    """
    p = Path(os.path.expanduser(str(pretrained)))
    if p.exists():
        if not p.is_dir():
            raise UserError(f"pretrained weights {pretrained!r}: expected a directory (Hugging Face layout)")
        return str(p), True
    if not allow_download:
        raise UserError(
            f"pretrained weights {pretrained!r}: no such local directory; to fetch it from the Hugging Face "
            "hub pass --allow-download (allow_download=True), or download it yourself and pass the directory"
        )
    return str(pretrained), False


def hf_from_pretrained(
    cls: Any,
    pretrained: str,
    allow_download: bool,
    *,
    unused_prefixes: Tuple[str, ...] = (),
    **hf_overrides: Any,
):
    """``cls.from_pretrained`` with safetensors only, offline unless allowed; errors become UserError.

    Missing or unexpected keys are logged as warnings, listed by name (never dropped silently);
    unexpected keys under ``unused_prefixes`` (e.g. a full CLIP checkpoint's ``text_model.``) are
    expected and logged at INFO level.
    """
    source, local_only = resolve_pretrained(pretrained, allow_download)
    try:
        model, info = cls.from_pretrained(
            source,
            local_files_only=local_only,
            use_safetensors=True,  # never unpickle a .bin checkpoint
            output_loading_info=True,
            **hf_overrides,
        )
    except (OSError, ValueError, EnvironmentError) as exc:
        raise UserError(f"could not load pretrained weights {pretrained!r} as {cls.__name__}: {exc}") from None
    for what in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in (info.get(what) or []))
        if what == "unexpected_keys" and unused_prefixes:
            ignored = [k for k in keys if k.startswith(unused_prefixes)]
            keys = [k for k in keys if not k.startswith(unused_prefixes)]
            if ignored:
                log.info("%s from %s: %d unused weights under %s", cls.__name__, pretrained, len(ignored), unused_prefixes)
        if keys:
            shown = ", ".join(str(k) for k in keys[:20]) + (" …" if len(keys) > 20 else "")
            log.warning("%s from %s: %d %s (%s)", cls.__name__, pretrained, len(keys), what.replace("_", " "), shown)
    return model
