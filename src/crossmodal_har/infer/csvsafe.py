"""One rule for text cells the runtime writes into CSV files that people open in spreadsheets
(``predict``'s class names and column names).

Class names come from a user's ``labels.csv`` through a bundle, so they are data, never formulas:
a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written with a
leading apostrophe (``'=SUM(A1)``), which spreadsheet programs show as text (the OWASP "CSV
injection" rule). A plain number such as ``-1`` or ``+2.5e3`` is left as it is (it is not a
formula, and integer class names are common). Cells holding a comma, a quote or a line break are
quoted as RFC 4180 says. The choice is to escape on output rather than refuse such names when a
classifier is trained: the bundle keeps the user's names exactly, and every CSV writer shows them
safely.
"""

from __future__ import annotations

import re

from crossmodal_har.signals.text import shown

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def formula_safe(value: object) -> str:
    """``value`` as text a spreadsheet shows as text (a leading apostrophe before a formula); for
    writers that quote cells themselves (pandas)."""
    s = shown(value)
    return "'" + s if s.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(s) else s


def csv_cell(value: object) -> str:
    """``value`` as one CSV cell: formula-safe (see the module docstring), quoted when needed."""
    s = formula_safe(value)
    if any(ch in s for ch in ',"\n\r'):
        s = '"' + s.replace('"', '""') + '"'
    return s
