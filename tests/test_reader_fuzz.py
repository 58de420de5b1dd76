"""A Hypothesis test per reader (issue 23, item 6): every device format, CSV and Parquet, fed a valid
file whose header and tail are then damaged at random (bytes overwritten in the header, the tail cut
and random bytes appended; for zip formats, inside the members, re-zipped; for text headers, a
header value replaced). The reader must give a result or one line (a UserError/DataError without a
line break), within bounded time and memory. ``HARDENING_EXAMPLES`` sets the examples per reader
(small in CI)."""

from __future__ import annotations

import io
import os
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from helpers.files_actigraph_apdm_empatica import apdm_sensor, write_apdm_v5, write_e4_zip, write_gt3x
from helpers.files_axivity_geneactiv import make_signal, write_cwa, write_geneactiv

from crossmodal_har.errors import UserError
from crossmodal_har.signals.recording import iter_chunks
from crossmodal_har.signals.units import Units

EXAMPLES = int(os.environ.get("HARDENING_EXAMPLES", "12"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MAX_SECONDS = 20.0  # per example, generous for a loaded 2-core CI machine; a valid file reads in < 1 s
MAX_PEAK_BYTES = 256 * 1024 ** 2
START = 1_700_000_000


def _valid(fmt: str, d: Path) -> Path:
    sig = make_signal(80 * 30, 100.0)[:, :3]
    if fmt == "cwa":
        return write_cwa(d / "r.cwa", sig, START, 100.0)
    if fmt == "geneactiv":
        return write_geneactiv(d / "r.bin", make_signal(300 * 6, 100.0)[:, :3], START, 100.0)
    if fmt == "apdm":
        write_apdm_v5(d / "r.h5", [apdm_sensor("SI-1", "Lumbar", 600, 128, START * 1_000_000, 0)])
        return d / "r.h5"
    if fmt == "gt3x":
        write_gt3x(d / "r.gt3x", np.tile([0.0, 0.0, 1.0], (30 * 40, 1)), 30, START)
        return d / "r.gt3x"
    if fmt == "empatica":
        write_e4_zip(d / "r.zip", np.tile([0, 0, 64], (32 * 40, 1)), START)
        return d / "r.zip"
    rng = np.random.default_rng(0)
    df = pd.DataFrame(np.column_stack([np.arange(600) / 50.0, rng.normal(0, 1, (600, 6))]),
                      columns=["time", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"])
    if fmt == "parquet":
        df.to_parquet(d / "r.parquet", index=False)
        return d / "r.parquet"
    df.to_csv(d / "r.csv", index=False, float_format="%.5f")
    return d / "r.csv"


damage = st.fixed_dictionaries({
    "header": st.lists(st.tuples(st.integers(0, 1023), st.binary(min_size=1, max_size=8)), max_size=4),
    "cut": st.one_of(st.none(), st.integers(1, 4096)),
    "tail": st.binary(max_size=64),
    "value": st.one_of(st.none(), st.sampled_from(["0", "-1", "nan", "inf", "1e308", "1e-300", "99999999999",
                                                   "", "x", "1" * 40, "2000-01-01 00:00:00:000",
                                                   "1970-01-02 00:00:00:000"])),
    "line": st.integers(0, 40),
})


def _damage_bytes(data: bytes, dmg) -> bytes:
    b = bytearray(data)
    for at, chunk in dmg["header"]:
        b[at:at + len(chunk)] = chunk if at < len(b) else b""
    if dmg["cut"] is not None:
        b = b[:max(1, len(b) - dmg["cut"])]
    return bytes(b) + dmg["tail"]


def _damage_text_header(data: bytes, dmg) -> bytes:
    """Replace the value of one ``key:value`` (or CSV) header line."""
    if dmg["value"] is None:
        return data
    lines = data.split(b"\n")
    k = dmg["line"] % min(len(lines), 60)
    line = lines[k]
    sep = b":" if b":" in line else b","
    key = line.split(sep, 1)[0]
    lines[k] = key + sep + dmg["value"].encode()
    return b"\n".join(lines)


def _damage(fmt: str, path: Path, dmg) -> None:
    if fmt in ("gt3x", "empatica"):  # inside the members: a damaged zip alone stops at the zip layer
        with zipfile.ZipFile(path) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        for name in list(members):
            if name in ("info.txt", "ACC.csv"):
                members[name] = _damage_text_header(members[name], dmg)
            if name in ("log.bin", "ACC.csv"):
                members[name] = _damage_bytes(members[name], {**dmg, "header": dmg["header"][:1]})
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        path.write_bytes(buf.getvalue())
        return
    data = path.read_bytes()
    if fmt in ("geneactiv", "csv"):
        data = _damage_text_header(data, dmg)
    path.write_bytes(_damage_bytes(data, dmg))


def _run(path: Path, fmt: str):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        n = sum(len(c.t) for c in iter_chunks(path, Units(), chunk_rows=4096,
                                              fmt=None if fmt in ("csv", "parquet") else fmt))
        err = None
    except UserError as exc:  # DataError is one
        n, err = None, str(exc)
    finally:
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return n, err, seconds, peak


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("fmt", ["cwa", "geneactiv", "apdm", "gt3x", "empatica", "csv", "parquet"])
def test_random_headers_and_tails_give_a_result_or_one_line(tmp_path_factory, fmt):
    pytest.importorskip("h5py") if fmt == "apdm" else None
    base = tmp_path_factory.mktemp(f"fuzz_{fmt}")
    valid = _valid(fmt, base)
    n_valid, err, _, _ = _run(valid, fmt)
    assert err is None and n_valid > 0, err
    original = valid.read_bytes()

    @SETTINGS
    @given(dmg=damage)
    @example(dmg={"header": [(0, bytes(5))], "cut": None, "tail": b"", "value": None, "line": 0})
    @example(dmg={"header": [], "cut": 7, "tail": b"\x1e", "value": "99999999999", "line": 5})
    @example(dmg={"header": [], "cut": None, "tail": b"", "value": "1e308", "line": 3})
    def check(dmg):
        path = base / f"damaged{valid.suffix}"
        path.write_bytes(original)
        _damage(fmt, path, dmg)
        before = path.read_bytes()
        n, err, seconds, peak = _run(path, fmt)
        assert seconds < MAX_SECONDS, f"{fmt}: {seconds:.1f} s"
        assert peak < MAX_PEAK_BYTES, f"{fmt}: peak {peak / 2 ** 20:.0f} MiB"
        if err is not None:
            assert "\n" not in err and err.strip(), repr(err)
            assert str(path) in err or "time zone" in err, err  # names the file
        else:
            assert n >= 0
        assert path.read_bytes() == before  # never modified

    check()
