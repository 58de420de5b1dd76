"""The one way a saved JSON file is typed, versioned, migrated, validated, written and read.

Every JSON file the package writes for itself (classifier bundle, encoder, pretraining run, window
store, ingest ledger, evaluation and zero-shot results) is a dataclass that subclasses
:class:`SavedFile`. Its module holds the dataclass, its ``validate()`` and its migrations; this module
holds the mechanics they share:

* **version**: each file carries ``format_version`` (the name every file has used since version 1).
  The class says which version it writes (``VERSION``).
* **migration table** (timm's ``register_model_deprecations`` idea, for files): ``MIGRATIONS[v]``
  turns a version-``v`` dict into a version-``v + 1`` dict. An older file is migrated step by step
  with one warning naming the file, instead of being refused; a newer file than this code knows, or a
  version with no migration path, is one :class:`~crossmodal_har.errors.DataError` naming the file.
* **validation**: the dict enters through :func:`crossmodal_har.config.from_dict` (unknown keys and
  wrong types are errors with a key path), then ``validate()`` checks what types cannot say (ranges,
  shapes, agreement between fields). Both raise ``ConfigError``/``ValueError``; :func:`read_saved`
  turns them into a ``DataError`` naming the file, so the CLI prints one line.
* **writing** is atomic (:func:`crossmodal_har.io.atomic_write_json`), ``format_version`` first.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Type, TypeVar

from crossmodal_har.config import from_dict, to_dict
from crossmodal_har.errors import ConfigError, DataError
from crossmodal_har.io import PathLike, atomic_write_json, read_json

log = logging.getLogger(__name__)

VERSION_KEY = "format_version"

S = TypeVar("S", bound="SavedFile")
Migration = Callable[[Dict[str, Any]], Dict[str, Any]]


def short_repr(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters (hostile files must not flood one-line errors)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SavedFile:
    """Mixin for a dataclass saved as one JSON file.

    Subclasses set ``VERSION`` (the version this code writes), ``WHAT`` (the file's name in messages,
    e.g. ``"bundle"``) and optionally ``MIGRATIONS`` (``{old_version: fn(dict) -> dict}``, each step
    one version up). The version is not a dataclass field: it is added on write and consumed on read.
    """

    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "file"
    MIGRATIONS: ClassVar[Mapping[int, Migration]] = {}

    def validate(self) -> None:  # overridden where a file has rules beyond its types
        """Check what the field types cannot say; raise ``ValueError`` or ``ConfigError``."""

    def to_json(self) -> Dict[str, Any]:
        """The dict written to disk: ``format_version`` first, then every field."""
        return {VERSION_KEY: self.VERSION, **to_dict(self)}


def migrate(cls: Type[SavedFile], data: Mapping[str, Any], path: Optional[PathLike] = None) -> Dict[str, Any]:
    """``data`` (a file's dict) brought to ``cls.VERSION``; ``format_version`` is removed.

    Raises DataError for a missing/unknown version or one with no migration path."""
    out = dict(data)
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
        log.warning("%s: %s written as %s %d, read as version %d (migrated; re-save to update the file)",
                    path if path is not None else "<input>", cls.WHAT, VERSION_KEY, start, cls.VERSION)
    return out


def parse_saved(cls: Type[S], data: Any, path: Optional[PathLike] = None, *, where: Optional[str] = None) -> S:
    """Build ``cls`` from a file's parsed JSON: migrate, type-check (``from_dict``), ``validate()``.

    Every failure is a DataError naming ``path`` (one line at the CLI)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    if not isinstance(data, Mapping):
        raise DataError(path, f"{cls.WHAT}: expected a JSON object, got {type(data).__name__}")
    body = migrate(cls, data, path)
    try:
        return from_dict(cls, body, where=where or cls.WHAT)
    except (ConfigError, ValueError, TypeError) as exc:
        raise DataError(path, str(exc)) from None


def read_saved(cls: Type[S], path: PathLike) -> S:
    """Read, migrate and validate one saved file (DataError naming ``path`` on any problem)."""
    return parse_saved(cls, read_json(path), Path(path))


def write_saved(obj: SavedFile, path: PathLike) -> Path:
    """Validate ``obj`` and write it atomically as JSON (``format_version`` first)."""
    obj.validate()
    return atomic_write_json(path, obj.to_json())
