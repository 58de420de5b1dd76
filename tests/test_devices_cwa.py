"""Axivity .cwa (issue 14 item 1): files written per OpenMovement's cwa.h are read back with the
right units, rate and start time, agree with scikit-digital-health's independent reader, stream in
chunks without changing the result, and bad files are one-line DataErrors naming the file."""

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pytest

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals.devices import open_device
from crossmodal_har.signals.devices.cwa import CwaReader, _rows

sys.path.insert(0, str(Path(__file__).parent))
from helpers.files_axivity_geneactiv import cwa_packed_quantised, make_signal, write_cwa  # noqa: E402

# 2024-07-01 12:00:00.37 on the device's wall clock (summer time in Berlin: UTC+02:00)
WALL = (dt.datetime(2024, 7, 1, 12, 0, 0) - dt.datetime(1970, 1, 1)).total_seconds() + 0.37
BERLIN_OFFSET = 7200.0

KINDS = {  # name -> (writer options, samples)
    "ax3": ({}, 800),
    "ax3_packed": ({"packed": True}, 840),
    "ax6": ({"gyro": True}, 800),
}


def _write(tmp_path, kind, rate=100.0, fractional=True, **extra):
    opts, n = KINDS[kind]
    sig = make_signal(n, rate, seed=len(kind))
    kw = dict(packed=opts.get("packed", False), fractional=fractional, **extra)
    if opts.get("gyro"):
        kw["gyro_dps"] = sig[:, 3:]
    path = write_cwa(tmp_path / f"{kind}.cwa", sig[:, :3], WALL, rate, **kw)
    return path, sig


def _read_all(reader, chunk=10_000):
    parts = list(reader.iter_chunks(chunk))
    assert all(len(t) <= chunk for t, _ in parts)
    return np.concatenate([t for t, _ in parts]), np.concatenate([x for _, x in parts])


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("fractional", [True, False])
def test_units_rate_start_time(tmp_path, kind, fractional):
    path, sig = _write(tmp_path, kind, fractional=fractional)
    r = open_device(path, tz="Europe/Berlin")
    assert isinstance(r, CwaReader)
    assert r.info.rate_hz == 100.0
    ax6 = kind == "ax6"
    assert r.info.channels == ("acc+gyro" if ax6 else "acc")
    assert r.info.device["model"] == ("AX6" if ax6 else "AX3")
    # the wall clock is local time in --tz: UTC = wall - 2 h (to the 15-bit fraction of a second)
    assert r.info.start_time_s == pytest.approx(WALL - BERLIN_OFFSET, abs=1e-4)
    assert "Europe/Berlin" in r.info.start_time_source and "+02:00" in r.info.start_time_source
    t, x = _read_all(r)
    assert x.shape == (len(sig), 6)
    assert t[0] == pytest.approx(WALL - BERLIN_OFFSET, abs=1e-4)
    np.testing.assert_allclose(np.diff(t), 0.01, atol=1e-5)
    if kind == "ax3_packed":
        np.testing.assert_allclose(x[:, :3], cwa_packed_quantised(sig[:, :3]), atol=1e-12)
    else:
        step = 1 / 4096 if ax6 else 1 / 256  # one unit of the file's accelerometer scale
        np.testing.assert_allclose(x[:, :3], sig[:, :3], atol=step / 2 + 1e-12)
    if ax6:
        # gyro stored in deg/s at 2000 dps full scale -> rad/s
        np.testing.assert_allclose(x[:, 3:], np.deg2rad(sig[:, 3:]), atol=np.deg2rad(2000 / 32768) / 2 + 1e-12)
    else:
        assert np.isnan(x[:, 3:]).all()


