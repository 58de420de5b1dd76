"""Device files through every entry point (issue 14 item 1): ``open_device`` by suffix or format
name, the streaming reader of predict/embed (channels and device info on every chunk), the table
reader of datasets and ingest, generic datasets and paired sessions with device recordings, embed's
channel rule, and accelerometer-only CSV/Parquet tables in both readers."""

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals.devices import READERS, device_format, device_suffixes, open_device
from crossmodal_har.signals.generic import list_recordings
from crossmodal_har.signals.recording import iter_chunks, read_recording
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import Units

sys.path.insert(0, str(Path(__file__).parent))
from helpers.files_axivity_geneactiv import make_signal, write_cwa, write_geneactiv  # noqa: E402
import struct
from helpers.files_actigraph_apdm_empatica import smooth_signal, write_e4_zip, write_gt3x

WALL = (dt.datetime(2024, 7, 1, 12, 0, 0) - dt.datetime(1970, 1, 1)).total_seconds()
RATE = 50.0


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def ax6(tmp_path):
    sig = make_signal(40 * 60, RATE)  # 48 s
    return write_cwa(tmp_path / "rec6.cwa", sig[:, :3], WALL, RATE, gyro_dps=sig[:, 3:]), sig


@pytest.fixture
def ax3(tmp_path):
    sig = make_signal(80 * 30, RATE)
    return write_cwa(tmp_path / "rec3.cwa", sig[:, :3], WALL, RATE), sig


# --------------------------------------------------------------------------------- dispatch

def test_dispatch_by_suffix_and_name(tmp_path, ax3):
    path, _ = ax3
    assert device_format(path) == "cwa" and device_format(tmp_path / "a.BIN") == "geneactiv"
    assert device_format(tmp_path / "a.csv") is None and device_format(tmp_path / "a.csv", "csv") is None
    assert set(device_suffixes().values()) <= set(READERS)
    odd = tmp_path / "download.dat"
    odd.write_bytes(path.read_bytes())
    assert open_device(odd, "cwa").info.channels == "acc"
    with pytest.raises(DataError, match=r"unknown suffix '\.dat'.*\.cwa \(cwa\).*\.bin \(geneactiv\)"):
        open_device(odd)
    with pytest.raises(UserError, match="unknown --format 'axivity'; supported: csv, parquet, cwa, geneactiv"):
        open_device(odd, "axivity")
    with pytest.raises(DataError, match="file not found"):
        open_device(tmp_path / "missing.cwa")


# ----------------------------------------------------------------------- streaming reader

def test_iter_chunks_device_file(ax6):
    path, sig = ax6
    chunks = list(iter_chunks(path, Units(), 1000))
    assert all(0 < len(c.t) <= 1000 for c in chunks) and sum(len(c.t) for c in chunks) == len(sig)
    info = chunks[0].device
    assert info is not None and info.format == "cwa" and info.rate_hz == RATE
    assert all(c.device is info and c.channels == "acc+gyro" for c in chunks)
    t = np.concatenate([c.t for c in chunks])
    x = np.concatenate([c.data for c in chunks])
    assert t[0] == pytest.approx(WALL, abs=1e-4)  # epoch seconds (UTC; --tz default)
    assert [c.first_row for c in chunks] == list(np.cumsum([0] + [len(c.t) for c in chunks[:-1]]))
    np.testing.assert_allclose(x[:, 3:], np.deg2rad(sig[:, 3:]), atol=1e-3)
    shifted = next(iter_chunks(path, Units(), 1000, tz="America/New_York"))
    assert shifted.t[0] == pytest.approx(WALL + 4 * 3600, abs=1e-4)  # EDT = UTC-4
    with pytest.raises(UserError, match="carries its own units"):
        next(iter_chunks(path, Units(acc_unit="m/s^2"), 1000))


def test_iter_chunks_bin_is_acc_only(tmp_path):
    sig = make_signal(600, RATE)
    path = write_geneactiv(tmp_path / "g.bin", sig[:, :3], WALL, RATE, time_zone="GMT +02:00")
    chunks = list(iter_chunks(path, Units(), 250))
    assert all(c.channels == "acc" and c.device.format == "geneactiv" for c in chunks)
    assert chunks[0].t[0] == pytest.approx(WALL - 7200, abs=1e-6)
    assert np.isnan(np.concatenate([c.data for c in chunks])[:, 3:]).all()


