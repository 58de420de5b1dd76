"""The committed corpus of bad inputs (tests/data/bad/) through the user-facing commands.

Every bad file or session gives a clear one-line message naming the file (and line where one
applies) and the documented exit status; nothing escapes as a traceback, nothing is dropped silently.
"""

import json
import shutil
from pathlib import Path

import pytest

from crossmodal_har.cli import main

BAD = Path(__file__).parent / "data" / "bad"

# issue 3: ingest --layout paired over tests/data/bad/sessions
SESSION_REASONS = {
    "corrupt_video": ("decode_error", "video.mp4"),
    "truncated_video": (None, "video.mp4"),
    "missing_imu": (None, "imu.csv"),
    "imu_not_overlapping": ("desync", None),
    "imu_shorter_than_video": ("desync", None),
    "non_monotonic_time": (None, "imu.csv:"),
    "unreadable_session_json": (None, "session.json:2"),
    "unknown_unit": (None, "furlongs"),
}


def test_bad_sessions_each_reported_others_ingested(tmp_path, capsys):
    store = tmp_path / "store"
    rc = main(["ingest", "--layout", "paired", "--src", str(BAD / "sessions"), "--out", str(store),
               "--frames", "4", "--size", "16", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 3, err  # finished, but partial
    assert "Traceback" not in err
    report = json.loads((store / "report.json").read_text())
    failed = {e["session"]: e for e in report["errors"]}
    assert set(failed) == set(SESSION_REASONS)
    for name, (reason, text) in SESSION_REASONS.items():
        e = failed[name]
        assert "\n" not in e["error"], e
        if reason:
            assert e["reason"] == reason, e
        if text:
            assert text in e["error"], e
    assert "session(s) failed" in err
    assert report["partial"] and report["sessions_ok"] == 1 and report["windows_kept"] >= 1
    assert report["windows_dropped"]["decode_error"] >= 1  # the IMU windows of the undecodable video
    from crossmodal_har.pairs.store import WindowStore

    assert set(WindowStore(store).manifest["session"]) == {"good"}


RECORDINGS = sorted((BAD / "recordings").glob("*.csv"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from helpers.bundles import make_bundle

    return make_bundle(tmp_path_factory.mktemp("bundle") / "b")


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_predict_on_bad_recordings(path, bundle, tmp_path, capsys):
    """issue 5: predict refuses broken files with one line naming file (and line), or predicts the
    good part and marks the bad stretch; never a traceback."""
    src = tmp_path / path.name
    shutil.copy(path, src)
    out = tmp_path / "pred.csv"
    rc = main(["predict", "--model", str(bundle), "--input", str(src), "--out", str(out), "--acc-unit", "g",
               "--gyro-unit", "rad/s", "--time-unit", "s"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc == 0:
        rows = out.read_text().splitlines()
        assert rows, "an empty prediction must be explained, not silent"
        if path.stem in ("nan_row", "nan_literal"):
            assert any("non_finite" in r or "gap" in r for r in rows[1:]) or len(rows) == 1
    else:
        assert rc == 2
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and str(src) in lines[0], err
        assert "np." not in lines[0], "messages show plain numbers, not numpy reprs"
