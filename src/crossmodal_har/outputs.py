"""Outputs that cannot be lost: a run claims its outputs before the work and commits them together.

Inside an :func:`output_session` (``crossmodal-har`` opens one around every command; library entry
points such as ``run_predict`` open their own):

* **Claim.** :func:`crossmodal_har.io.guard_outputs` / ``guard_output_dir`` take an exclusive lock
  on ``.<name>.lock`` beside each output (``fcntl.flock``: the kernel drops it when the process
  dies, so a killed run never leaves a stale claim). A second run on the same output is refused in
  one line while the first holds it.
* **Stage.** :func:`crossmodal_har.io.atomic_write` of a claimed file writes its temporary and
  keeps it; nothing of the run is visible yet (:func:`staged` gives the temporary to code that reads
  back what it wrote, e.g. the timeline drawn from the predictions CSV).
* **Commit, all or nothing.** When the run ends without an exception every staged file is moved
  onto its name. Without ``--force`` a file is linked into place (``os.link`` fails if the name was
  taken meanwhile: the run then refuses and removes what it had moved); with ``--force`` the old
  file is kept aside until every file is in place, and put back if one fails. On an exception
  (a full disk, Ctrl-C, a bad input) the temporaries are removed: no partial output.

Directories (a bundle, a report directory) are claimed, not staged: their files are written as
they are made.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from crossmodal_har.errors import UserError

PathLike = "str | os.PathLike[str]"


def _key(path: Path) -> str:
    return os.path.abspath(os.fspath(path))


def lock_path(path: Path) -> Path:
    """The claim file of output ``path``: ``.<name>.lock`` beside it."""
    return path.with_name(f".{path.name}.lock")


class OutputSession:
    """The outputs one run claimed and the temporaries it staged (see the module docstring)."""

    def __init__(self) -> None:
        self.locks: Dict[str, Tuple[int, Path]] = {}  # output key -> (fd, lock file)
        self.files: Dict[str, bool] = {}  # claimed file outputs: key -> force
        self.staged: Dict[str, Tuple[Path, Path]] = {}  # key -> (final path, temporary), in order
        self.made_dirs: List[Path] = []
        self.done = False

    # -- claims ------------------------------------------------------------------------------

    def claim(self, label: str, path: Path, *, force: Optional[bool], is_dir: bool = False) -> None:
        key = _key(path)
        if any(key in s.locks for s in _SESSIONS):  # this process holds it already (a command run by a command)
            return
        lock = lock_path(Path(key))
        while True:
            try:
                self._make_dirs(lock.parent)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise UserError(f"{label} {path}: cannot claim it ({lock}: {exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = _read_owner(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(f"{label} {path} is being written by another run{owner}; wait for it to "
                                    "finish or choose another output") from None
                raise UserError(f"{label} {path}: cannot lock {lock}: {exc.strerror or exc}") from None
            try:  # the file we locked must still be the one at that name (a finishing run unlinks it)
                same = os.path.samestat(os.fstat(fd), os.stat(lock))
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.locks[key] = (fd, lock)
        if not is_dir:
            self.files[key] = bool(force)

    def _make_dirs(self, d: Path) -> None:
        """Create ``d`` (for the claim file); the directories made are removed at release if empty."""
        missing = []
        while not d.exists() and d != d.parent:
            missing.append(d)
            d = d.parent
        for m in reversed(missing):
            m.mkdir(exist_ok=True)
            self.made_dirs.append(m)

    def release(self) -> None:
        for fd, lock in self.locks.values():
            try:
                os.unlink(lock)
            except OSError:
                pass
            os.close(fd)
        self.locks.clear()
        for d in reversed(self.made_dirs):  # a refused or failed run leaves no empty directory
            try:
                d.rmdir()
            except OSError:
                pass
        self.made_dirs.clear()

    # -- staging and commit -----------------------------------------------------------------

    def stages(self, path: Path) -> bool:
        return not self.done and _key(path) in self.files

    def stage(self, path: Path, tmp: Path) -> None:
        old = self.staged.pop(_key(path), None)
        if old is not None:
            Path(old[1]).unlink(missing_ok=True)
        self.staged[_key(path)] = (Path(path), Path(tmp))

    def commit(self) -> None:
        """Move every staged file onto its name, all or nothing (see the module docstring)."""
        if self.done:
            return
        self.done = True
        items = list(self.staged.items())
        moved: List[Path] = []
        kept: List[Tuple[Path, Path]] = []  # (path, its old file set aside) for --force
        try:
            for key, (path, tmp) in items:
                if self.files.get(key):
                    if path.exists() and not path.is_dir():
                        aside = tmp.with_name(tmp.name + ".old")
                        os.link(path, aside)
                        kept.append((path, aside))
                    os.replace(tmp, path)
                else:
                    try:
                        os.link(tmp, path)
                    except FileExistsError:
                        raise UserError(f"{path} appeared while this run was working (written by something "
                                        "else); nothing of this run was kept: use --force to replace it") from None
                    tmp.unlink()
                moved.append(path)
        except BaseException as exc:
            for path in moved:
                path.unlink(missing_ok=True)
            for path, aside in kept:
                os.replace(aside, path)
            if isinstance(exc, OSError):
                raise UserError(f"{path}: cannot write it: {exc.strerror or exc}; nothing of this run was "
                                "kept") from None
            raise
        finally:
            for _, aside in kept:
                aside.unlink(missing_ok=True)
            for _, (_, tmp) in items:  # those not moved (a failed commit)
                tmp.unlink(missing_ok=True)
            self.staged.clear()

    def discard(self) -> None:
        for _, tmp in self.staged.values():
            tmp.unlink(missing_ok=True)
        self.staged.clear()
        self.done = True


def _read_owner(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


_SESSIONS: List[OutputSession] = []


def current() -> Optional[OutputSession]:
    """The innermost open session, or None."""
    return _SESSIONS[-1] if _SESSIONS else None


@contextmanager
def output_session() -> Iterator[OutputSession]:
    """Claim, stage and commit a run's outputs (module docstring); sessions nest, each its own run."""
    session = OutputSession()
    _SESSIONS.append(session)
    try:
        yield session
        session.commit()
    finally:
        _SESSIONS.remove(session)
        session.discard()
        session.release()


def staged(path: PathLike) -> Path:
    """Where the file this run wrote as ``path`` is now: its staged temporary, else ``path``."""
    s = current()
    if s is not None:
        hit = s.staged.get(_key(Path(path)))
        if hit is not None:
            return hit[1]
    return Path(path)


def commit_current() -> None:
    """Commit the innermost session's outputs now (a run that fails after writing what the user
    should see, e.g. ``predict`` when no window could be classified)."""
    s = current()
    if s is not None:
        s.commit()

