"""The one way a saved JSON file is typed, versioned, migrated, validated, written and read.

Every JSON file the package writes for itself (classifier bundle, encoder, pretraining run, window
store, ingest ledger, evaluation and zero-shot results) is a dataclass that subclasses
:class:`SavedFile`. Its module holds the dataclass, its ``validate()``, its migrations, its writer and
its reader; this module holds the mechanics they share:

* **version**: each file carries ``format_version`` (the name every file has used since version 1).
  The class says which version it writes (``VERSION``). A file written before its format had a
  version is version ``UNVERSIONED`` when the class names one, and refused otherwise.
* **migration table** (timm's ``register_model_deprecations`` idea, for files): ``MIGRATIONS[v]``
  turns a version-``v`` dict into a version-``v + 1`` dict. An older file is migrated step by step
  with one log line naming the file, instead of being refused; a newer file than this code knows, or
  a version with no migration path, is one :class:`~crossmodal_har.errors.DataError` naming the file.
* **validation**: the dict is first checked against the dataclass's field types as JSON
  (:func:`check_object`: objects, arrays, strings, integers, numbers, booleans, allowed and missing
  keys; messages in JSON's words, a hostile key or value shortened), then built by
  :func:`crossmodal_har.config.from_dict`, which calls ``validate()`` for what types cannot say
  (ranges, shapes, agreement between fields). Every failure is one ``DataError`` naming the file.
* **writing** is atomic (:func:`crossmodal_har.io.atomic_write_json`), ``format_version`` first;
  fields named in ``OMIT_IF_NONE`` (of the file or of a nested section) are left out while None, so
  optional sections keep the on-disk shape they always had.
* **reading by key**: a :class:`SavedFile` is also a read-only mapping of its JSON
  (``file["method"]``, ``file.get("hmm")``), so code that reads a file's sections by name keeps
  working on the typed object; new code reads the attributes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import types
import typing
from pathlib import Path
from typing import (Any, Callable, ClassVar, Dict, Iterator, Literal, Mapping, Optional, Tuple, Type, TypeVar,
                    Union)

from crossmodal_har.config import from_dict
from crossmodal_har.errors import ConfigError, DataError, UserError
from crossmodal_har.io import PathLike, atomic_write_json, read_json

log = logging.getLogger(__name__)

VERSION_KEY = "format_version"

S = TypeVar("S", bound="SavedFile")
Migration = Callable[[Dict[str, Any]], Dict[str, Any]]


def short_repr(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters (hostile files must not flood one-line errors)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (``object``, ``array``, ``string`` ...), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, str):
        return "string"
    return "number"


class SavedFile(Mapping[str, Any]):
    """Base of a dataclass saved as one JSON file.

    Subclasses set ``VERSION`` (the version this code writes), ``WHAT`` (the file's name in messages,
    e.g. ``"bundle.json"``), optionally ``MIGRATIONS`` (``{old_version: fn(dict) -> dict}``, each
    step one version up), ``UNVERSIONED`` (the version of a file without ``format_version``; None =
    refused), ``OMIT_IF_NONE`` (fields not written while None) and ``MIGRATION_LOG_LEVEL`` (how a
    migration is logged). The version is not a dataclass field: it is added on write and consumed on
    read.
    """

    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "file"
    MIGRATIONS: ClassVar[Mapping[int, Migration]] = {}
    UNVERSIONED: ClassVar[Optional[int]] = None
    OMIT_IF_NONE: ClassVar[Tuple[str, ...]] = ()
    MIGRATION_LOG_LEVEL: ClassVar[int] = logging.WARNING

    def validate(self) -> None:  # overridden where a file has rules beyond its types
        """Check what the field types cannot say; raise ``ValueError`` or ``ConfigError``."""

    def to_json(self) -> Dict[str, Any]:
        """The dict written to disk: ``format_version`` first, then every field (see ``OMIT_IF_NONE``)."""
        return {VERSION_KEY: self.VERSION, **json_dict(self)}

    # -- a read-only mapping of the file's JSON (``format_version`` included)
    def _keys(self) -> Tuple[str, ...]:
        return (VERSION_KEY,) + tuple(f.name for f in dataclasses.fields(self)  # type: ignore[arg-type]
                                      if not (f.name in self.OMIT_IF_NONE and getattr(self, f.name) is None))

    def __getitem__(self, key: str) -> Any:
        if key == VERSION_KEY:
            return self.VERSION
        if key not in self._keys():
            raise KeyError(key)
        return json_value(getattr(self, key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


def json_value(value: Any) -> Any:
    """A value as JSON data: (nested) dataclasses and mappings as dicts (``OMIT_IF_NONE`` honoured),
    tuples as lists, paths as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_dict(value)
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def json_dict(obj: Any) -> Dict[str, Any]:
    """A (nested) dataclass as the JSON dict it is saved as; a field listed in its class's
    ``OMIT_IF_NONE`` is left out while None."""
    omit = getattr(type(obj), "OMIT_IF_NONE", ())
    return {f.name: json_value(getattr(obj, f.name)) for f in dataclasses.fields(obj)
            if not (f.name in omit and getattr(obj, f.name) is None)}


# ----------------------------------------------------------------------------------- JSON types

def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _expect(where: str, what: str, value: Any) -> ConfigError:
    return ConfigError(f"{where}: expected {what}, got {json_type(value)}")


