"""The CSV reader's fast pass (pandas without ``skipinitialspace``) gives exactly what the exact pass
(``skipinitialspace=True``, the reader's rule) gives, on files where the two would read cells
differently: the reference here is pandas reading the whole file with the exact options."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.errors import DataError
from crossmodal_har.signals import tables
from crossmodal_har.signals.tables import COLUMNS, iter_csv

HEADER = ",".join(COLUMNS)


def _rows(n, fmt="{:.5f}"):
    rng = np.random.default_rng(n)
    return [",".join(fmt.format(v) for v in [i * 0.02, *rng.normal(size=6)]) for i in range(n)]


def _reference(path: Path) -> np.ndarray:
    df = pd.read_csv(path, skipinitialspace=True, skip_blank_lines=False, engine="c",
                     dtype={c: np.float64 for c in COLUMNS})
    df.columns = [c.strip() for c in df.columns]
    return df[list(COLUMNS)].to_numpy(dtype=np.float64)


def _read(path: Path, chunk_rows: int):
    blocks = list(iter_csv(path, chunk_rows, strict=False))
    assert [b[1] for b in blocks] == list(range(0, chunk_rows * len(blocks), chunk_rows))
    return np.concatenate([b[0] for b in blocks])


def _passes(monkeypatch):
    """Counts the parser's starts by pass: [fast, exact]."""
    seen = [0, 0]
    real = pd.read_csv

    def counting(*a, **kw):
        seen[bool(kw.get("skipinitialspace"))] += 1
        return real(*a, **kw)

    monkeypatch.setattr(pd, "read_csv", counting)
    return seen


def _late(rows, line_cell):
    rows = list(rows)
    rows[17] = line_cell
    return rows