def test_table_reader_device_file(ax3, ax6):
    for (path, sig), channels in ((ax3, "acc"), (ax6, "acc+gyro")):
        rec = read_recording(path, Units(), tz="Europe/Berlin")
        assert rec.channels == channels and rec.name == path.stem and rec.source == path
        ref = np.concatenate([c.data for c in iter_chunks(path, Units(), 333, tz="Europe/Berlin")])
        np.testing.assert_array_equal(rec.data, ref)
        assert rec.t[0] == pytest.approx(WALL - 7200, abs=1e-4)
        np.testing.assert_allclose(rec.data[:, :3], sig[:, :3], atol=1 / 256)


@pytest.mark.slow
def test_corrupt_device_file_is_one_line_through_the_cli(tmp_path, ax6, capsys):
    path, _ = ax6
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[:-7]))
    from helpers.bundles import make_bundle

    bundle = make_bundle(tmp_path / "bundle")
    rc = main(["embed", "--model", str(bundle), "--input", str(path), "--out", str(tmp_path / "e.npy")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and str(path) in line and "truncated" in line


# ----------------------------------------------------------------------------------- embed

@pytest.mark.slow
def test_embed_device_files_and_the_channel_rule(tmp_path, ax3, ax6, capsys):
    from crossmodal_har.evaluate.protocols import EncoderSource
    from crossmodal_har.models.encoder_file import save_encoder
    from helpers.bundles import embed_recording, make_bundle

    bundle = make_bundle(tmp_path / "bundle")  # reads acc+gyro
    out = tmp_path / "e6.npy"
    assert embed_recording(ax6[0], out, model=bundle).info["device"]["format"] == "cwa"
    emb = np.load(out)
    assert len(emb) > 10 and emb[0, 0] == pytest.approx(WALL, abs=0.1)  # window starts on the device's clock
    capsys.readouterr()
    # a 6-channel model refuses an accelerometer-only recording, in one line that says what to do
    rc = main(["embed", "--model", str(bundle), "--input", str(ax3[0]), "--out", str(tmp_path / "e3.npy")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and line.endswith(f"{ax3[0]}: accelerometer-only recording (no gyroscope); this model reads "
                                     "acc+gyro — use a model trained with --channels acc")
    assert not (tmp_path / "e3.npy").exists()
    # an accelerometer-only encoder embeds it (NaN gyroscope never reaches the windows)
    pre = PreprocessConfig(channels="acc")
    enc = EncoderSource.random("convgru-tiny", pre).build(pretrained=False)
    save_encoder(enc, tmp_path / "acc_enc", pre)
    out3 = tmp_path / "e3.parquet"
    res = embed_recording(ax3[0], out3, encoder=tmp_path / "acc_enc", format="cwa")
    assert res.info["channels"] == "acc" and res.windows > 5
    df = pd.read_parquet(out3)
    assert len(df) > 5 and np.isfinite(df.filter(like="e").to_numpy()).all()
    # unit flags contradict a device file
    rc = main(["embed", "--model", str(bundle), "--input", str(ax6[0]), "--out", str(tmp_path / "x.npy"),
               "--acc-unit", "m/s^2"])
    assert rc == 2 and "carries its own units" in _one_error_line(capsys.readouterr().err)


def test_embed_file_fills_gyro_for_acc_models(ax3, tmp_path):
    import torch

    from crossmodal_har.infer.embed import embed_file

    class Probe(torch.nn.Module):
        def forward(self, x):  # [B, W, 6] physical windows
            assert torch.isfinite(x).all()
            assert (x[:, :, 3:] == 0).all()
            return x[:, :, :3].mean(dim=1)

    res = embed_file(ax3[0], tmp_path / "p.npy", Probe(), PreprocessConfig(channels="acc"), Units(), 3)
    assert res["windows"] > 5 and res["channels"] == "acc" and res["device"]["format"] == "cwa"
    emb = np.load(tmp_path / "p.npy")
    np.testing.assert_allclose(emb[:, 2 + 2].mean(), 1.0, atol=0.1)  # gravity on z
    with pytest.raises(UserError, match="accelerometer-only recording"):
        embed_file(ax3[0], tmp_path / "q.npy", Probe(), PreprocessConfig(), Units(), 3)


# ------------------------------------------------------------------ datasets and sessions

def test_generic_dataset_lists_device_recordings(tmp_path, ax6):
    root = tmp_path / "ds"
    (root / "recordings").mkdir(parents=True)
    sig = make_signal(600, RATE)
    (root / "recordings" / "a.cwa").write_bytes(ax6[0].read_bytes())
    write_geneactiv(root / "recordings" / "b.bin", sig[:, :3], WALL, RATE)
    (root / "recordings" / "notes.txt").write_text("ignored")
    recs = list_recordings(root)
    assert sorted(recs) == ["a", "b"]
    assert read_recording(recs["b"], Units()).channels == "acc"


@pytest.mark.slow
def test_generic_dataset_with_a_device_recording_loads_windows(tmp_path, ax6):
    from crossmodal_har.signals.datasets import load_labelled

    root = tmp_path / "ds"
    (root / "recordings").mkdir(parents=True)
    (root / "recordings" / "a.cwa").write_bytes(ax6[0].read_bytes())
    (root / "dataset.json").write_text(json.dumps({"acc_unit": "g", "gyro_unit": "rad/s", "time_unit": "s"}))
    # labels on the device's clock (epoch seconds)
    (root / "labels.csv").write_text(f"recording,start,end,label\na,{WALL},{WALL + 20},x\na,{WALL + 20},"
                                     f"{WALL + 48},y\n")
    ws = load_labelled(root, PreprocessConfig(), progress=False)
    assert len(ws) >= 10 and set(ws.y.tolist()) == {0, 1}


def test_paired_session_with_device_imu(tmp_path, ax6):
    from crossmodal_har.pairs import sources
    from helpers.sessions import make_session

    make_session(tmp_path, "s1", seconds=4)
    d = tmp_path / "s1"
    (d / "imu.csv").unlink()
    (d / "imu.cwa").write_bytes(ax6[0].read_bytes())
    (d / "session.json").write_text(json.dumps({"imu_offset_s": -WALL, "tz": "UTC"}))
    (spec,) = list(sources.iter_paired_sessions(tmp_path))
    rec = spec.load_imu()
    assert rec.channels == "acc+gyro" and rec.t[0] == pytest.approx(0.0, abs=1e-3)
    (d / "session.json").write_text(json.dumps({"tz": "Nowhere/Land"}))
    (spec,) = list(sources.iter_paired_sessions(tmp_path))
    with pytest.raises(DataError, match="session.json: unknown time zone 'Nowhere/Land'"):
        spec.load_imu()


# ------------------------------------------------------------------- acc-only tables

def _acc_table(path: Path, gyro_cols=()):
    n = 500
    t = np.arange(n) / RATE
    df = pd.DataFrame({"time": t, "acc_x": 0.1 * np.sin(t), "acc_y": 0.0, "acc_z": 9.80665})
    for c in gyro_cols:
        df[c] = 0.0
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_acc_only_tables_in_both_readers(tmp_path, suffix):
    path = _acc_table(tmp_path / f"acc{suffix}")
    units = Units(acc_unit="m/s^2")
    rec = read_recording(path, units)
    assert rec.channels == "acc" and rec.data.shape == (500, 6)
    assert np.isnan(rec.data[:, 3:]).all()
    np.testing.assert_allclose(rec.data[:, 2], 1.0)
    chunks = list(iter_chunks(path, units, 128))
    assert all(c.channels == "acc" and c.device is None for c in chunks)
    data = np.concatenate([c.data for c in chunks])
    np.testing.assert_array_equal(data, rec.data)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_some_gyro_columns_is_still_an_error(tmp_path, suffix):
    path = _acc_table(tmp_path / f"acc{suffix}", gyro_cols=("gyro_x",))
    for read in (lambda: read_recording(path, Units()), lambda: list(iter_chunks(path, Units(), 100))):
        with pytest.raises(DataError, match=r"missing column\(s\) gyro_y, gyro_z"):
            read()


def _unsupported_compression(path: Path) -> None:
    """Rewrite every entry's compression method to 99 (AES; zipfile cannot decompress it)."""
    raw = bytearray(path.read_bytes())
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = raw.find(sig)
        while i >= 0:
            struct.pack_into("<H", raw, i + off, 99)
            i = raw.find(sig, i + 4)
    path.write_bytes(bytes(raw))


def test_unsupported_zip_compression_is_a_one_line_error(tmp_path):
    from crossmodal_har.signals.devices import open_device

    gt3x = tmp_path / "a.gt3x"
    write_gt3x(gt3x, smooth_signal(30 * 30, 30, 1)[:, :3], 30, 1_700_000_000)
    e4 = tmp_path / "b.zip"
    write_e4_zip(e4, np.round(smooth_signal(32 * 20, 32, 2)[:, :3] * 64), 1_700_000_000.0)
    for path in (gt3x, e4):
        _unsupported_compression(path)
        with pytest.raises(DataError) as exc:
            reader = open_device(path)
            for _ in reader.iter_chunks(1000):
                pass
        assert str(path) in str(exc.value) and "\n" not in str(exc.value)
