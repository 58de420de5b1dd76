"""Ingestion end to end: IMU round trip through the signal layer, frames from the right times,
bad input → per-session errors + exit 3, Ego4D layout, sharding + merge, embeddings mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.cli import main
from crossmodal_har.errors import UserError
from crossmodal_har.pairs.ingest import build_ingest_config, ingest
from crossmodal_har.pairs.store import PairedWindowDataset, WindowStore
from crossmodal_har.signals.recording import read_recording
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import Units
from crossmodal_har.signals.windows import recording_windows
from helpers.sessions import frame_index, imu_signal, make_session, write_imu, write_video

FPS = 12  # slot centres (0.25 s + 0.5 s k) fall exactly on frames at this rate: no ties


def _ingest(src, out, workers=1, **flags):
    """Ingest through the library; ``flags`` are IngestConfig keys as the command's flags give them
    (``frames``/``size`` None = the video encoder's). Returns the report (``partial``: exit status 3)."""
    return ingest(src, out, build_ingest_config(flags), workers=workers, progress=False)


def _ingest_cli(src, out, *extra):
    return main(["-q", "ingest", "--src", str(src), "--out", str(out), "--no-progress", *extra])


def _report(store):
    return json.loads((Path(store) / "report.json").read_text())


def test_round_trip_imu_and_frames(tmp_path):
    src = tmp_path / "src"
    make_session(src, "a", seconds=9, fps=FPS, imu_rate=100, seed=1, session_json={"subject": "p1"})
    make_session(src, "b", seconds=7.5, fps=FPS, imu_rate=100, imu_start=-1.0, imu_seconds=10.0, seed=2,
                 session_json={"imu_offset_s": 1.0, "acc_unit": "g", "gyro_unit": "rad/s", "time_unit": "s",
                               "device": "test-rig"})
    (src / "labels.csv").write_text("session,start,end,label,subject\na,0,5,walk,p1\na,5,9,sit,p1\nb,0,7.5,walk,\n")
    assert not _ingest(src, tmp_path / "st")["partial"]
    st = WindowStore(tmp_path / "st")
    man = st.manifest
    assert list(man["session"]) == ["a", "a", "b", "b"]
    assert list(man["subject"]) == ["p1", "p1", "b", "b"]
    assert list(man["label"]) == ["walk", "", "walk", "walk"]
    assert st.class_names == ["sit", "walk"] or st.class_names == ["walk"]
    rep = _report(tmp_path / "st")
    assert rep["windows_kept"] == 4 and rep["errors"] == [] and not rep["partial"]
    # session b: IMU from -1 s (its clock) + 1 s offset = video 0 s; its last window would end past the video
    assert rep["windows_dropped"]["desync"] == 1

    pre = PreprocessConfig()
    for sess, offset in (("a", 0.0), ("b", 1.0)):
        rec = read_recording(src / sess / "imu.csv", Units())
        rec.t = rec.t + offset
        x, s, e, r = recording_windows(rec, pre)
        rows = np.flatnonzero(man["session"] == sess)
        for row in rows:
            k = int(np.argmin(np.abs(s - man["start_s"][row])))
            assert s[k] == man["start_s"][row] and e[k] == man["end_s"][row]
            np.testing.assert_array_equal(st.imu[row], x[k])  # bit-identical to the signal layer

    # frames: slot centres, K=10 over 5 s; each stored frame is the decoded frame at that time
    for row in range(len(st)):
        start = man["start_s"][row]
        want = np.round((start + 0.25 + 0.5 * np.arange(10)) * FPS).astype(int)
        got = [frame_index(f) for f in st.video[row]]
        assert got == list(want), (row, got, list(want))
        np.testing.assert_allclose(st.frame_times[row], want / FPS, atol=1e-6)
    assert st.video.shape[1:] == (10, 64, 64, 3)
    item = PairedWindowDataset(st)[0]
    assert item["subject"] == "p1" and item["label"] == st.class_names.index("walk")


def test_frames_per_slot_and_size(tmp_path):
    src = tmp_path / "src"
    make_session(src, "a", seconds=6, fps=10)  # no target falls half-way between two frames at 10 fps
    assert not _ingest(src, tmp_path / "st", frames=4, frames_per_slot=3, size=24)["partial"]
    st = WindowStore(tmp_path / "st")
    assert st.video.shape == (1, 12, 24, 24, 3) and st.meta["frames_per_slot"] == 3
    # 4 slots of 1.25 s, 3 sub-slot times each at (j + 0.5) / 3 of the slot
    want_t = (np.arange(4)[:, None] + (np.arange(3)[None, :] + 0.5) / 3).ravel() * 1.25
    want = np.round(want_t * 10).astype(int)
    assert [frame_index(f) for f in st.video[0]] == list(want)
    centre = PairedWindowDataset(st)[0]["video"].numpy()
    assert [frame_index(f) for f in centre] == list(want[1::3])


def test_damaged_video_drops_windows_not_session(tmp_path):
    """Frames missing in the middle of a video drop the windows that need them (decode_error)."""
    src = tmp_path / "src"
    d = src / "holey"
    times = np.r_[np.arange(0, 4, 1 / FPS), np.arange(9, 15, 1 / FPS)]  # no frame from 4 s to 9 s
    write_video(d / "video.mp4", len(times), times=times)
    t = np.arange(0, 15, 0.01)
    write_imu(d / "imu.csv", t, imu_signal(t))
    # a truncated file whose index comes first (faststart): it opens, but frames stop at ~60 %
    d = src / "truncated"
    write_video(d / "video.mp4", 12 * FPS, fps=FPS, faststart=True)
    data = (d / "video.mp4").read_bytes()
    (d / "video.mp4").write_bytes(data[: len(data) * 6 // 10])
    t = np.arange(0, 12, 0.01)
    write_imu(d / "imu.csv", t, imu_signal(t))
    assert not _ingest(src, tmp_path / "st")["partial"]
    st = WindowStore(tmp_path / "st")
    rep = _report(tmp_path / "st")
    holey = st.manifest[st.manifest["session"] == "holey"]
    assert list(holey["start_s"]) == [10.0]  # 0-5 ... 7.5-12.5 need frames from the hole
    trunc = st.manifest[st.manifest["session"] == "truncated"]
    assert list(trunc["start_s"]) == [0.0]  # 2.5-7.5 and 5-10 need frames past the cut
    assert rep["windows_dropped"]["decode_error"] == 4 + 2 and rep["windows_dropped"]["desync"] == 0


def test_units_check_warns(tmp_path, capsys):
    src = tmp_path / "src"
    d = make_session(src, "ms2", seconds=6, fps=FPS)
    t = np.arange(0, 6, 0.01)
    write_imu(d / "imu.csv", t, imu_signal(t) * np.r_[[9.80665] * 3, [1] * 3])  # m/s^2 declared as g
    assert _ingest_cli(src, tmp_path / "st") == 0  # a warning, not an error
    assert "looks like m/s^2 read as g" in capsys.readouterr().err
    rep = _report(tmp_path / "st")
    assert rep["units_suspect"] == ["ms2"]
    assert WindowStore(tmp_path / "st").manifest["flags"][0] == "units_suspect"


def _ego4d(root: Path):
    rng = np.random.default_rng(0)
    vids = []
    for uid, has_imu in (("v1", True), ("v2", False), ("v3", True), ("v4", True)):
        vids.append({"video_uid": uid, "has_imu": has_imu, "video_metadata": {"video_duration_sec": 8.0}})
        if uid == "v4":
            continue  # has_imu but no CSV
        write_video(root / "v2" / "full_scale" / f"{uid}.mp4", 8 * FPS, fps=FPS)
        if not has_imu:
            continue
        t = np.arange(0, 8, 1 / 200.0)
        x = imu_signal(t, seed=len(uid))
        ms = t * 1000.0
        df = pd.DataFrame({"component_idx": 0, "component_timestamp_ms": ms, "canonical_timestamp_ms": ms,
                           "gyro_x": x[:, 3], "gyro_y": x[:, 4], "gyro_z": x[:, 5],
                           "accl_x": x[:, 0] * 9.80665, "accl_y": x[:, 1] * 9.80665, "accl_z": x[:, 2] * 9.80665})
        if uid == "v1":  # shuffle a few rows and repeat some: what real Ego4D files look like
            idx = np.arange(len(df))
            for i in rng.choice(len(df) - 1, 7, replace=False):
                idx[i], idx[i + 1] = idx[i + 1], idx[i]
            df = pd.concat([df.iloc[idx], df.iloc[[100, 200, 300]]], ignore_index=True)
        (root / "v2" / "imu").mkdir(parents=True, exist_ok=True)
        df.to_csv(root / "v2" / "imu" / f"{uid}.csv", index=False)
    meta = root / "meta" / "ego4d.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"date": "x", "videos": vids}))
    return meta


def test_ego4d_layout(tmp_path):
    root = tmp_path / "ego"
    meta = _ego4d(root)
    report = _ingest(root, tmp_path / "st", layout="ego4d", **{"source.ego4d_json": str(meta)})
    assert report["partial"]  # v4 has no IMU file (exit status 3)
    rep = _report(tmp_path / "st")
    assert [e["session"] for e in rep["errors"]] == ["v4"]
    sess = {s["session"]: s for s in rep["sessions"]}
    assert set(sess) == {"v1", "v3", "v4"}  # v2 has no IMU: not a session
    assert sess["v1"]["imu_fixes"]["duplicates_removed"] == 3
    assert sess["v1"]["imu_fixes"]["non_monotonic_steps"] >= 7
    assert rep["imu_fixes"]["duplicates_removed"] == 3
    assert sess["v3"]["imu_fixes"]["non_monotonic_steps"] == 0
    assert sess["v1"]["gravity"]["verdict"] == "ok"  # m/s^2 converted to g
    st = WindowStore(tmp_path / "st")
    assert list(st.manifest["session"]) == ["v1", "v1", "v3", "v3"]
    # the repaired recording equals the clean one
    from crossmodal_har.signals.types import ImuRecording

    t = np.arange(0, 8, 1 / 200.0)
    x, s, _, _ = recording_windows(ImuRecording("v1", t, imu_signal(t, seed=2)), PreprocessConfig())
    np.testing.assert_allclose(st.imu[0], x[0], atol=1e-5)
    assert [frame_index(f) for f in st.video[1]] == list(np.round((2.5 + 0.25 + 0.5 * np.arange(10)) * FPS).astype(int))


def test_sharding_and_merge_equal_single_run(tmp_path):
    src = tmp_path / "src"
    for i in range(5):
        make_session(src, f"s{i}", seconds=6 + i, fps=FPS, seed=i)
    assert not _ingest(src, tmp_path / "all", shard_size=2)["partial"]
    parts = []
    for i in range(2):
        p = tmp_path / f"part{i}"
        assert not _ingest(src, p, shard_size=2, num_shards=2, shard_index=i)["partial"]
        parts.append(p)
    n0, n1 = len(WindowStore(parts[0])), len(WindowStore(parts[1]))
    assert n0 > 0 and n1 > 0
    assert main(["-q", "ingest", "--merge", str(parts[1]), str(parts[0]), "--out", str(tmp_path / "merged")]) == 0
    a, m = WindowStore(tmp_path / "all"), WindowStore(tmp_path / "merged")
    assert len(m) == len(a) == n0 + n1
    np.testing.assert_array_equal(m.imu[:], a.imu[:])
    np.testing.assert_array_equal(m.video[:], a.video[:])
    pd.testing.assert_frame_equal(m.manifest, a.manifest)
    assert _report(tmp_path / "merged")["windows_kept"] == _report(tmp_path / "all")["windows_kept"]
    # resuming with different settings is refused
    with pytest.raises(UserError, match="other settings"):
        _ingest(src, tmp_path / "all", shard_size=3)


@pytest.mark.slow
def test_embeddings_mode(tmp_path):
    from crossmodal_har.pairs.video_encoder import create_video_encoder, embed_frames

    src = tmp_path / "src"
    make_session(src, "a", seconds=8, fps=FPS)
    assert not _ingest(src, tmp_path / "emb", video_mode="embeddings", video_encoder="videomae-tiny")["partial"]
    enc = create_video_encoder("videomae-tiny")  # the same (cached, frozen) encoder ingestion used
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    st = WindowStore(tmp_path / "emb")
    assert st.meta["video_mode"] == "embeddings" and st.meta["embed_dim"] == enc.embed_dim
    assert st.video.dtype == np.float16 and st.video.shape == (2, enc.embed_dim)
    assert not _ingest(src, tmp_path / "fr", size=enc.input_size, frames=enc.num_frames)["partial"]
    frames = WindowStore(tmp_path / "fr").video[:]
    np.testing.assert_allclose(st.video[:].astype(np.float32), embed_frames(enc, frames).astype(np.float32),
                               rtol=1e-2, atol=1e-2)
    item = PairedWindowDataset(st)[1]
    assert item["video"].shape == (enc.embed_dim,)
    assert _ingest_cli(src, tmp_path / "x", "--video-mode", "embeddings", "--video-encoder", "videomae-tiny",
                       "--frames", "7") == 2


@pytest.mark.slow
def test_workers_equal_sequential(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        make_session(src, f"s{i}", seconds=6 + i, fps=FPS, seed=i)
    assert not _ingest(src, tmp_path / "one")["partial"]
    assert not _ingest(src, tmp_path / "two", workers=2)["partial"]
    a, b = WindowStore(tmp_path / "one"), WindowStore(tmp_path / "two")
    np.testing.assert_array_equal(a.imu[:], b.imu[:])
    np.testing.assert_array_equal(a.video[:], b.video[:])
    pd.testing.assert_frame_equal(a.manifest, b.manifest)


def test_imu_only_mode(tmp_path):
    src = tmp_path / "src"
    make_session(src, "a", seconds=9, fps=FPS)
    make_session(src, "b", seconds=8, fps=FPS, video=False)  # no video needed without video
    (src / "labels.csv").write_text("session,start,end,label\na,0,9,walk\n")
    assert not _ingest(src, tmp_path / "imu", video_mode="none")["partial"]
    st = WindowStore(tmp_path / "imu")
    assert st.video.shape == (4, 0) and list(st.manifest["session"]) == ["a", "a", "b", "b"]
    item = PairedWindowDataset(st)[0]
    assert item["label"] == 0 and item["video"].numel() == 0
    rec = read_recording(src / "b" / "imu.csv", Units())
    np.testing.assert_array_equal(st.imu[2:], recording_windows(rec, PreprocessConfig())[0])


@pytest.mark.slow
def test_simulator_output_round_trip(tmp_path):
    """The simulator's paired folders (with a declared sync offset) ingest; IMU windows equal the
    signal layer's on the offset-corrected CSV and frames sit at the slot centres."""
    from crossmodal_har.io import read_json
    from crossmodal_har.simulator import simulate

    sim = tmp_path / "sim"
    simulate(sim, subjects=2, minutes=0.5, seed=3, sync_offset_s=0.7, declare_offset=True)
    assert not _ingest(sim, tmp_path / "st")["partial"]
    st = WindowStore(tmp_path / "st")
    assert len(st) > 0 and st.subjects() == ["sub01", "sub02"]
    man = st.manifest
    for sess in man["session"].unique():
        sj = read_json(sim / sess / "session.json")
        rec = read_recording(sim / sess / "imu.csv", Units(sj["acc_unit"], sj["gyro_unit"], sj["time_unit"]))
        rec.t = rec.t + sj["imu_offset_s"]
        x, s, _, _ = recording_windows(rec, PreprocessConfig())
        rows = np.flatnonzero(man["session"] == sess)
        for row in rows:
            k = int(np.flatnonzero(s == man["start_s"][row])[0])
            np.testing.assert_array_equal(st.imu[row], x[k])
            centres = man["start_s"][row] + 0.25 + 0.5 * np.arange(10)
            fps = read_json(sim / sess / "session.json").get("fps", 10.0)
            assert np.abs(st.frame_times[row] - centres).max() <= 0.5 / fps + 1e-6


def test_a_bug_in_session_processing_fails_loudly(tmp_path):
    """Only bad data (DataError, naming the file) becomes a skipped session; any other exception is a
    bug and propagates instead of hiding in the report."""
    from crossmodal_har.errors import DataError
    from crossmodal_har.pairs.ingest_config import IngestConfig
    from crossmodal_har.pairs.process import process_session
    from crossmodal_har.pairs.session import SessionSpec

    def buggy():
        raise RuntimeError("a programming error")

    def bad_data():
        raise DataError(tmp_path / "imu.csv", "broken")

    with pytest.raises(RuntimeError, match="a programming error"):
        process_session(SessionSpec("a", "a", tmp_path / "video.mp4", buggy), IngestConfig(), tmp_path / "store")
    summary = process_session(SessionSpec("b", "b", tmp_path / "video.mp4", bad_data), IngestConfig(),
                              tmp_path / "store")
    assert summary["status"] == "error" and summary["error_reason"] == "data_error"
    assert "imu.csv" in summary["error"]
