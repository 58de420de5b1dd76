"""Errors that the CLI turns into one clean line (no traceback) and a non-zero exit."""

from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


def single_line(text: str) -> str:
    """``text`` on one line: line breaks (and the spaces around them) become one space. Every error
    the CLI prints is one line, whatever a third-party library's message holds."""
    lines = [ln.strip() for ln in str(text).splitlines()]
    return " ".join(ln for ln in lines if ln) if len(lines) > 1 else str(text)


class UserError(Exception):
    """A problem the user can fix (bad arguments, bad config). Printed as one line, exit status 2."""


class ConfigError(UserError):
    """An invalid or unknown configuration key/value."""


class DataError(UserError):
    """Bad input data. Always names the file, and the line where one applies.

    Args:
        path: the offending file (or directory).
        message: what is wrong, in words a user understands.
        line: 1-based line number in a text file (the header is line 1), if known.
    """

    def __init__(self, path: Optional[PathLike], message: str, line: Optional[int] = None):
        self.path = None if path is None else os.fspath(path)
        self.message = single_line(message)
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"


class PartialRunError(UserError):
    """A run finished but skipped some inputs (listed in its report). Exit status 3."""

    exit_code = 3
