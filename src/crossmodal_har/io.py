"""Atomic file writes (temporary file in the same directory, fsync, os.replace), the output guard
every command runs before writing (:func:`guard_outputs`, :func:`guard_output_dir`), and JSON reading
whose failures are DataErrors naming the file.

Temporaries are named ``.<name>.<pid>.<random>.tmp`` (``.rows`` for scratch files) beside their
output, so that a later run can tell a stale one (its process is gone) from one being written now and
remove it (:func:`clean_stale_temps`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

from crossmodal_har.outputs import current as current_session
from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals.text import shown

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then atomically move the temporary file to ``path``.

    A reader never sees a half-written file; a crash leaves at most a stray ``.tmp`` file.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise UserError(f"{path} is a directory; expected a file name")
    session = current_session()
    tmp_path = make_temp(path)
    try:
        try:
            writer(tmp_path)
            if session is not None and session.stages(path):  # a claimed output: committed with its run's set
                _finish_temp(tmp_path)
                session.stage(path, tmp_path)
                return path
            commit_temp(tmp_path, path)
        except OSError as exc:
            if exc.errno not in WRITE_ERRNOS or exc.filename not in (None, os.fspath(tmp_path), os.fspath(path)):
                raise
            raise UserError(f"{path}: cannot write it: {exc.strerror or exc}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


#: errors of writing a file that are the output's (its disk, its directory), not a bug
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                errno.ENAMETOOLONG}


def _finish_temp(tmp_path: Path) -> None:
    with open(tmp_path, "rb+") as fh:
        os.fsync(fh.fileno())
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)


def commit_temp(tmp_path: PathLike, path: PathLike) -> Path:
    """fsync a finished temporary (from :func:`make_temp`), give it the permissions a plain open()
    would, and move it onto ``path`` atomically."""
    tmp_path, path = Path(tmp_path), Path(path)
    _finish_temp(tmp_path)
    if path.is_dir() and not path.is_symlink():
        raise UserError(f"{path} is a directory; expected a file name")
    os.replace(tmp_path, path)
    return path


# --------------------------------------------------------------------------------- temporaries

TEMP_SUFFIXES = (".tmp", ".rows")
LEGACY_TEMP_AGE_S = 600.0  # a pid-less temporary (older versions) untouched this long is stale
REUSED_PID_TEMP_AGE_S = 86400.0  # a live pid's temporary untouched this long: the pid was reused


def _mkdir_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the directory of {path}: {exc.strerror or exc}") from None


def make_temp(path: PathLike, suffix: str = ".tmp") -> Path:
    """Create (empty, 0600) and return a temporary file beside ``path``: ``.<name>.<pid>.<random><suffix>``."""
    path = Path(path)
    _mkdir_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write in the directory of {path}: {exc.strerror or exc}") from None
    os.close(fd)
    return Path(tmp)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except PermissionError:  # someone else's live process
        return True
    except (OSError, OverflowError, ValueError):  # no such process (or not a pid at all)
        return False
    return True


def _temp_pattern(name: str) -> "re.Pattern[str]":
    sfx = "|".join(re.escape(s) for s in TEMP_SUFFIXES)
    return re.compile(rf"^\.{re.escape(name)}\.(?:(\d+)\.)?[A-Za-z0-9_]{{8}}(?:{sfx})$")


def clean_stale_temps(path: PathLike) -> List[Path]:
    """Remove temporaries of ``path`` left by a killed run: their process is gone (or they have not
    been touched for a day: the pid was reused, another host); pid-less ones of older versions once
    untouched for 10 minutes. Writers touch their temporary as they go. Returns the files removed."""
    path = Path(path)
    pat = _temp_pattern(path.name)
    removed: List[Path] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        m = pat.match(e.name)
        if not m:
            continue
        try:
            if not (e.is_file(follow_symlinks=False) or e.is_symlink()):
                continue
            age = now - e.stat(follow_symlinks=False).st_mtime
            if m.group(1) is not None:
                # its process is alive (or its pid was reused): stale only once untouched for a day
                if _pid_alive(int(m.group(1))) and age < REUSED_PID_TEMP_AGE_S:
                    continue
            elif age < LEGACY_TEMP_AGE_S:
                continue
            os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            continue
    return removed


# --------------------------------------------------------------------------------- output guard

Named = Union[PathLike, Tuple[str, PathLike]]


def _named(items: Iterable[Optional[Named]], default: str) -> List[Tuple[str, Path]]:
    out = []
    for it in items:
        if it is None:
            continue
        if isinstance(it, tuple):
            label, p = it
            if p is None:
                continue
            out.append((label, Path(p)))
        else:
            out.append((default, Path(it)))
    return out


def same_file(a: PathLike, b: PathLike) -> bool:
    """Same file: same inode (symlinks, hard links), or the same resolved path when one is missing."""
    a, b = Path(a), Path(b)
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return os.path.abspath(a) == os.path.abspath(b)


def _desc(label: str, p: Path) -> str:
    return f"{label} {p}" if label else str(p)


def _check_parent(label: str, out: Path) -> None:
    """The first existing ancestor of ``out`` must be a writable directory."""
    parent = Path(os.path.abspath(out)).parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{_desc(label, out)}: cannot create it, {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{_desc(label, out)}: cannot create it, {parent} is not writable")


def _input_files(inputs: List[Tuple[str, Path]]) -> List[Tuple[str, Path]]:
    """Inputs plus, for an input directory, the files directly in it (a bundle's, a run's)."""
    files = []
    for label, p in inputs:
        files.append((label, p))
        if p.is_dir():
            try:
                for e in os.scandir(p):
                    if e.is_file():
                        files.append((label, Path(e.path)))
            except OSError:
                pass
    return files


def guard_outputs(outputs: Sequence[Optional[Named]], inputs: Sequence[Optional[Named]] = (), *,
                  force: bool = False) -> None:
    """Refuse (UserError, one line) before anything is written when an output file

    * is one of the inputs (same inode: also through a symlink or a hard link; or, not existing
      yet, the same resolved path), or another output. Name the files an input directory
      contributes (a bundle's ``bundle.json`` and weights) as inputs of their own: an output may
      sit beside them;
    * is an existing directory, or its directory cannot be created;
    * exists and ``force`` is false (``--force`` replaces it, atomically).

    Then removes stale temporaries of every output (:func:`clean_stale_temps`).
    Items are paths or ``(label, path)`` (label: the flag, e.g. ``"--out"``); ``None`` is skipped.
    """
    outs = _named(outputs, "output")
    ins = _named(inputs, "input")
    for i, (label, out) in enumerate(outs):
        for in_label, src in ins:
            if same_file(out, src):
                raise UserError(f"{_desc(label, out)} is the input {_desc(in_label, src)}; refusing to "
                                "overwrite an input (choose another output path)")
        for o_label, other in outs[:i]:
            if same_file(out, other):
                raise UserError(f"{_desc(label, out)} is also {_desc(o_label, other)}; choose distinct outputs")
        _check_name(label, out)
        if out.is_dir():
            raise UserError(f"{_desc(label, out)} is a directory; expected a file name")
        _check_parent(label, out)
    session = current_session()
    for label, out in outs:  # claimed first: a second run on the same output stops here
        if session is not None:
            session.claim(label or "output", out, force=force)
    existing = [(label, out) for label, out in outs if out.exists() or out.is_symlink()]
    if existing and not force:
        label, out = existing[0]
        more = f" (and {len(existing) - 1} more output(s))" if len(existing) > 1 else ""
        raise UserError(f"{_desc(label, out)} already exists{more}; use --force to overwrite")
    for _, out in outs:
        clean_stale_temps(out)


#: characters a temporary adds to an output's name (``.<name>.<pid>.<random>.tmp``)
TEMP_NAME_EXTRA = 32


def _check_name(label: str, out: Path) -> None:
    """A name the file system can hold, with room for its temporary: no NUL byte, no component
    longer than the directory's limit (NAME_MAX, usually 255 bytes) less :data:`TEMP_NAME_EXTRA`."""
    text = os.fspath(out)
    if "\x00" in text:
        raise UserError(f"{_desc(label, out)!r}: a file name cannot hold a NUL byte")
    parent = Path(os.path.abspath(out)).parent
    while parent != parent.parent:
        try:
            if parent.is_dir():
                break
        except OSError:  # a component too long to even look up
            pass
        parent = parent.parent
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in Path(text).parts:
        n = len(os.fsencode(part))
        if n + TEMP_NAME_EXTRA > name_max:
            raise UserError(f"{_desc(label, out)}: the name {part[:40]!r}... is {n} bytes; this file system allows "
                            f"{name_max} (less {TEMP_NAME_EXTRA} for the temporary written first)")


def guard_output_dir(out: Named, inputs: Sequence[Optional[Named]] = (), *, files: Sequence[str] = (),
                     force: Optional[bool] = None) -> None:
    """Refuse an output directory that is (or is inside the same inode as) an input, that is an
    existing file, or that cannot be created; refuse ``files`` (names it will write) that are
    inputs. With ``force`` given, a non-empty existing directory is refused unless it is true.
    Stale temporaries of ``files`` are removed."""
    (label, d), = _named([out], "--out")
    _check_name(label, d)
    session = current_session()
    if session is not None:
        session.claim(label, d, force=force, is_dir=True)
    ins = _named(inputs, "input")
    for in_label, src in ins:
        if same_file(d, src):
            raise UserError(f"{_desc(label, d)} is the input {_desc(in_label, src)}; refusing to write "
                            "into an input (choose another output directory)")
    if (d.exists() or d.is_symlink()) and not d.is_dir():
        raise UserError(f"{_desc(label, d)} exists and is not a directory")
    if not d.exists():
        _check_parent(label, d)
    in_files = _input_files(ins)
    for name in files:
        f = d / name
        for in_label, src in in_files:
            if same_file(f, src):
                raise UserError(f"{_desc(label, d)}: its {name} would be the input {_desc(in_label, src)}; "
                                "refusing to overwrite an input")
    if force is not None and d.is_dir() and not force:
        try:
            non_empty = any(True for _ in os.scandir(d))
        except OSError as exc:
            raise UserError(f"{_desc(label, d)}: cannot read it: {exc.strerror or exc}") from None
        if non_empty:
            raise UserError(f"{_desc(label, d)} exists and is not empty; use --force to overwrite")
    for name in files:
        clean_stale_temps(d / name)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8; bytes of non-UTF-8 file names in it are shown as U+FFFD."""
    return atomic_write(path, lambda p: p.write_text(shown(text), encoding="utf-8"))


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
    file that cannot be read (missing, a directory, no permission) or is not UTF-8 text. A leading
    UTF-8 BOM is ignored, the rule of every text input (crossmodal_har.signals.text)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
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
