"""APDM Opal .h5 reader: files written in APDM's HDF5 layout (v5, and the older CaseIdList layout),
checked against known values and against scikit-digital-health's ReadApdmH5 on the same files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.files_actigraph_apdm_empatica import STANDARD_GRAVITY, apdm_sensor, write_apdm_legacy, write_apdm_v5

from crossmodal_har.errors import DataError
from crossmodal_har.signals.devices.apdm import ApdmReader

h5py = pytest.importorskip("h5py")

RATE = 128
T0_US = 1_717_000_000_000_000  # 2024-05-29T16:26:40Z


def read_all(reader, chunk=10_000):
    parts = list(reader.iter_chunks(chunk))
    assert all(len(t) <= chunk for t, _ in parts)
    return np.concatenate([t for t, _ in parts]), np.concatenate([d for _, d in parts])


def test_v5_file_reads_back_in_g_and_rad_s_with_file_times(tmp_path):
    s = apdm_sensor("XI-010203", "Lumbar", 3000, RATE, T0_US, seed=1)
    p = tmp_path / "opal.h5"
    write_apdm_v5(p, [s])
    r = ApdmReader(p)
    assert r.info.format == "apdm" and r.info.channels == "acc+gyro" and r.info.rate_hz == RATE
    assert r.info.n_samples == 3000
    assert r.info.start_time_s == pytest.approx(int(s["time_us"][0]) / 1e6, abs=1e-6)
    assert "UTC" in r.info.start_time_source
    assert r.info.device["sensor_id"] == "XI-010203" and r.info.device["label"] == "Lumbar"
    assert r.info.device["timezone_offset_h"] == 1
    t, x = read_all(r, chunk=500)
    np.testing.assert_allclose(t, s["time_us"].astype(np.float64) / 1e6, rtol=0, atol=1e-6)
    np.testing.assert_allclose(x[:, :3], s["acc_ms2"].astype(np.float64) / STANDARD_GRAVITY, rtol=1e-12)
    np.testing.assert_allclose(x[:, 3:], s["gyro"].astype(np.float64), rtol=1e-12)
    # gravity on z: the known signal's mean is ~1 g, not ~9.8
    assert 0.8 < x[:, 2].mean() < 1.2


@pytest.mark.slow  # importing skdh takes ~5 s
def test_matches_skdh_reader_on_the_same_file(tmp_path):
    skdh_io = pytest.importorskip("skdh.io")
    sensors = [apdm_sensor("XI-1", "Left Foot", 2000, RATE, T0_US, seed=2),
               apdm_sensor("XI-2", "Lumbar", 2000, RATE, T0_US, seed=3)]
    p = tmp_path / "opal.h5"
    write_apdm_v5(p, sensors)
    for label in ("Lumbar", "Left Foot"):
        t, x = read_all(ApdmReader(p, sensor=label), chunk=333)
        ref = skdh_io.ReadApdmH5(label, localize_timestamps=False, gravity_acceleration=STANDARD_GRAVITY,
                                 ext_error="raise").predict(file=str(p))
        np.testing.assert_allclose(t, ref["time"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(x[:, :3], ref["accel"], rtol=1e-6)
        np.testing.assert_allclose(x[:, 3:], ref["gyro"], rtol=1e-6)


def test_sensor_choice(tmp_path):
    p = tmp_path / "opal.h5"
    write_apdm_v5(p, [apdm_sensor("XI-1", "Left Foot", 200, RATE, T0_US, 1),
                      apdm_sensor("XI-2", "Lumbar", 200, RATE, T0_US, 2),
                      apdm_sensor("XI-3", "Right Foot", 200, RATE, T0_US, 3)])
    assert ApdmReader(p).info.device["sensor_id"] == "XI-2"  # the lumbar sensor by default
    assert ApdmReader(p, sensor="right foot").info.device["sensor_id"] == "XI-3"
    assert ApdmReader(p, sensor="XI-1").info.device["label"] == "Left Foot"
    with pytest.raises(DataError, match="Sternum"):
        ApdmReader(p, sensor="Sternum")
    q = tmp_path / "feet.h5"
    write_apdm_v5(q, [apdm_sensor("XI-1", "Left Foot", 200, RATE, T0_US, 1),
                      apdm_sensor("XI-3", "Right Foot", 200, RATE, T0_US, 3)])
    with pytest.raises(DataError) as e:
        ApdmReader(q)
    assert "Left Foot" in str(e.value) and "Right Foot" in str(e.value)


def test_accelerometer_only_sensor_has_nan_gyro(tmp_path):
    p = tmp_path / "opal.h5"
    s = apdm_sensor("XI-7", "Lumbar", 500, RATE, T0_US, 5, gyro=False)
    write_apdm_v5(p, [s])
    r = ApdmReader(p)
    assert r.info.channels == "acc"
    _, x = read_all(r)
    assert np.isnan(x[:, 3:]).all() and np.isfinite(x[:, :3]).all()


def test_legacy_caseidlist_layout(tmp_path):
    p = tmp_path / "old.h5"
    s = apdm_sensor("SI-000774", "Sternum", 1000, RATE, T0_US, 9)
    write_apdm_legacy(p, [s])
    r = ApdmReader(p)
    assert r.info.rate_hz == RATE and r.info.device["label"] == "Sternum" and r.info.channels == "acc+gyro"
    t, x = read_all(r, chunk=77)
    np.testing.assert_allclose(x[:, :3], s["acc_ms2"].astype(np.float64) / STANDARD_GRAVITY, rtol=1e-12)
    np.testing.assert_allclose(t, s["time_us"].astype(np.float64) / 1e6, atol=1e-6)


def test_results_do_not_depend_on_chunk_size(tmp_path):
    p = tmp_path / "opal.h5"
    write_apdm_v5(p, [apdm_sensor("XI-1", "Lumbar", 1500, RATE, T0_US, 4)])
    r = ApdmReader(p)
    ref_t, ref_x = read_all(r, chunk=10 ** 6)
    for chunk in (1, 63, 64, 1499):
        t, x = read_all(r, chunk=chunk)
        np.testing.assert_array_equal(t, ref_t)
        np.testing.assert_array_equal(x, ref_x)


def _read_fully(p: Path):
    for _ in ApdmReader(p).iter_chunks(100):
        pass


@pytest.mark.parametrize("damage", ["truncated", "not_hdf5", "other_hdf5", "time_backwards", "bad_shape",
                                    "bad_units", "time_not_epoch"])
def test_damaged_files_give_one_line_error_naming_the_file(tmp_path, damage):
    p = tmp_path / "opal.h5"
    s = apdm_sensor("XI-1", "Lumbar", 2000, RATE, T0_US, 1)
    if damage == "time_backwards":
        s["time_us"][1234] = s["time_us"][1000]
    if damage == "time_not_epoch":
        s["time_us"] = (np.arange(2000) * 7812).astype(np.uint64)  # relative µs, no epoch
    write_apdm_v5(p, [s])
    if damage == "truncated":
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 3])
    elif damage == "not_hdf5":
        p.write_text("time,acc_x\n0,1\n")
    elif damage == "other_hdf5":
        with h5py.File(p, "w") as f:
            f.create_dataset("data", data=np.zeros(10))
    elif damage == "bad_shape":
        with h5py.File(p, "a") as f:
            del f["Sensors/XI-1/Accelerometer"]
            f["Sensors/XI-1/Accelerometer"] = np.zeros((2000, 2), np.float32)
    elif damage == "bad_units":
        with h5py.File(p, "a") as f:
            f["Sensors/XI-1/Accelerometer"].attrs["Units"] = b"furlongs"
    with pytest.raises(DataError) as e:
        _read_fully(p)
    text = str(e.value)
    assert text.startswith(str(p)) and "\n" not in text and len(text) < 300
    if damage == "time_backwards":
        assert "sample 1234" in text
