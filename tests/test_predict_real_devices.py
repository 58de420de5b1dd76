"""``predict`` on every public real device file in ``../shared/data/devices`` (issue 19): each ends
with a complete output (CSV, summary, report) classified by a bundle of the recording's channels
(accelerometer-only devices get an ``acc`` bundle), or, for a damaged file, with its valid parts
read, the damaged parts listed in the summary and report, and exit status 3; ``--strict`` refuses
it in one line. ActiGraph idle sleep comes out as ``idle_sleep`` windows, counted as non-wear.

Slow (a minute in all: one run per file, the longest 13.6 h at 30 Hz); skipped, saying why,
without ``../shared``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.cli import main
from crossmodal_har.signals.devices import open_device
from helpers.bundles import make_bundle, predict_recording
from test_real_device_files import CUT_WITHOUT_TWIN, DEVICES, INTACT_TWIN, _device_files, requires_files

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {ch: make_bundle(root / ch.replace("+", "_"), channels=ch) for ch in ("acc", "acc+gyro")}


def _fmt(path: Path):
    return {"format": "empatica"} if path.is_dir() else {}


@pytest.mark.parametrize("path, sensor", _device_files())
def test_predict_reads_every_real_file(path, sensor, bundles, tmp_path, capsys):
    """Each file (each sensor of an APDM file, chosen by ``--sensor LABEL`` on the command line)."""
    channels = open_device(path, "empatica" if path.is_dir() else None, damaged="skip", sensor=sensor).info.channels
    out = tmp_path / "pred.csv"
    if sensor is None:
        res = predict_recording(bundles[channels], path, out, report=tmp_path / "report", **_fmt(path))
        s, partial = res.summary, res.partial
    else:
        assert main(["predict", "--model", str(bundles[channels]), "--input", str(path), "--out", str(out),
                     "--report", str(tmp_path / "report"), "--sensor", sensor]) == 0
        assert _error_lines(capsys.readouterr().err) == []
        s, partial = json.loads(out.with_name(out.stem + ".summary.json").read_text()), None
        assert s["device"]["device"]["label"] == sensor
    assert s["channels"] == {"recording": channels, "model": channels}
    assert s["windows"] > 0 and s["windows_ok"] > 0
    rows = pd.read_csv(out)
    assert len(rows) > 0 and set(rows["status"]) <= {"ok", "gap", "non_finite", "short", "flat_line", "saturation",
                                                     "nonwear", "idle_sleep"}
    assert (tmp_path / "report" / "report.html").is_file()
    assert json.loads(out.with_name(out.stem + ".summary.json").read_text())["input"] == str(path)
    if path.name in INTACT_TWIN or path.name in CUT_WITHOUT_TWIN:  # damaged: read in part, listed, partial
        assert s["skipped_parts"] and partial and str(path) in partial
        html = (tmp_path / "report" / "report.html").read_text()
        assert "Damaged parts left out" in html and s["skipped_parts"][0]["line"] in html
    else:
        assert s["skipped_parts"] == [] and partial is None


@requires_files
def test_damaged_file_exit_status_3_and_strict_refuses_it(bundles, tmp_path, capsys):
    path = DEVICES / "cwa" / "ggirread_ax3_corrupt_blocks.cwa"
    args = ["predict", "--model", str(bundles["acc"]), "--input", str(path), "--out", str(tmp_path / "p.csv")]
    assert main(args) == 3
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "3 damaged part(s) left out (sector 0 skipped: checksum mismatch" in err[0]
    assert main(args + ["--force", "--strict"]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and str(path) in err[0] and "checksum mismatch in sector 0" in err[0]


def _error_lines(stderr: str):
    """stderr without the log lines (``INFO module: ...``): the one-line error."""
    assert "Traceback" not in stderr
    return [ln for ln in stderr.strip().splitlines() if not ln.startswith(("DEBUG ", "INFO ", "WARNING "))]


@requires_files
def test_idle_sleep_windows_are_their_own_status_and_counted_as_nonwear(bundles, tmp_path):
    """read.gt3x's file: 1822 of its 2152 s are idle sleep (pygt3x flags the same samples). With the
    detector off, those windows are ``idle_sleep`` (not ok, not flat_line, not gap) and all of the
    non-wear time; the daily summary and the report count them as non-wear, not wear."""
    path = DEVICES / "gt3x" / "readgt3x_TAS1H30182785_2019-09-17.gt3x"
    res = predict_recording(bundles["acc"], path, tmp_path / "p.csv", report=tmp_path / "r",
                            **{"nonwear.enabled": False})
    rows = pd.read_csv(tmp_path / "p.csv")
    reader = open_device(path)
    for _ in reader.iter_chunks():
        pass
    spans = np.array(reader.info.idle_sleep)
    mid = 0.5 * (rows["start"] + rows["end"]).to_numpy()
    inside = ((mid[:, None] >= spans[:, 0]) & (mid[:, None] < spans[:, 1])).any(axis=1)
    windows = ~rows["status"].isin(["gap", "non_finite", "short"]).to_numpy()
    idle = (rows["status"] == "idle_sleep").to_numpy()
    np.testing.assert_array_equal(idle, inside & windows)
    assert idle.sum() > 0.7 * windows.sum()  # most of this recording
    s = res.summary
    assert s["windows_skipped"]["idle_sleep"] == idle.sum() == s["nonwear"]["idle_sleep_windows"]
    assert s["nonwear"]["windows"] == idle.sum() and s["nonwear_windows"] == idle.sum()
    daily = pd.read_csv(tmp_path / "r" / "daily_summary.csv")
    hop = s["stride_s"]
    assert daily["nonwear_min"].sum() == pytest.approx(idle.sum() * hop / 60, abs=0.01)
    assert daily["wear_min"].sum() == pytest.approx((windows & ~idle).sum() * hop / 60, abs=0.01)
    assert "of which device idle sleep" in (tmp_path / "r" / "report.html").read_text()



@requires_files
def test_genea_file_exit_status_3_and_strict_or_corrupt_copy_refused(bundles, tmp_path, capsys):
    """GGIRread's genea_testfile.bin, the older GENEA format (skdh crashes on it; it used to be
    refused, exit 2): read, its cut last page listed, exit 3; --strict refuses it in one line, and
    so is a copy with a corrupt page (exit 2, the file and the page named)."""
    path = DEVICES / "geneactiv" / "ggirread_genea_testfile.bin"
    out = tmp_path / "p.csv"
    args = ["predict", "--model", str(bundles["acc"]), "--input", str(path), "--out", str(out)]
    assert main(args) == 3
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "1 damaged part(s) left out (page 128 skipped: cut off at the end of the file" in err[0]
    rows = pd.read_csv(out)
    assert (rows["status"] == "ok").sum() > 0
    assert main(args + ["--force", "--strict"]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and str(path) in err[0] and "ends 1626 bytes into page 128" in err[0]
    raw = path.read_bytes()
    at = raw.index(b"\r\n\r\n") + 4 + 20 * 2048 + 7
    bad = tmp_path / "corrupt.bin"
    bad.write_bytes(raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:])
    assert main(["predict", "--model", str(bundles["acc"]), "--input", str(bad), "--out", str(tmp_path / "c.csv"),
                 "--strict"]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and str(bad) in err[0] and "corrupt GENEA page 21: chunk 1" in err[0]
    assert not (tmp_path / "c.csv").exists()
