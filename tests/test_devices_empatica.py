"""Empatica reader: E4 session exports (ACC.csv in a zip or folder) and EmbracePlus Avro files, written
per Empatica's published description, checked against known values and (Avro) against
scikit-digital-health's ReadEmpaticaAvro on the same file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers.files_actigraph_apdm_empatica import avro_bytes, e4_acc_csv, embraceplus_record, smooth_signal, write_e4_zip

from crossmodal_har.errors import DataError
from crossmodal_har.signals.devices.empatica import EmpaticaReader

START = 1_600_000_000.0  # 2020-09-13T12:26:40Z


def read_all(reader, chunk=10_000):
    parts = list(reader.iter_chunks(chunk))
    assert all(len(t) <= chunk for t, _ in parts)
    return np.concatenate([t for t, _ in parts]), np.concatenate([d for _, d in parts])


def e4_counts(n=32 * 30, seed=0):
    return np.clip(np.round(smooth_signal(n, 32.0, seed) * 64), -128, 127).astype(np.int64)


def one_line(err: DataError, path: Path) -> str:
    text = str(err)
    assert text.startswith(str(path)) and "\n" not in text and len(text) < 300
    return text


# -- E4 -------------------------------------------------------------------------------------------

def test_e4_zip_reads_back_in_g_at_32_hz_from_the_utc_start(tmp_path):
    c = e4_counts()
    p = tmp_path / "1600000000_A01F4B.zip"
    write_e4_zip(p, c, START)
    r = EmpaticaReader(p)
    assert r.info.format == "empatica" and r.info.rate_hz == 32 and r.info.channels == "acc"
    assert r.info.start_time_s == START and "UTC" in r.info.start_time_source
    assert r.info.device["serial"] == "A01F4B" and r.info.device["model"] == "Empatica E4"
    t, x = read_all(r, chunk=100)
    np.testing.assert_array_equal(x[:, :3], c / 64.0)
    assert np.isnan(x[:, 3:]).all()
    np.testing.assert_allclose(t, START + np.arange(len(c)) / 32.0, rtol=0, atol=1e-9)
    assert 0.8 < x[:, 2].mean() < 1.2  # gravity on z: 1/64 g units were applied


def test_e4_folder_is_read_like_the_zip(tmp_path):
    c = e4_counts(seed=1)
    (tmp_path / "ACC.csv").write_text(e4_acc_csv(c, START))
    t, x = read_all(EmpaticaReader(tmp_path))
    np.testing.assert_array_equal(x[:, :3], c / 64.0)
    assert t[0] == START


def test_e4_results_do_not_depend_on_chunk_size(tmp_path):
    p = tmp_path / "s.zip"
    write_e4_zip(p, e4_counts(32 * 20, seed=2), START)
    r = EmpaticaReader(p)
    ref_t, ref_x = read_all(r, chunk=10 ** 6)
    for chunk in (1, 31, 32, 639):
        t, x = read_all(r, chunk=chunk)
        np.testing.assert_array_equal(t, ref_t)
        np.testing.assert_array_equal(x, ref_x)


@pytest.mark.parametrize("damage", ["truncated_row", "text_value", "bad_header", "truncated_zip", "no_acc",
                                    "not_zip", "extra_column"])
def test_e4_damaged_exports_give_one_line_error_naming_the_file(tmp_path, damage):
    c = e4_counts(64, seed=3)
    text = e4_acc_csv(c, START)
    p = tmp_path / "1600000000_A01F4B.zip"
    lines = text.splitlines()
    if damage == "truncated_row":
        write_e4_zip(p, c, START, acc_text="\n".join(lines[:-1]) + "\n" + lines[-1].rsplit(",", 1)[0])
    elif damage == "text_value":
        lines[10] = "12,abc,60"
        write_e4_zip(p, c, START, acc_text="\n".join(lines) + "\n")
    elif damage == "bad_header":
        write_e4_zip(p, c, START, acc_text="\n".join(lines[2:]) + "\n")
    elif damage == "extra_column":
        lines[20] = "1,2,3,4"
        write_e4_zip(p, c, START, acc_text="\n".join(lines) + "\n")
    elif damage == "truncated_zip":
        write_e4_zip(p, c, START)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) - 40])
    elif damage == "no_acc":
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("TEMP.csv", "1600000000\n4\n31\n")
    elif damage == "not_zip":
        p.write_bytes(b"PK\x03\x04 but not really a zip" * 5)
    with pytest.raises(DataError) as e:
        for _ in EmpaticaReader(p).iter_chunks(1000):
            pass
    msg = one_line(e.value, p)
    if damage == "truncated_row":
        assert e.value.line == len(lines)  # the last line, 1-based
    if damage == "text_value":
        assert e.value.line == 11 and "abc" in msg


# -- EmbracePlus (Avro) ---------------------------------------------------------------------------

def embrace_counts(n, seed, dig=2048, phys=16):
    return np.round(smooth_signal(n, 64.0, seed) * dig / phys).astype(np.int64)


def test_avro_reads_back_in_g_with_rate_and_start(tmp_path):
    rate = 63.99990844726562  # EmbracePlus reports a measured, non-integer rate (float32 in the file)
    c = embrace_counts(64 * 60, seed=4)
    p = tmp_path / "P001_1600000000000000.avro"
    p.write_bytes(avro_bytes(embraceplus_record(c, int(START * 1e6), rate)))
    r = EmpaticaReader(p)
    assert r.info.rate_hz == pytest.approx(rate) and r.info.channels == "acc" and r.info.start_time_s == START
    assert r.info.device["serial"] == "3YK3J151VJ" and r.info.device["timezone_offset_s"] == 3600
    t, x = read_all(r, chunk=500)
    np.testing.assert_allclose(x[:, :3], c * (32 / 4096), rtol=1e-12)
    np.testing.assert_allclose(t, START + np.arange(len(c)) / r.info.rate_hz, rtol=0, atol=1e-6)
    assert np.isnan(x[:, 3:]).all()


@pytest.mark.slow  # importing skdh takes ~5 s
def test_avro_matches_skdh_reader_on_the_same_file(tmp_path):
    skdh_io = pytest.importorskip("skdh.io")
    c = embrace_counts(64 * 30, seed=5)
    g = np.round(np.random.default_rng(0).normal(0, 2000, (len(c), 3))).astype(np.int64)
    p = tmp_path / "P001_1600000000000000.avro"
    p.write_bytes(avro_bytes(embraceplus_record(c, int(START * 1e6), 64.0, gyro_counts=g)))
    t, x = read_all(EmpaticaReader(p), chunk=333)
    ref = skdh_io.ReadEmpaticaAvro(resample_to_accel=False).predict(file=str(p), tz_name="UTC")
    np.testing.assert_allclose(t, ref["time"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(x[:, :3], ref["accel"], rtol=1e-9, atol=1e-12)
    # skdh keeps the gyroscope in deg/s; we convert to rad/s
    np.testing.assert_allclose(x[:, 3:], np.deg2rad(ref["gyro"]["values"]), rtol=1e-9, atol=1e-12)


def test_avro_decoders_agree(tmp_path, monkeypatch):
    """fastavro (preferred) and Apache's avro (fallback) give the same samples."""
    import sys

    from crossmodal_har.signals.devices import empatica

    pytest.importorskip("fastavro")
    p = tmp_path / "P001_1600000000000000.avro"
    p.write_bytes(avro_bytes(embraceplus_record(embrace_counts(1000, 11), int(START * 1e6), 64.0)))
    assert empatica._backend()[0] == "fastavro"
    t1, x1 = read_all(EmpaticaReader(p))
    monkeypatch.setitem(sys.modules, "fastavro", None)  # import fails -> avro
    assert empatica._backend()[0] == "avro"
    t2, x2 = read_all(EmpaticaReader(p))
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(x1, x2)


