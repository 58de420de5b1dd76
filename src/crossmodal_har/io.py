"""Atomic file writes (temporary file in the same directory, fsync, os.replace) and JSON reading whose
failures are DataErrors naming the file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

from crossmodal_har.errors import DataError

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then atomically move the temporary file to ``path``.

    A reader never sees a half-written file; a crash leaves at most a stray ``.tmp`` file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays, Paths
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types (numpy scalars/arrays -> numbers/lists, paths -> strings), the way
    :func:`atomic_write_json` would write it. Raises TypeError/ValueError for what JSON cannot hold."""
    return json.loads(json.dumps(obj, default=_json_default))


def atomic_write_json(path: PathLike, obj: Any, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default, allow_nan=True) + "\n")


def read_json(path: PathLike) -> Any:
    """Read a JSON file; a syntax error becomes a DataError naming the file and line, and so does a
    file that cannot be read (missing, a directory, no permission) or is not UTF-8 text."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except UnicodeDecodeError:
        raise DataError(path, "not a UTF-8 text file") from None
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
