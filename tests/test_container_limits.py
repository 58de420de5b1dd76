"""Bounded memory for every member of every container (issue 23, item 2): zip members are checked
for size and ratio before a byte is decompressed, text lines have a maximum length, Avro blocks are
bounded. Each refusal is one line naming the file; the limits are those of signals/containers.py
(lowered here with monkeypatch so that the files stay small; benchmarks/bench_limits.py measures a
real 1.5 MB bomb)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers.files_actigraph_apdm_empatica import avro_bytes, e4_acc_csv, embraceplus_record, write_e4_zip, write_gt3x

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError
from crossmodal_har.signals import containers
from crossmodal_har.signals.devices import open_device
from crossmodal_har.signals.recording import iter_chunks
from crossmodal_har.signals.units import Units

MiB = 1024 ** 2


def _deflate_zip(path: Path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, head, unit, total in members:
            with zf.open(name, "w", force_zip64=True) as f:
                f.write(head)
                block = unit * (MiB // len(unit))
                for _ in range(int(total // len(block))):
                    f.write(block)
    return path


def _read_all(path: Path):
    return sum(len(t) for t, _ in open_device(path).iter_chunks())


@pytest.fixture
def small_limits(monkeypatch):
    monkeypatch.setattr(containers, "RATIO_FLOOR_BYTES", 4 * MiB)
    return containers


def test_e4_zip_bomb_is_refused_before_decompressing(tmp_path, small_limits):
    head = b"1700000000,1700000000,1700000000\n32,32,32\n"
    bomb = _deflate_zip(tmp_path / "bomb.zip", [("ACC.csv", head, b"0,0,64\n", 24 * MiB)])
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"bomb.zip: zip member 'ACC.csv' would decompress \d+x .*zip bomb"):
        open_device(bomb)


def test_a_bomb_in_any_member_of_a_gt3x_is_refused(tmp_path, small_limits):
    f = tmp_path / "a.gt3x"
    write_gt3x(f, np.tile([0.0, 0.0, 1.0], (30 * 10, 1)), 30, 1_700_000_000)
    assert _read_all(f) == 300
    with zipfile.ZipFile(f, "a", zipfile.ZIP_DEFLATED) as zf, zf.open("epoch.bin", "w", force_zip64=True) as m:
        for _ in range(16):
            m.write(bytes(MiB))
    with pytest.raises(DataError, match="a.gt3x: zip member 'epoch.bin' would decompress"):
        open_device(f)


def test_text_without_newlines_is_refused_in_bounded_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(containers, "MAX_LINE_BYTES", 64 * 1024)
    monkeypatch.setattr("crossmodal_har.signals.devices.empatica.MAX_LINE_BYTES", 64 * 1024)
    monkeypatch.setattr("crossmodal_har.signals.tables.MAX_LINE_BYTES", 64 * 1024)
    rng = np.random.default_rng(0)
    digits = "".join(map(str, rng.integers(0, 10, 400_000)))  # compresses ~2x: not a ratio bomb
    # E4 ACC.csv whose data has no newline (in a zip and in a folder)
    text = e4_acc_csv(np.zeros((2, 3)), 1.7e9) + digits
    write_e4_zip(tmp_path / "e4.zip", None, 1.7e9, acc_text=text)
    with pytest.raises(DataError, match="e4.zip: .*a line is longer than"):
        _read_all(tmp_path / "e4.zip")
    (tmp_path / "e4").mkdir()
    (tmp_path / "e4" / "ACC.csv").write_text(text)
    with pytest.raises(DataError, match="a line is longer than"):
        sum(len(t) for t, _ in open_device(tmp_path / "e4", "empatica").iter_chunks())
    # ...and its header rows
    write_e4_zip(tmp_path / "h.zip", None, 1.7e9, acc_text=digits)
    with pytest.raises(DataError, match="h.zip: .*a line is longer than"):
        open_device(tmp_path / "h.zip")
    # a CSV table: the header line, and a data line
    csv = tmp_path / "rec.csv"
    csv.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n0,0,0,1,0,0,0\n" + digits)
    with pytest.raises(DataError, match="rec.csv: CSV: a line is longer than"):
        list(iter_chunks(csv, Units()))
    csv.write_text(digits + "\n")
    with pytest.raises(DataError, match="rec.csv:1: the header line is longer than"):
        list(iter_chunks(csv, Units()))


def test_geneactiv_page_without_newline_is_refused(tmp_path, monkeypatch):
    from helpers.files_axivity_geneactiv import make_signal, write_geneactiv

    monkeypatch.setattr("crossmodal_har.signals.devices.geneactiv.MAX_LINE_BYTES", 64 * 1024)
    f = write_geneactiv(tmp_path / "g.bin", make_signal(300 * 4, 100.0)[:, :3], 1.7e9, 100.0)
    raw = f.read_bytes()
    cut = raw.index(b"Recorded Data", raw.index(b"Recorded Data") + 1)  # the second page
    f.write_bytes(raw[:cut] + b"A" * 200_000)
    with pytest.raises(DataError, match="g.bin: .*a line is longer than|g.bin.*truncated"):
        _read_all(f)


def test_avro_blocks_are_bounded(tmp_path, monkeypatch):
    pytest.importorskip("fastavro")
    import fastavro

    from helpers.files_actigraph_apdm_empatica import EMBRACEPLUS_SCHEMA

    monkeypatch.setattr(containers, "MAX_AVRO_BLOCK_BYTES", 1 * MiB)
    rec = embraceplus_record(np.zeros((400_000, 3)), 1_700_000_000_000_000, 64.0)
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(json.loads(json.dumps(EMBRACEPLUS_SCHEMA))), [rec], codec="deflate")
    f = tmp_path / "P001_1700000000000000.avro"
    f.write_bytes(buf.getvalue())
    assert f.stat().st_size < 200_000  # 2.4 MB of zeros deflated
    with pytest.raises(DataError, match=r"\.avro: Avro block at byte \d+ inflates beyond the limit"):
        open_device(f)
    # a block that declares more bytes than the limit (a stored block, codec null)
    small = embraceplus_record(np.zeros((10, 3)), 1_700_000_000_000_000, 64.0)
    data = bytearray(avro_bytes(small))
    assert open_device(_write(tmp_path / "ok.avro", bytes(data))).info.rate_hz == 64.0
    monkeypatch.setattr(containers, "MAX_AVRO_BLOCK_BYTES", 64)
    with pytest.raises(DataError, match=r"ok.avro: Avro block at byte \d+ declares"):
        open_device(tmp_path / "ok.avro")


def _write(p: Path, b: bytes) -> Path:
    p.write_bytes(b)
    return p


def test_predict_on_a_bomb_is_one_line_and_writes_nothing(tmp_path, small_limits, capsys):
    from helpers.bundles import make_acc_bundle

    head = b"1700000000,1700000000,1700000000\n32,32,32\n"
    bomb = _deflate_zip(tmp_path / "bomb.zip", [("ACC.csv", head, b"0,0,64\n", 24 * MiB)])
    before = bomb.read_bytes()
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(make_acc_bundle(tmp_path / "b")), "--input", str(bomb),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1
    assert "zip bomb" in err and not out.exists() and bomb.read_bytes() == before