CASES = {
    "clean": (_rows(40), [1, 0]),
    "quoted header": (_rows(40), [1, 0]),
    "leading spaces": ([r.replace(",", ",  ") for r in _rows(40)], [1, 0]),
    # the fast pass stops at the 6th block of 3 rows, the exact pass yields from there on
    "late ' nan'": (_late(_rows(40), "0.34, nan,0.1,0.2,0.3,0.4,0.5"), [1, 1]),
    "late cell of spaces": (_late(_rows(40), "0.34,   ,0.1,0.2,0.3,0.4,0.5"), [1, 1]),
    "late ' NA'": (_late(_rows(40), "0.34, NA,0.1,0.2,0.3,0.4,0.5"), [1, 1]),
    "quoted numbers": (_late(_rows(40), '0.34, "0.5",0.1,0.2,0.3,0.4,0.5'), [1, 1]),
    "blank line": (_late(_rows(40), ""), [1, 0]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_pass_equals_exact_pass(tmp_path, monkeypatch, case):
    body, passes = CASES[case]
    header = ",".join(f'"{c}"' for c in COLUMNS) if case == "quoted header" else HEADER
    path = tmp_path / "r.csv"
    path.write_text("\n".join([header] + body) + "\n")
    want = _reference(path)
    seen = _passes(monkeypatch)
    got = _read(path, chunk_rows=3)
    assert seen == passes, seen
    np.testing.assert_array_equal(got, want)


def test_quoted_multiline_cell_in_an_extra_column(tmp_path, monkeypatch):
    """Without the quote rule the fast pass would cut `` "a\nb"`` (a quote after a space) into two
    rows, both parsed without an error (a row of missing values, then the data); the quote sends
    the file to the exact pass, which reads one row, as pandas does."""
    rows = ["x," + r for r in _rows(20)]
    rows[8] = ' "a\nb",0.16,0.1,0.2,0.3,0.4,0.5,0.6'
    path = tmp_path / "r.csv"
    path.write_text("\n".join(["note," + HEADER] + rows) + "\n")
    want = _reference(path)
    seen = _passes(monkeypatch)
    np.testing.assert_array_equal(_read(path, chunk_rows=4), want)
    assert seen == [1, 1]
    monkeypatch.setattr(tables._QuoteFreeReader, "_seen", lambda self, data: None)  # no quote rule
    assert len(_read(path, chunk_rows=4)) == len(want) + 1  # the case this test is about


def test_strict_error_in_a_late_block_names_its_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("\n".join([HEADER] + _late(_rows(40), "0.34, nan,0.1,0.2,0.3,0.4,0.5")) + "\n")
    with pytest.raises(DataError, match=r"r\.csv:19: "):
        list(iter_csv(path, 3, strict=True))


def test_unparseable_cell_is_the_exact_pass_error(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("\n".join([HEADER] + _late(_rows(40), "0.34,abc,0.1,0.2,0.3,0.4,0.5")) + "\n")
    with pytest.raises(DataError, match=r"r\.csv:19: "):
        list(iter_csv(path, 3, strict=False))


def test_line_longer_than_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "MAX_LINE_BYTES", 400)
    rows = _rows(20)
    rows[10] = rows[10] + "," + "9" * 1000
    path = tmp_path / "r.csv"
    path.write_text("\n".join([HEADER + ",extra"] + [r + ",1" for r in rows]) + "\n")
    with pytest.raises(DataError, match="longer than"):
        list(iter_csv(path, 3, strict=False))


@pytest.mark.parametrize("eol", ["\r", "\r\n"])
def test_carriage_return_line_ends(tmp_path, monkeypatch, eol):
    path = tmp_path / "r.csv"
    path.write_bytes((eol.join([HEADER] + _rows(30)) + eol).encode())
    want = _reference(path)
    seen = _passes(monkeypatch)
    np.testing.assert_array_equal(_read(path, chunk_rows=4), want)
    assert seen[1] == (1 if eol == "\r" else 0)  # "\r" alone: the exact pass reads it


def _raised(path, chunk_rows=3, strict=False):
    with pytest.raises(DataError) as e:
        list(iter_csv(path, chunk_rows, strict=strict))
    return str(e.value)


def test_byte_order_mark_on_line_2_is_a_number_error(tmp_path):
    """pandas strips a BOM from the first line it reads: both passes read the header line first, so
    a BOM on line 2 is a cell that is not a number, as it always was."""
    path = tmp_path / "r.csv"
    path.write_bytes((HEADER + "\n\ufeff0,1,2,3,4,5,6\n0.02,1,2,3,4,5,6\n").encode())
    assert "r.csv:2: " in _raised(path)


def test_quote_left_open_in_the_header(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    path.write_text(HEADER + ',"note\n' + "\n".join(r + ",7" for r in _rows(5)) + "\n")
    assert "EOF inside string" in _raised(path)
    # closed on a later line: the header swallows the lines before it, as pandas reads the file
    rows = [r + ",7" for r in _rows(3000)]
    rows[2500] += '"'
    path.write_text(HEADER + ',"note\n' + "\n".join(rows) + "\n")
    want = pd.read_csv(path, skipinitialspace=True, skip_blank_lines=False, engine="c",
                       dtype={c: np.float64 for c in COLUMNS})[list(COLUMNS)].to_numpy()
    np.testing.assert_array_equal(_read(path, chunk_rows=64), want)


def test_header_quotes_after_spaces_go_to_the_exact_pass(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    path.write_text(HEADER + ', "note"\n' + "\n".join(r + ",1" for r in _rows(20)) + "\n")
    want = _reference(path)
    seen = _passes(monkeypatch)
    np.testing.assert_array_equal(_read(path, chunk_rows=3), want)
    assert seen == [0, 1]


def test_bad_utf8_in_a_long_header_is_the_exact_pass_error(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes((HEADER + ",x" * 5000).encode() + b"\xff\n" + ("\n".join(r + ",1" * 5000 for r in _rows(5))
                                                                   + "\n").encode())
    assert "utf-8" in _raised(path)
