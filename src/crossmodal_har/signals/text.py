"""Rules every text input shares (recordings' CSV, ``labels.csv`` of both formats, ``dataset.json``
and the other JSON inputs): how text is decoded and how its contents are quoted in error messages.

* UTF-8, with **one optional leading UTF-8 byte-order mark, which is ignored** (spreadsheet programs
  write one when saving "CSV UTF-8"). A BOM anywhere else is content; when an error message quotes
  such text, the BOM is shown as ``<a UTF-8 BOM>`` (see :data:`BOM_SHOWN`), never as an invisible
  character.
* Numbers in messages are printed short (:func:`short_number`, 6 significant digits): a cell of
  ``1e300`` or of 300 digits is shown as ``1e+300``, never as a 300-digit number.
* Quoted cells are cut to :data:`QUOTE_CHARS` characters (:func:`quote`).
* Text quoted from elsewhere stays on one line: a caught exception as ``Type: first line``
  (:func:`exception_line`), other text with its whitespace collapsed (:func:`one_line`).

A leaf module: it imports nothing of the package but :mod:`crossmodal_har.errors`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from crossmodal_har.errors import DataError

PathLike = Union[str, "os.PathLike[str]"]
BOM = "\ufeff"
BOM_SHOWN = "<a UTF-8 BOM>"
QUOTE_CHARS = 40


def strip_bom(text: str) -> str:
    """``text`` without one leading UTF-8 BOM (the one rule for every text input)."""
    return text[1:] if text.startswith(BOM) else text


def decode_text(raw: bytes, path: PathLike) -> str:
    """Decode a text input: UTF-8, a leading BOM ignored. Raises DataError naming ``path``."""
    try:
        return strip_bom(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DataError(path, "not a UTF-8 text file") from None


def read_text(path: PathLike) -> str:
    """Read a text input (:func:`decode_text`); an unreadable file is a DataError naming it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror or exc}") from None
    return decode_text(raw, path)


def visible(text: str) -> str:
    """``text`` for an error message: BOMs named (:data:`BOM_SHOWN`)."""
    return text.replace(BOM, BOM_SHOWN)


def quote(text: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of a (cut) user string for an error message, BOMs named."""
    s = str(text)
    cut = s if len(s) <= limit else s[:limit] + "..."
    return repr(cut).replace("\\ufeff", BOM_SHOWN).replace(BOM, BOM_SHOWN)


def exception_line(exc: BaseException) -> str:
    """A caught exception inside an error message: ``Type: first line of its text`` (the text cut to
    160 characters). A bare ``error`` class (``zlib.error``, ``struct.error``) is named with its module."""
    text = str(exc).strip().splitlines()
    name = type(exc).__name__ if type(exc).__name__ != "error" else f"{type(exc).__module__}.error"
    return f"{name}: {text[0][:160]}" if text else name


def one_line(value: Any, limit: int = 200) -> str:
    """``str(value)`` for an error message on one line: runs of whitespace (newlines included) become one
    space; longer than ``limit`` characters, it is cut and ends with ``...``."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit] + "..."


def short_number(value: Any) -> str:
    """A number for an error message: 6 significant digits (``1e+300``, ``0.1``, ``12``); a huge
    integer is shown in the same short form; anything else as :func:`quote` would."""
    if isinstance(value, np.number):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return quote(value)
    if isinstance(value, int):
        if abs(value) < 10 ** 15:
            return str(value)
        try:
            return f"{float(value):.6g}"
        except OverflowError:
            digits = len(str(abs(value)))
            return f"{'-' if value < 0 else ''}~1e+{digits - 1}"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.6g}"


def finite_number(value: Any) -> bool:
    """Whether a JSON value is a real, finite number (not a bool, not a huge int beyond float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def shown(value: Any) -> str:
    """``str(value)`` as it can be shown in a UTF-8 file or page: a file name's bytes that are not
    UTF-8 (Python keeps them as lone surrogates) become U+FFFD replacement characters."""
    s = str(value)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    try:  # undecodable bytes of a file name (surrogateescape): decode them again, replaced
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # other lone surrogates (e.g. "\udcff" escaped in a JSON file)
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in s)


#: what str.splitlines() breaks a line at: none of them may be inside a name that must stay one line
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def md_cell(value: Any) -> str:
    """``value`` as text in one Markdown table cell: ``|`` escaped (it would split the cell), line
    breaks shown as ``\\n`` (they would end the row), backslashes kept. Names are data: a label, a
    class, a method name reaches a report as what it is."""
    s = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return s.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")

