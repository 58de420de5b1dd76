"""Typed, validated configuration: dataclasses built from dicts where unknown keys are errors.

Every config dataclass in the project goes through :func:`from_dict`, so a typo in a YAML/JSON
config or a ``--set key=value`` override fails loudly instead of silently becoming a default.
:func:`build_config` is the one route from a config file, command-line flags and ``--set``
overrides to a config, used by every command.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Type, TypeVar, Union

import yaml

from crossmodal_har.errors import ConfigError, DataError

T = TypeVar("T")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to type annotation ``tp`` (the subset of typing used in our configs)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        return Path(value)
    return value


def _field_default(f: "dataclasses.Field[Any]") -> Any:
    """A fresh copy of a field's default value, or None when the field has none."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    if f.default is not dataclasses.MISSING:
        return copy.deepcopy(f.default)
    return None


def from_dict(cls: Type[T], data: Mapping[str, Any], *, where: str = "config", defaults: Optional[T] = None) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError.

    Missing keys take the defaults: those of ``defaults`` when given, else the dataclass's. A nested
    dataclass field given as a mapping starts from that field's own default, so a partial section
    keeps the enclosing config's defaults (``PretrainConfig.split`` has ``test_fraction=0.15``, the
    bare ``SplitConfig`` 0.20: ``{"split": {"seed": 1}}`` keeps 0.15). ``cls.validate()`` is called
    when defined.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for k, v in data.items():
        tp = hints[k]
        if dataclasses.is_dataclass(tp) and isinstance(v, Mapping):
            base = getattr(defaults, k) if defaults is not None else _field_default(fields[k])
            kwargs[k] = from_dict(tp, v, where=f"{where}.{k}", defaults=base if isinstance(base, tp) else None)
        else:
            kwargs[k] = _coerce(v, tp, f"{where}.{k}")
    obj = dataclasses.replace(copy.deepcopy(defaults), **kwargs) if defaults is not None else cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(obj: Any) -> Dict[str, Any]:
    """A JSON-serialisable dict of a (nested) config dataclass."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        return v

    return conv(obj)


# YAML 1.1 (PyYAML) reads a mantissa without a dot ("3e-4") or an unsigned exponent ("1.0e5") as
# a string; users mean the number.
_YAML11_MISSED_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def parse_scalar(raw: str) -> Any:
    """A ``--set`` value: a YAML scalar or list (``3``, ``true``, ``[a, b]``, ``null``); a number in
    exponent notation is a float even where YAML 1.1 would read a string; else the raw text."""
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _YAML11_MISSED_FLOAT.match(value.strip()):
        return float(value)
    return value


def parse_override(text: str) -> tuple:
    """Parse ``a.b=value`` (value parsed by :func:`parse_scalar`) into (["a","b"], value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    return key.strip().split("."), parse_scalar(raw)


def _set_path(data: Dict[str, Any], keys: Sequence[str], value: Any, what: str) -> None:
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{what}: {k} is not a section")
    node[keys[-1]] = value


def apply_overrides(data: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (dotted keys for nesting) to a plain dict, returning a copy."""
    out = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        _set_path(out, keys, value, f"override {text!r}")
    return out


def build_config(cls: Type[T], data: Optional[Mapping[str, Any]] = None, *, flags: Optional[Mapping[str, Any]] = None,
                 overrides: Iterable[str] = (), where: str = "config") -> T:
    """The one route from command-line input to a config, for every command.

    Precedence: the dataclass defaults < ``data`` (a config file or a run's saved config) < ``flags``
    < ``overrides``. Everything goes through :func:`from_dict`, so a bad value fails with one line
    naming its key path (``where.fit.supervised.epochs: expected an integer ...``).

    Args:
        cls: the config dataclass.
        data: a plain dict (from :func:`load_config_file`), or None.
        flags: dotted key -> value of the command's own flags; ``None`` values (flag not given) are
            skipped.
        overrides: ``--set KEY=VALUE`` strings.
        where: names the source in error messages.
    """
    out: Dict[str, Any] = copy.deepcopy(dict(data or {}))
    for key, value in (flags or {}).items():
        if value is not None:
            _set_path(out, key.split("."), value, f"flag for {key}")
    cfg = from_dict(cls, apply_overrides(out, overrides), where=where)
    check_numbers(cfg, where)
    return cfg


#: largest magnitude of an integer setting (beyond it numpy and C code overflow)
MAX_CONFIG_INT = 2 ** 53


def check_numbers(cfg: Any, where: str = "config") -> None:
    """Every number of a config built from the command line is finite, and every integer within
    +-:data:`MAX_CONFIG_INT` (``--stride inf``, ``nan`` or ``1e400`` is one line naming its key,
    never an overflow deep inside). Ranges of single settings are their dataclass's ``validate``.

    Raises:
        ConfigError: naming the key path.
    """
    def walk(v: Any, path: str) -> None:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            for f in dataclasses.fields(v):
                walk(getattr(v, f.name), f"{path}.{f.name}")
        elif isinstance(v, bool):
            return
        elif isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{path}: {v!r} is not a finite number")
        elif isinstance(v, int) and abs(v) > MAX_CONFIG_INT:
            raise ConfigError(f"{path}: {v} is out of range (at most {MAX_CONFIG_INT:.3g} in magnitude)")
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(x, f"{path}[{i}]")
        elif isinstance(v, Mapping):
            for k, x in v.items():
                walk(x, f"{path}.{k}")

    walk(cfg, where)


def load_config_file(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Read a YAML or JSON config file into a dict (syntax errors name the file and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise DataError(path, f"invalid YAML/JSON: {getattr(exc, 'problem', exc)}",
                        line=None if line is None else line + 1) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(path, "config must be a mapping of keys to values")
    return data
