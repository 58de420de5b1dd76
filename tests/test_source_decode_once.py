"""Decode once: the calibration pass's chunks are kept on disk and replayed, bit for bit, before the
reader goes on; the file is read by one reader instead of two."""

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.infer import source as source_mod
from crossmodal_har.infer.calibration import CalibrationConfig
from crossmodal_har.infer.source import InferenceSource
from crossmodal_har.signals.units import Units

RATE = 25.0


def still_turns(path, hours=1.0, seed=0):
    """A wrist that rests in a new orientation every minute (still points all round the sphere),
    with an offset and gain error to fit; CSV with seconds, g and rad/s."""
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 * RATE)
    t = np.arange(n) / RATE
    k = (t // 60).astype(int)
    phi, cz = (k * 2.399963) % (2 * np.pi), ((k * 0.618034) % 2.0) - 1.0
    g = np.stack([np.sqrt(1 - cz ** 2) * np.cos(phi), np.sqrt(1 - cz ** 2) * np.sin(phi), cz], 1)
    acc = g * [1.02, 0.98, 1.01] + [0.03, -0.02, 0.01] + rng.normal(0, 0.002, (n, 3))
    gyro = rng.normal(0, 0.01, (n, 3))
    cols = ["time", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    pd.DataFrame(np.column_stack([t, acc, gyro]), columns=cols).to_csv(path, index=False)
    return path


UNITS = Units(acc_unit="g", gyro_unit="rad/s", time_unit="s")


def counting_reader(monkeypatch):
    calls = []
    real = source_mod.iter_chunks

    def iter_chunks(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(source_mod, "iter_chunks", iter_chunks)
    return calls


@pytest.mark.parametrize("scan_hours", [0.25, 0.0])  # stops early on a good fit / reads to the end
def test_replay_equals_a_fresh_read_and_reads_once(tmp_path, monkeypatch, scan_hours):
    path = still_turns(tmp_path / "rec.csv")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    calls = counting_reader(monkeypatch)
    src = InferenceSource(path, UNITS, "acc+gyro", chunk_rows=4000,
                          calibration=CalibrationConfig(scan_hours=scan_hours))
    fit = src.calibrate()
    assert fit.applied
    assert (fit.hours_scanned < 0.5) == (scan_hours > 0)
    got = list(src)
    assert len(calls) == 1  # one reader for the calibration pass and the chunks (it was two)
    assert not list(tmp_path.glob("crossmodal_har_decoded_*"))  # the kept chunks are removed
    fresh = list(InferenceSource(path, UNITS, "acc+gyro", chunk_rows=4000,
                                 calibration=CalibrationConfig(mode="off")))
    assert len(got) == len(fresh) == 23
    for a, b in zip(got, fresh):
        assert np.array_equal(a.t, b.t) and a.first_row == b.first_row and a.line_offset == b.line_offset
        assert np.array_equal(a.data, src.model_data(b.data))  # calibrated as a fresh read would be


def test_no_room_for_the_decoded_chunks_reads_the_file_again(tmp_path, monkeypatch, caplog):
    path = still_turns(tmp_path / "rec.csv", hours=0.2)
    fresh = list(InferenceSource(path, UNITS, "acc+gyro", chunk_rows=4000, calibration=CalibrationConfig(mode="off")))
    calls = counting_reader(monkeypatch)

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(source_mod.np, "save", full)
    src = InferenceSource(path, UNITS, "acc+gyro", chunk_rows=4000)
    with caplog.at_level("WARNING"):
        fit = src.calibrate()
    assert fit.applied and "read a second time" in caplog.text and "No space left on device" in caplog.text
    got = list(src)
    assert len(calls) == 2  # the calibration pass, then a second read from the start
    assert len(got) == len(fresh)
    for a, b in zip(got, fresh):
        assert np.array_equal(a.t, b.t) and a.first_row == b.first_row
        assert np.array_equal(a.data, src.model_data(b.data))

