"""ActiGraph .gt3x reader: files written per ActiGraph's public spec, checked against known values and
against ActiGraph's own pygt3x on the same bytes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from helpers.files_actigraph_apdm_empatica import smooth_signal, write_gt3x

from crossmodal_har.errors import DataError
from crossmodal_har.signals.devices.actigraph import Gt3xReader

pygt3x_reader = pytest.importorskip("pygt3x.reader")

RATE = 30
START_LOCAL = int(datetime(2024, 1, 15, 9, 30, tzinfo=timezone.utc).timestamp())  # wall clock 09:30


def read_all(reader, chunk=10_000):
    parts = list(reader.iter_chunks(chunk))
    assert all(len(t) <= chunk for t, _ in parts)
    return np.concatenate([t for t, _ in parts]), np.concatenate([d for _, d in parts])


def signal(seconds=20, seed=0):
    return smooth_signal(RATE * seconds, RATE, seed, amp=1.5)


@pytest.mark.parametrize("record_type,scale", [(0x1A, 256.0), (0x00, 341.0), (0x1B, 341.0)])
def test_reads_each_activity_record_type_in_g_with_rate_and_start(tmp_path, record_type, scale):
    acc = signal()
    p = tmp_path / "rec.gt3x"
    written = write_gt3x(p, acc, RATE, START_LOCAL, record_type=record_type, scale=scale, timezone="-05:00:00")
    r = Gt3xReader(p, tz="UTC")
    assert r.info.rate_hz == RATE and r.info.channels == "acc" and r.info.format == "gt3x"
    # local 09:30 at UTC-5 is 14:30 UTC
    assert r.info.start_time_s == START_LOCAL + 5 * 3600
    assert "TimeZone" in r.info.start_time_source
    assert r.info.device["serial"] == "MOS2E22180349" and r.info.device["acc_scale_lsb_per_g"] == scale
    t, x = read_all(r)
    np.testing.assert_allclose(x[:, :3], written["counts"] / scale, rtol=0, atol=1e-12)
    assert np.abs(x[:, :3] - acc).max() <= 0.5 / scale + 1e-9  # the known signal, to one count
    assert np.isnan(x[:, 3:]).all()
    np.testing.assert_allclose(t, START_LOCAL + 5 * 3600 + np.arange(len(acc)) / RATE, rtol=0, atol=1e-6)


def test_matches_pygt3x_on_the_same_file(tmp_path):
    """Second reader: ActiGraph's pygt3x (whole-file) gives the same samples and (local) times,
    including idle-sleep fill and a record skipped for its bad checksum."""
    acc = signal(40, seed=3)
    p = tmp_path / "rec.gt3x"
    write_gt3x(p, acc, RATE, START_LOCAL, ism=[(10, 16)], bad_checksum_seconds=[25], timezone="+02:00:00")
    r = Gt3xReader(p)
    t, x = read_all(r, chunk=97)
    with pygt3x_reader.FileReader(str(p)) as ref:
        df = ref.to_pandas()
    assert len(df) == len(t) == (40 - 1) * RATE  # one second lost to the bad checksum, sleep filled
    np.testing.assert_allclose(x[:, :3], df[["X", "Y", "Z"]].to_numpy(np.float64), rtol=0, atol=1e-6)
    np.testing.assert_allclose(t + 2 * 3600, df.index.to_numpy(np.float64), rtol=0, atol=1e-6)


def test_uncalibrated_file_is_calibrated_like_pygt3x(tmp_path):
    """calibration.json with isCalibrated false (method 2): same values as pygt3x's calibration."""
    cal = {"isCalibrated": False, "calibrationMethod": 2}
    for axis, off, sens in (("X", 12, 25700), ("Y", -7, 25500), ("Z", 3, 25650)):
        cal[f"offset{axis}_{RATE}"] = off
        cal[f"sensitivity{axis}{axis}_{RATE}"] = sens
    for pair in ("XY", "XZ", "YZ"):
        cal[f"sensitivity{pair}_{RATE}"] = 0
    p = tmp_path / "rec.gt3x"
    written = write_gt3x(p, signal(10, seed=5), RATE, START_LOCAL, calibration=cal)
    r = Gt3xReader(p)
    assert "method 2" in r.info.device["calibration"]
    _, x = read_all(r, chunk=50)
    with pygt3x_reader.FileReader(str(p)) as ref:
        df = ref.to_pandas()
    np.testing.assert_allclose(x[:, :3], df[["X", "Y", "Z"]].to_numpy(np.float64), rtol=0, atol=1e-6)
    # and it is not the plain counts / scale
    assert np.abs(x[:, :3] - written["counts"] / 256.0).max() > 1e-3


def test_idle_sleep_is_filled_with_the_last_sample_and_other_gaps_stay_gaps(tmp_path):
    acc = signal(30, seed=4)
    p = tmp_path / "rec.gt3x"
    write_gt3x(p, acc, RATE, START_LOCAL, ism=[(5, 12)], bad_checksum_seconds=[20], timezone="00:00:00")
    r = Gt3xReader(p)
    t, x = read_all(r, chunk=64)
    sec = np.floor(t - START_LOCAL + 1e-9).astype(int)
    asleep = (sec >= 5) & (sec < 12)
    assert r.info.idle_sleep == [(START_LOCAL + 5.0, START_LOCAL + 12.0)]
    (bad,) = r.info.skipped  # the bad-checksum record is listed, with the samples before it
    assert bad.unit == "record" and bad.count == 1 and bad.at_sample == 20 * RATE
    np.testing.assert_array_equal(x[asleep, :3], np.broadcast_to(x[sec == 4][-1, :3], (asleep.sum(), 3)))
    assert 20 not in set(sec)  # bad checksum: that second is a gap, not invented
    assert set(range(30)) - set(sec) == {20}