def test_utc_default_and_bad_zone(tmp_path):
    path, _ = _write(tmp_path, "ax3")
    r = open_device(path)
    assert r.info.start_time_s == pytest.approx(WALL, abs=1e-4)
    with pytest.raises(UserError, match="unknown time zone"):
        open_device(path, tz="Mars/Olympus")


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("fractional", [True, False])
def test_agrees_with_skdh(tmp_path, kind, fractional):
    skdh_io = pytest.importorskip("skdh.io")
    path, _ = _write(tmp_path, kind, fractional=fractional)
    t, x = _read_all(open_device(path, tz="UTC"))
    with pytest.warns(UserWarning):  # skdh: naive local timestamps
        ref = skdh_io.ReadCwa().predict(file=str(path))
    assert ref["fs"] == 100.0
    np.testing.assert_array_equal(x[:, :3], ref["accel"])
    if kind == "ax6":
        np.testing.assert_allclose(x[:, 3:], np.deg2rad(ref["gyro"]), rtol=1e-12, atol=1e-12)
    # skdh ignores the fraction of a second (so it may be up to one sample early) and keeps its
    # times to ~1e-5 s; with whole-second timestamps the two agree
    assert np.abs(ref["time"] - t).max() <= (0.01 if fractional else 0.0) + 1e-4


@pytest.mark.parametrize("kind", ["ax3", "ax6"])
def test_chunk_size_does_not_change_results(tmp_path, kind):
    path, _ = _write(tmp_path, kind)
    r = open_device(path)
    ref_t, ref_x = _read_all(r, 10 ** 6)
    for chunk in (1, 7, 40, 81, 333):
        t, x = _read_all(r, chunk)
        np.testing.assert_array_equal(t, ref_t)
        np.testing.assert_array_equal(x, ref_x)


def test_times_follow_the_device_clock(tmp_path):
    """A device sampling at 98 Hz (nominal 100): sample times come from the sector timestamps."""
    opts, n = KINDS["ax6"]
    sig = make_signal(4000, 98.0)
    path = write_cwa(tmp_path / "drift.cwa", sig[:, :3], WALL, 100.0, gyro_dps=sig[:, 3:], true_rate_hz=98.0)
    t, _ = _read_all(open_device(path))
    assert np.all(np.diff(t) > 0)
    np.testing.assert_allclose(t[-1] - t[0], (len(t) - 1) / 98.0, atol=2e-3)


def test_truncated_file(tmp_path):
    path, _ = _write(tmp_path, "ax6")
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(DataError, match="truncated") as e:
        open_device(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    path.write_bytes(data[:1024])
    with pytest.raises(DataError, match="no data sector"):
        open_device(path)


def test_corrupt_sector(tmp_path):
    path, _ = _write(tmp_path, "ax3")
    data = bytearray(path.read_bytes())
    data[1024 + 3 * 512 + 100] ^= 0x55  # a sample byte of sector 3
    path.write_bytes(bytes(data))
    r = open_device(path)
    with pytest.raises(DataError, match="checksum mismatch in sector 3") as e:
        _read_all(r)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_not_a_cwa_file(tmp_path):
    p = tmp_path / "x.cwa"
    p.write_text("time,acc_x,acc_y,acc_z\n0,0,0,1\n")
    with pytest.raises(DataError, match="not an Axivity"):
        open_device(p)
    p.write_bytes(b"")
    with pytest.raises(DataError, match="not an Axivity"):
        open_device(p)
    # garbage where a data sector should be
    path, _ = _write(tmp_path, "ax3")
    data = bytearray(path.read_bytes())
    data[1024 + 512:1024 + 1024] = bytes(range(256)) * 2
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="sector 1 .* not a data sector"):
        _read_all(open_device(path))


def test_trailing_erased_sectors_are_ignored(tmp_path):
    path, sig = _write(tmp_path, "ax3")
    path.write_bytes(path.read_bytes() + b"\xff" * 1024)
    t, x = _read_all(open_device(path))
    assert len(t) == len(sig)


def test_sector_rows_are_the_indexed_samples():
    """The reader's one-copy selection of sectors' samples equals ``values[sectors][keep]`` for
    consecutive and scattered sectors, full or partly filled, and is not a view of ``values``."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(9, 4, 6))
    for sectors in (np.arange(2, 7), np.array([0, 3, 4, 8]), np.array([5])):
        full = np.ones((len(sectors), 4), dtype=bool)
        got = _rows(values, sectors, None)
        assert np.array_equal(got, values[sectors][full]) and not np.shares_memory(got, values)
        keep = full.copy()
        keep[-1, 2:] = False  # the last sector holds 2 samples
        assert np.array_equal(_rows(values, sectors, keep), values[sectors][keep])