def check_json(tp: Any, value: Any, where: str) -> None:
    """Check one parsed JSON value against a field type (the subset of ``typing`` saved files use).

    Raises ConfigError naming ``where`` (a dotted key path) in JSON's words."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return
        alts = [a for a in args if a is not type(None)]
        if len(alts) == 1:
            return check_json(alts[0], value, where)
        for a in alts:
            try:
                return check_json(a, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {json_type(value)} {short_repr(value)} is not allowed here")
    if origin is Literal:
        if not any(type(value) is type(a) and value == a for a in args):
            raise ConfigError(f"{where}: {short_repr(value)} is not one of {', '.join(str(a) for a in args)}")
        return
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _expect(where, "a list", value)
        inner = args[0] if args else Any
        for i, v in enumerate(value):
            check_json(inner, v, f"{where}[{i}]")
        return
    if origin in (dict, Mapping) or tp in (dict, Dict):
        if not isinstance(value, dict):
            raise _expect(where, "a JSON object", value)
        inner = args[1] if len(args) == 2 else Any
        for k, v in value.items():
            check_json(inner, v, _join(where, short_repr(k) if not isinstance(k, str) else k[:40]))
        return
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _expect(where, "a JSON object", value)
        check_object(tp, value, where)
        return
    if tp is bool:
        if not isinstance(value, bool):
            raise _expect(where, "true or false", value)
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _expect(where, "an integer", value)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _expect(where, "a number", value)
        try:
            float(value)
        except OverflowError:
            raise ConfigError(f"{where}: number out of range") from None
    elif tp in (str, Path):
        if not isinstance(value, str):
            raise _expect(where, "a string", value)


def check_object(cls: Any, data: Mapping[str, Any], where: str = "") -> None:
    """Check a JSON object against dataclass ``cls``: only its fields, every field without a default
    present, each value of its field's type (nested dataclasses too). Raises ConfigError."""
    at = f"{where}: " if where else ""  # the top level: the file itself (its path is in the DataError)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ConfigError(f"{at}unknown key(s) {shown}; allowed: {', '.join(fields)}")
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{at}missing key {name!r}")
            continue
        check_json(hints[name], data[name], _join(where, name))


@contextlib.contextmanager
def errors_naming(path: Optional[PathLike]) -> Iterator[None]:
    """Inside, a bad value becomes one DataError naming ``path`` (one line at the CLI): a DataError
    without a file gets ``path``; ConfigError/UserError, ValueError, TypeError and OverflowError
    (a validate() on odd values) become a DataError with their message on one line."""
    try:
        yield
    except DataError as exc:
        if exc.path is None:
            raise DataError(path, exc.message) from None
        raise
    except (UserError, ValueError, TypeError, OverflowError) as exc:
        raise DataError(path, " ".join(str(exc).splitlines())) from None


# ----------------------------------------------------------------------------------- read, write

def migrate(cls: Type[SavedFile], data: Mapping[str, Any], path: Optional[PathLike] = None) -> Dict[str, Any]:
    """``data`` (a file's dict) brought to ``cls.VERSION``; ``format_version`` is removed.

    Raises DataError for a missing/unknown version or one with no migration path."""
    out = dict(data)
    if VERSION_KEY not in out and cls.UNVERSIONED is not None:
        version: Any = cls.UNVERSIONED
    else:
        version = out.pop(VERSION_KEY, None)
    if isinstance(version, bool) or not isinstance(version, int):
        raise DataError(path, f"{cls.WHAT}: {VERSION_KEY} must be an integer, got {short_repr(version)} "
                              f"(this version reads {cls.VERSION})")
    if version > cls.VERSION:
        raise DataError(path, f"unsupported {cls.WHAT} {VERSION_KEY} {version}: written by a newer crossmodal-har "
                              f"(this version reads up to {cls.VERSION}); upgrade the package")
    start = version
    while version < cls.VERSION:
        step = cls.MIGRATIONS.get(version)
        if step is None:
            raise DataError(path, f"unsupported {cls.WHAT} {VERSION_KEY} {short_repr(version)} "
                                  f"(this version reads {cls.VERSION}; no migration from {version})")
        out = step(out)
        version += 1
    if start != cls.VERSION:
        log.log(cls.MIGRATION_LOG_LEVEL, "%s: %s written as %s %d, read as version %d (migrated; re-save to "
                "update the file)", path if path is not None else "<input>", cls.WHAT, VERSION_KEY, start, cls.VERSION)
    return out


def build_saved(cls: Type[S], fields: Mapping[str, Any], path: Optional[PathLike] = None, *,
                where: Optional[str] = None) -> S:
    """Build ``cls`` from its fields as JSON data (no ``format_version``): :func:`check_object`, then
    :func:`~crossmodal_har.config.from_dict` (which calls ``validate()``). Errors name ``path``;
    ``where`` prefixes the key paths in them (none by default: ``head.k``, not ``bundle.head.k``)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    with errors_naming(path):
        check_object(cls, fields, where or "")
        return from_dict(cls, fields, where=where or cls.WHAT)


def parse_saved(cls: Type[S], data: Any, path: Optional[PathLike] = None, *, where: Optional[str] = None) -> S:
    """Build ``cls`` from a file's parsed JSON: migrate, type-check, ``validate()``.

    Every failure is a DataError naming ``path`` (one line at the CLI)."""
    if not isinstance(data, Mapping):
        raise DataError(path, f"{cls.WHAT}: expected a JSON object, got {json_type(data)}")
    return build_saved(cls, migrate(cls, data, path), path, where=where)


def read_saved(cls: Type[S], path: PathLike) -> S:
    """Read, migrate and validate one saved file (DataError naming ``path`` on any problem)."""
    return parse_saved(cls, read_json(path), Path(path))


def write_saved(obj: SavedFile, path: PathLike) -> Path:
    """Validate ``obj`` and write it atomically as JSON (``format_version`` first)."""
    with errors_naming(path):
        obj.validate()
    return atomic_write_json(path, obj.to_json())