def test_local_time_without_zone_is_read_in_tz(tmp_path):
    acc = signal(5)
    p = tmp_path / "rec.gt3x"
    write_gt3x(p, acc, RATE, START_LOCAL, timezone=None)
    r = Gt3xReader(p, tz="Europe/Berlin")  # January: UTC+1
    assert r.info.start_time_s == START_LOCAL - 3600
    assert "--tz Europe/Berlin" in r.info.start_time_source and "without a zone" in r.info.start_time_source
    t, _ = read_all(r)
    assert t[0] == START_LOCAL - 3600
    summer = int(datetime(2024, 7, 15, 9, 30, tzinfo=timezone.utc).timestamp())
    write_gt3x(p, acc, RATE, summer, timezone=None)
    assert Gt3xReader(p, tz="Europe/Berlin").info.start_time_s == summer - 7200


def test_scale_from_parameters_record_when_info_txt_has_none(tmp_path):
    acc = signal(5)
    p = tmp_path / "rec.gt3x"
    written = write_gt3x(p, acc, RATE, START_LOCAL, scale=256.0, scale_in_info=False)
    r = Gt3xReader(p)
    assert r.info.device["acc_scale_source"] == "log.bin PARAMETERS ACCEL_SCALE"
    _, x = read_all(r)
    np.testing.assert_allclose(x[:, :3], written["counts"] / 256.0, atol=1e-12)


def test_stray_zero_bytes_between_records_are_skipped(tmp_path):
    acc = signal(20)
    p = tmp_path / "rec.gt3x"
    written = write_gt3x(p, acc, RATE, START_LOCAL, zero_padding=True)
    _, x = read_all(Gt3xReader(p))
    np.testing.assert_allclose(x[:, :3], written["counts"] / 256.0, atol=1e-12)


def test_results_do_not_depend_on_chunk_size(tmp_path):
    p = tmp_path / "rec.gt3x"
    write_gt3x(p, signal(25, seed=7), RATE, START_LOCAL, ism=[(3, 9)])
    r = Gt3xReader(p)
    ref_t, ref_x = read_all(r, chunk=10 ** 6)
    for chunk in (1, 7, RATE, 101):
        t, x = read_all(r, chunk=chunk)
        np.testing.assert_array_equal(t, ref_t)
        np.testing.assert_array_equal(x, ref_x)


def _assert_one_line(err: DataError, path: Path):
    text = str(err)
    assert text.startswith(str(path)) and "\n" not in text and len(text) < 300


def _read_fully(p: Path):
    r = Gt3xReader(p)
    for _ in r.iter_chunks(1000):
        pass


@pytest.mark.parametrize("damage", ["truncated_zip", "not_a_zip", "bad_separator", "truncated_log",
                                    "no_log", "nhanes", "flipped_bytes", "no_rate"])
def test_damaged_files_give_one_line_error_naming_the_file(tmp_path, damage):
    import zipfile

    p = tmp_path / "rec.gt3x"
    written = write_gt3x(p, signal(20, seed=1), RATE, START_LOCAL)
    log = written["log"].tobytes()
    data = p.read_bytes()
    if damage == "truncated_zip":
        p.write_bytes(data[: len(data) // 2])
    elif damage == "not_a_zip":
        p.write_bytes(b"hello, this is not a gt3x file\n" * 10)
    elif damage == "bad_separator":
        i = log.index(bytes([0x1E, 0x1A]), len(log) // 2)
        write_gt3x(p, signal(20, seed=1), RATE, START_LOCAL, log_bytes=log[:i] + b"\x55" + log[i + 1:])
    elif damage == "truncated_log":
        write_gt3x(p, signal(20, seed=1), RATE, START_LOCAL, log_bytes=log[:-37])
    elif damage == "no_log":
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("info.txt", "Sample Rate: 30\n")
    elif damage == "nhanes":
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("info.txt", "Sample Rate: 30\n")
            zf.writestr("activity.bin", b"\x00" * 90)
            zf.writestr("log.txt", "")
    elif damage == "flipped_bytes":
        b = bytearray(data)
        mid = len(b) // 2
        b[mid:mid + 16] = bytes(x ^ 0xA5 for x in b[mid:mid + 16])
        p.write_bytes(bytes(b))
    elif damage == "no_rate":
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("info.txt", "Serial Number: MOS1\nSample Rate: 0\n")
            zf.writestr("log.bin", log)
    with pytest.raises(DataError) as e:
        _read_fully(p)
    _assert_one_line(e.value, p)
    if damage == "nhanes":
        assert "Start Date" in str(e.value)  # the NHANES layout needs it (it used to be refused)
    if damage == "truncated_log":
        assert "truncated" in str(e.value)
