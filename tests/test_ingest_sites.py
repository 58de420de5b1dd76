"""Several IMUs per paired session (``imu-<site>.csv``, the simulator's ``--mounting head,waist``):
``ingest --imu-site SITE`` reads that site's file; without it, a session with per-site files only is
refused naming its folder and sites; a missing site file fails its session naming the file; the site
is a setting of the store (a re-ingest with another site is refused, not mixed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError, UserError
from crossmodal_har.pairs.ingest import build_ingest_config, ingest
from crossmodal_har.pairs.sources import iter_sessions
from crossmodal_har.pairs.store import WindowStore
from crossmodal_har.signals.recording import read_recording
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import Units
from crossmodal_har.signals.windows import recording_windows
from helpers.sessions import imu_signal, make_session, write_imu

FPS = 12


def _two_site_corpus(root: Path, names=("a", "b"), seconds: float = 9.0) -> Path:
    """Sessions whose head and waist files differ (different signals), and no imu.csv."""
    for i, name in enumerate(names):
        d = make_session(root, name, seconds=seconds, fps=FPS, imu_rate=100, seed=i)
        (d / "imu.csv").rename(d / "imu-head.csv")
        t = np.arange(int(seconds * 100)) / 100.0
        write_imu(d / "imu-waist.csv", t, imu_signal(t, seed=100 + i) * 0.5 + np.array([0, 0, 0.5, 0, 0, 0]))
    return root


def _cli(src, out, *extra):
    return main(["-q", "ingest", "--src", str(src), "--out", str(out), "--no-progress", *extra])


def test_site_selects_that_file(tmp_path):
    src = _two_site_corpus(tmp_path / "src")
    assert _cli(src, tmp_path / "st", "--imu-site", "waist", "--frames", "4", "--size", "16") == 0
    st = WindowStore(tmp_path / "st")
    man = st.manifest
    for sess in ("a", "b"):
        for site, equal in (("waist", True), ("head", False)):
            x, s, _, _ = recording_windows(read_recording(src / sess / f"imu-{site}.csv", Units()), PreprocessConfig())
            rows = np.flatnonzero(man["session"] == sess)
            assert len(rows) > 0
            k = [int(np.argmin(np.abs(s - man["start_s"][r]))) for r in rows]
            assert np.array_equal(st.imu[rows], x[k]) is equal
    # the site is part of the store's settings: another site into the same store is refused, not mixed
    with pytest.raises(UserError, match="imu_site"):
        ingest(src, tmp_path / "st", build_ingest_config({"source.imu_site": "head", "frames": 4, "size": 16}),
               progress=False)
    # the same site resumes (nothing to redo)
    rep = ingest(src, tmp_path / "st", build_ingest_config({"source.imu_site": "waist", "frames": 4, "size": 16}),
                 progress=False)
    assert rep["sessions_ok"] == 2 and not rep["partial"]


def test_no_site_given_lists_the_sites(tmp_path, capsys):
    src = _two_site_corpus(tmp_path / "src")
    with pytest.raises(DataError) as exc:
        list(iter_sessions("paired", src))
    msg = str(exc.value)
    assert "\n" not in msg and str(src / "a") in msg and "head, waist" in msg and "--imu-site" in msg
    assert _cli(src, tmp_path / "st") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "head, waist" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "st" / "store.json").exists()


def test_missing_site_file_fails_its_session_naming_the_file(tmp_path, capsys):
    src = _two_site_corpus(tmp_path / "src")
    (src / "b" / "imu-waist.csv").unlink()
    assert _cli(src, tmp_path / "st", "--imu-site", "waist", "--frames", "4", "--size", "16") == 3
    rep = json.loads((tmp_path / "st" / "report.json").read_text())
    assert rep["sessions_ok"] == 1 and len(rep["errors"]) == 1
    err = rep["errors"][0]["error"]
    assert str(src / "b" / "imu-waist.csv") in err and "sites head" in err
    # a site no session has (a typo) is refused at once, listing the sites there are
    with pytest.raises(UserError, match=r"imu-wasit.*sites found: head, waist"):
        list(iter_sessions("paired", src, imu_site="wasit"))
    with pytest.raises(UserError, match="body-site name"):
        list(iter_sessions("paired", src, imu_site="../a"))


def test_plain_imu_csv_unchanged_and_site_needs_paired(tmp_path):
    src = tmp_path / "src"
    make_session(src, "a", seconds=6, fps=FPS)
    (src / "a" / "imu-waist.csv").write_bytes((src / "a" / "imu.csv").read_bytes())
    (spec,) = list(iter_sessions("paired", src))  # imu.csv present: read as before, no site in its metadata
    assert spec.inputs[1].name == "imu.csv" and "imu_site" not in spec.meta
    (spec,) = list(iter_sessions("paired", src, imu_site="waist"))
    assert spec.inputs[1].name == "imu-waist.csv" and spec.meta["imu_site"] == "waist"
    with pytest.raises(UserError, match="--imu-site applies to --layout paired only"):
        build_ingest_config({"layout": "ego4d", "source.imu_site": "waist"})
    with pytest.raises(UserError, match="--imu-offset-s applies to --layout ego4d only"):
        build_ingest_config({"layout": "paired", "source.imu_offset_s": 1.0})