def test_avro_gyroscope_is_read_in_rad_s(tmp_path):
    c = embrace_counts(640, seed=6)
    g = np.round(np.random.default_rng(1).normal(0, 3000, (640, 3))).astype(np.int64)
    p = tmp_path / "P001_1600000000000000.avro"
    p.write_bytes(avro_bytes(embraceplus_record(c, int(START * 1e6), 64.0, gyro_counts=g)))
    r = EmpaticaReader(p)
    assert r.info.channels == "acc+gyro"
    _, x = read_all(r)
    np.testing.assert_allclose(x[:, 3:], np.deg2rad(g * (4000 / 65536)), rtol=1e-12)


def test_zip_of_avro_files_is_one_recording_in_time_order(tmp_path):
    """Three consecutive 30-s files, stored out of order, the last overlapping the one before by 1 s."""
    parts = [embrace_counts(64 * 30, seed=s) for s in (7, 8, 9)]
    starts = [START, START + 30, START + 59]
    p = tmp_path / "P001_week.zip"
    with zipfile.ZipFile(p, "w") as zf:
        for i in (2, 0, 1):
            us = int(starts[i] * 1e6)
            zf.writestr(f"raw_data/v6/P001_{us}.avro", avro_bytes(embraceplus_record(parts[i], us, 64.0)))
    r = EmpaticaReader(p)
    assert r.info.start_time_s == START and r.info.device["files"] == 3
    t, x = read_all(r, chunk=1000)
    assert np.all(np.diff(t) > 0)
    expected = np.concatenate([parts[0], parts[1], parts[2][64:]]) * (32 / 4096)  # 1 s overlap dropped
    np.testing.assert_allclose(x[:, :3], expected, rtol=1e-12)
    # and the same as a folder of the files
    folder = tmp_path / "raw"
    folder.mkdir()
    for i in range(3):
        us = int(starts[i] * 1e6)
        (folder / f"P001_{us}.avro").write_bytes(avro_bytes(embraceplus_record(parts[i], us, 64.0)))
    t2, x2 = read_all(EmpaticaReader(folder), chunk=77)
    np.testing.assert_array_equal(t2, t)
    np.testing.assert_array_equal(x2, x)


@pytest.mark.parametrize("damage", ["truncated", "random", "not_embraceplus", "empty_zip"])
def test_avro_damaged_files_give_one_line_error_naming_the_file(tmp_path, damage):
    p = tmp_path / "P001_1600000000000000.avro"
    data = avro_bytes(embraceplus_record(embrace_counts(640, 1), int(START * 1e6), 64.0))
    if damage == "truncated":
        p.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "random":
        p.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif damage == "not_embraceplus":
        import io
        import json

        from avro.datafile import DataFileWriter
        from avro.io import DatumWriter
        from avro.schema import parse

        buf = io.BytesIO()
        w = DataFileWriter(buf, DatumWriter(), parse(json.dumps(
            {"type": "record", "name": "Other", "fields": [{"name": "a", "type": "int"}]})))
        w.append({"a": 1})
        w.flush()
        p.write_bytes(buf.getvalue())
    elif damage == "empty_zip":
        p = tmp_path / "nothing.zip"
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("readme.txt", "hi")
    with pytest.raises(DataError) as e:
        for _ in EmpaticaReader(p).iter_chunks(1000):
            pass
    one_line(e.value, p)
