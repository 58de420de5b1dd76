"""GENEActiv .bin (issue 14 item 1): files with the manufacturer's header and pages are read back
with the right units (calibrated g), rate and start time (header time zone), agree with
scikit-digital-health's independent reader, stream in chunks, and bad files are one-line
DataErrors naming the file."""

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pytest

from crossmodal_har.errors import DataError
from crossmodal_har.signals.devices import open_device
from crossmodal_har.signals.devices.geneactiv import GeneactivReader

sys.path.insert(0, str(Path(__file__).parent))
from helpers.files_axivity_geneactiv import geneactiv_quantised, make_signal, write_geneactiv  # noqa: E402

WALL = (dt.datetime(2024, 3, 5, 9, 30, 0) - dt.datetime(1970, 1, 1)).total_seconds() + 0.5


def _read_all(reader, chunk=10_000):
    parts = list(reader.iter_chunks(chunk))
    assert all(len(t) <= chunk for t, _ in parts)
    return np.concatenate([t for t, _ in parts]), np.concatenate([x for _, x in parts])


@pytest.mark.parametrize("rate, zone, offset", [(100.0, "GMT +01:00", 3600.0), (75.0, "GMT -05:30", -19800.0)])
def test_units_rate_start_time(tmp_path, rate, zone, offset):
    sig = make_signal(1200, rate)
    path = write_geneactiv(tmp_path / "g.bin", sig[:, :3], WALL, rate, time_zone=zone)
    r = open_device(path, tz="Asia/Tokyo")  # the header's zone wins over --tz
    assert isinstance(r, GeneactivReader)
    assert r.info.rate_hz == rate
    assert r.info.channels == "acc"
    assert r.info.n_samples == 1200
    assert r.info.start_time_s == pytest.approx(WALL - offset, abs=1e-6)
    assert zone.split()[1] in r.info.start_time_source
    t, x = _read_all(r)
    np.testing.assert_allclose(t - t[0], np.arange(1200) / rate, atol=1e-6)
    assert t[0] == pytest.approx(WALL - offset, abs=1e-6)
    np.testing.assert_allclose(x[:, :3], geneactiv_quantised(sig[:, :3]), atol=1e-12)
    np.testing.assert_allclose(x[:, :3], sig[:, :3], atol=0.5 * 100 / 25460 + 1e-9)  # half a count
    assert np.isnan(x[:, 3:]).all()


def test_no_time_zone_in_header_uses_tz(tmp_path):
    sig = make_signal(300, 100.0)
    path = write_geneactiv(tmp_path / "g.bin", sig[:, :3], WALL, 100.0, time_zone=None)
    r = open_device(path, tz="Europe/London")  # 5 March: GMT
    assert r.info.start_time_s == pytest.approx(WALL, abs=1e-6)
    assert "--tz Europe/London" in r.info.start_time_source
    r = open_device(path, tz="Europe/Helsinki")  # UTC+02:00 in March
    assert r.info.start_time_s == pytest.approx(WALL - 7200, abs=1e-6)


def test_agrees_with_skdh(tmp_path):
    skdh_io = pytest.importorskip("skdh.io")
    sig = make_signal(1500, 100.0)
    path = write_geneactiv(tmp_path / "g.bin", sig[:, :3], WALL, 100.0, time_zone="GMT +01:00")
    t, x = _read_all(open_device(path))
    with pytest.warns(UserWarning):  # skdh: naive local timestamps
        ref = skdh_io.ReadBin().predict(file=str(path))
    assert ref["fs"] == 100.0
    np.testing.assert_allclose(x[:, :3], ref["accel"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(t + 3600.0, ref["time"], rtol=0, atol=1e-5)  # skdh keeps the local clock


def test_chunk_size_does_not_change_results(tmp_path):
    sig = make_signal(1800, 100.0)
    path = write_geneactiv(tmp_path / "g.bin", sig[:, :3], WALL, 100.0)
    r = open_device(path)
    ref_t, ref_x = _read_all(r, 10 ** 6)
    for chunk in (1, 299, 300, 301, 1000):
        t, x = _read_all(r, chunk)
        np.testing.assert_array_equal(t, ref_t)
        np.testing.assert_array_equal(x, ref_x)


def test_truncated_file(tmp_path):
    sig = make_signal(900, 100.0)
    path = write_geneactiv(tmp_path / "g.bin", sig[:, :3], WALL, 100.0)
    data = path.read_bytes()
    path.write_bytes(data[:-1000])  # cut inside the last page's data line
    with pytest.raises(DataError, match="page 3") as e:
        _read_all(open_device(path))
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
    # whole pages missing: the header announces more than the file holds
    path = write_geneactiv(tmp_path / "h.bin", sig[:, :3], WALL, 100.0, n_pages_header=5)
    with pytest.raises(DataError, match="announces 5 pages"):
        _read_all(open_device(path))
    # only the header
    path.write_bytes(data[:data.index(b"Recorded Data")])
    with pytest.raises(DataError, match="no 'Recorded Data'"):
        open_device(path)


def test_corrupt_files(tmp_path):
    sig = make_signal(600, 100.0)
    path = write_geneactiv(tmp_path / "g.bin", sig[:, :3], WALL, 100.0)
    text = path.read_bytes()
    i = text.rindex(b"\r\n", 0, len(text) - 2) + 2 + 100  # inside the last data line
    path.write_bytes(text[:i] + b"Z" + text[i + 1:])
    with pytest.raises(DataError, match="non-hex"):
        _read_all(open_device(path))
    path.write_bytes(text.replace(b"x gain:25548", b"x gain:abc"))
    with pytest.raises(DataError, match="x gain"):
        open_device(path)
    path.write_bytes(b"\x00\x01\x02 not a GENEActiv file")
    with pytest.raises(DataError, match="not a GENEActiv"):
        open_device(path)
