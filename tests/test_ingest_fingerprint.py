"""Ingest resume keyed on content (issue 13, item 3): a re-run after an edit of a session's inputs
(its rows of labels.csv, imu.csv, video.mp4, session.json) ends with exactly the store a fresh ingest
of the current inputs gives; untouched sessions are not re-processed; a session that left the source
leaves the store; a changed ingest config is refused naming the keys."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.cli import main
from crossmodal_har.pairs.ingest import build_ingest_config, ingest
from crossmodal_har.pairs.store import SHARD_FILES, WindowStore
from helpers.sessions import imu_signal, make_session, write_imu, write_video

LABELS = "session,start,end,label\na,0,5,walk\na,5,9,sit\nb,0,9,walk\n"


def _ingest(src, out, *, workers=1, overrides=(), **flags):
    """Ingest through the library with one window per shard; ``flags`` are IngestConfig keys,
    ``overrides`` preprocess ``KEY=VALUE``s. Returns the report (``partial``: exit status 3)."""
    cfg = build_ingest_config({"shard_size": 1, **flags}, overrides=overrides)
    return ingest(src, out, cfg, workers=workers, progress=False)


def _ingest_cli(src, out, *extra):
    return main(["-q", "ingest", "--src", str(src), "--out", str(out), "--no-progress", "--shard-size", "1", *extra])


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    make_session(src, "a", seconds=9, fps=10, seed=1)
    make_session(src, "b", seconds=9, fps=10, seed=2)
    (src / "labels.csv").write_text(LABELS)
    return src


def _shard_ids(out: Path, session: str):
    """(name, inode, mtime_ns) of each shard's imu.npy of ``session``: changes when a shard is rewritten."""
    meta = json.loads((out / "store.json").read_text())
    ids = []
    for s in meta["shards"]:
        if s["session"] == session:
            st = os.stat(out / "shards" / s["name"] / "imu.npy")
            ids.append((s["name"], st.st_ino, st.st_mtime_ns))
    return ids


def _report(out: Path):
    rep = json.loads((out / "report.json").read_text())
    for row in rep["sessions"]:
        row.pop("seconds", None)  # timing
    return rep


def assert_same_store(a: Path, b: Path) -> None:
    """``a`` and ``b`` hold the same store: store.json, every shard's files, labels, report, no leftovers."""
    assert json.loads((a / "store.json").read_text()) == json.loads((b / "store.json").read_text())
    assert sorted(p.name for p in (a / "shards").iterdir()) == sorted(p.name for p in (b / "shards").iterdir())
    for s in json.loads((a / "store.json").read_text())["shards"]:
        for f in SHARD_FILES:
            pa, pb = a / "shards" / s["name"] / f, b / "shards" / s["name"] / f
            if f.endswith(".parquet"):
                pd.testing.assert_frame_equal(pd.read_parquet(pa), pd.read_parquet(pb))
            else:
                assert pa.read_bytes() == pb.read_bytes(), f"{s['name']}/{f} differs"
    sa, sb = WindowStore(a), WindowStore(b)
    pd.testing.assert_frame_equal(sa.manifest, sb.manifest)
    np.testing.assert_array_equal(sa.labels, sb.labels)
    assert sa.class_names == sb.class_names
    assert _report(a) == _report(b)
    assert sorted(p.name for p in (a / "ledger").iterdir()) == sorted(p.name for p in (b / "ledger").iterdir())


def _rerun_equals_fresh(src: Path, out: Path, fresh: Path, workers: int = 1) -> None:
    assert not _ingest(src, out, workers=workers)["partial"]
    assert not _ingest(src, fresh)["partial"]
    assert_same_store(out, fresh)


def test_labels_edit_of_one_session_reingests_only_it(tmp_path, capsys):
    src = _src(tmp_path)
    out = tmp_path / "st"
    assert _ingest_cli(src, out) == 0
    before_a, before_b = _shard_ids(out, "a"), _shard_ids(out, "b")
    (src / "labels.csv").write_text(LABELS.replace("a,0,5,walk", "a,0,5,run"))
    capsys.readouterr()
    assert _ingest_cli(src, out) == 0
    err = capsys.readouterr().err
    assert "session a changed" in err and "labels.csv" in err and "session b" not in err
    assert _ingest_cli(src, tmp_path / "fresh") == 0
    assert_same_store(out, tmp_path / "fresh")
    assert list(WindowStore(out).manifest["label"])[0] == "run"
    assert "run" in WindowStore(out).class_names
    assert _shard_ids(out, "b") == before_b  # untouched: not re-processed
    assert [i[1:] for i in _shard_ids(out, "a")] != [i[1:] for i in before_a]


def test_imu_edit_reingests(tmp_path):
    src = _src(tmp_path)
    out = tmp_path / "st"
    assert not _ingest(src, out)["partial"]
    t = np.arange(900) / 100.0
    write_imu(src / "a" / "imu.csv", t, imu_signal(t, seed=7))
    _rerun_equals_fresh(src, out, tmp_path / "fresh")


def test_same_size_edit_with_mtime_restored_is_seen(tmp_path):
    """An edit that keeps the size and puts the old mtime back (touch -r, copy tools) still counts."""
    src = _src(tmp_path)
    out = tmp_path / "st"
    assert not _ingest(src, out)["partial"]
    p = src / "a" / "imu.csv"
    st = os.stat(p)
    text = p.read_text()
    lines = text.splitlines(keepends=True)
    for i in range(len(lines) // 2 - 40, len(lines) // 2 + 40):  # samples in the middle, far from both ends
        fields = lines[i].split(",")
        fields[3] = re.sub(r"[1-8]", lambda m: str(int(m.group()) + 1), fields[3], count=1)  # acc_z ~ 1 g
        lines[i] = ",".join(fields)
    new = "".join(lines)
    assert len(new) == len(text) and new != text
    p.write_text(new)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(p).st_size == st.st_size and os.stat(p).st_mtime_ns == st.st_mtime_ns
    _rerun_equals_fresh(src, out, tmp_path / "fresh")


def test_video_edit_reingests(tmp_path):
    src = _src(tmp_path)
    out = tmp_path / "st"
    assert not _ingest(src, out)["partial"]
    n_before = int((WindowStore(out).manifest["session"] == "a").sum())
    write_video(src / "a" / "video.mp4", 60, fps=10)  # 6 s instead of 9: fewer windows
    make_session(src, "c", seconds=6, fps=10, seed=3)  # and a new session
    _rerun_equals_fresh(src, out, tmp_path / "fresh", workers=2)
    assert 0 < int((WindowStore(out).manifest["session"] == "a").sum()) < n_before


def test_session_json_edit_reingests(tmp_path):
    src = _src(tmp_path)
    out = tmp_path / "st"
    assert not _ingest(src, out)["partial"]
    (src / "b" / "session.json").write_text(json.dumps({"subject": "p9"}))
    _rerun_equals_fresh(src, out, tmp_path / "fresh")
    assert set(WindowStore(out).manifest["subject"]) == {"a", "p9"}


def test_removed_session_leaves_the_store(tmp_path, capsys):
    src = _src(tmp_path)
    out = tmp_path / "st"
    assert _ingest_cli(src, out) == 0
    shutil.rmtree(src / "b")
    (src / "labels.csv").write_text("session,start,end,label\na,0,5,walk\na,5,9,sit\n")
    capsys.readouterr()
    _rerun_equals_fresh(src, out, tmp_path / "fresh")
    assert WindowStore(out).sessions() == ["a"]
    assert "session b is no longer in" in capsys.readouterr().err


def test_unchanged_rerun_touches_nothing(tmp_path):
    src = _src(tmp_path)
    out = tmp_path / "st"
    assert not _ingest(src, out)["partial"]
    ids = _shard_ids(out, "a") + _shard_ids(out, "b")
    ledger = {p.name: p.read_bytes() for p in (out / "ledger").iterdir()}
    os.utime(src / "a" / "imu.csv")  # touched, content unchanged: not a change
    assert not _ingest(src, out)["partial"]
    assert _shard_ids(out, "a") + _shard_ids(out, "b") == ids
    assert set(ledger) == {p.name for p in (out / "ledger").iterdir()}


def test_a_store_from_before_ledger_versions_resumes_and_is_upgraded(tmp_path):
    """ingest_state.json and ledger entries without format_version (written before issue 18) are
    version 0: read as they are, nothing redone, rewritten as version 1."""
    src = _src(tmp_path)
    out = tmp_path / "st"
    assert not _ingest(src, out)["partial"]
    ids = _shard_ids(out, "a") + _shard_ids(out, "b")
    old = [out / "ingest_state.json", *sorted((out / "ledger").iterdir())]
    for p in old:
        data = json.loads(p.read_text())
        assert data.pop("format_version") == 1
        p.write_text(json.dumps(data))
    assert not _ingest(src, out)["partial"]
    assert _shard_ids(out, "a") + _shard_ids(out, "b") == ids  # nothing was redone
    assert all(json.loads(p.read_text())["format_version"] == 1 for p in old)
    _rerun_equals_fresh(src, out, tmp_path / "fresh")


def test_interrupted_reingest_never_leaves_a_mixed_store(tmp_path, monkeypatch):
    """Killed while a changed session is being redone: no store.json listing old and new shards."""
    src = _src(tmp_path)
    out = tmp_path / "st"
    assert _ingest_cli(src, out) == 0
    (src / "labels.csv").write_text(LABELS.replace("b,0,9,walk", "b,0,9,sit"))
    import crossmodal_har.pairs.ingest as ing

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ing, "process_session", boom)
    assert _ingest_cli(src, out) == 130
    monkeypatch.undo()
    assert not (out / "store.json").exists()  # the old store is withdrawn before anything changes
    _rerun_equals_fresh(src, out, tmp_path / "fresh")


def test_changed_config_is_refused_naming_the_keys(tmp_path, capsys):
    src = _src(tmp_path)
    out = tmp_path / "st"
    assert _ingest_cli(src, out) == 0
    capsys.readouterr()
    rc = main(["-q", "ingest", "--src", str(src), "--out", str(out), "--no-progress", "--shard-size", "2",
               "--set", "stride_s=2"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "config.shard_size: 1 -> 2" in err and "config.preprocess.stride_s" in err
    assert len(err.strip().splitlines()) == 1


def test_entries_made_with_other_settings_are_redone(tmp_path):
    """ingest_state.json replaced (or deleted) by hand: the ledger's entries still say what they were made with."""
    src = _src(tmp_path)
    out = tmp_path / "st"
    assert not _ingest(src, out)["partial"]
    (out / "ingest_state.json").unlink()
    (out / "store.json").unlink()
    assert not _ingest(src, out, overrides=["stride_s=2"])["partial"]
    assert not _ingest(src, tmp_path / "fresh", overrides=["stride_s=2"])["partial"]
    assert_same_store(out, tmp_path / "fresh")


def test_damaged_ledger_entry_is_redone(tmp_path):
    src = _src(tmp_path)
    out = tmp_path / "st"
    assert not _ingest(src, out)["partial"]
    entry = sorted((out / "ledger").iterdir())[0]
    entry.write_text("{not json")
    (out / "ledger" / ".x.json.abc123.tmp").write_text("{")  # left by a write a kill interrupted
    (out / ".store.json.abc123.tmp").write_text("{")
    (out / "shards" / "orphan-deadbeef-0000").mkdir()  # listed by no ledger entry
    _rerun_equals_fresh(src, out, tmp_path / "fresh")
    assert not list(out.glob(".*.tmp"))


def test_ego4d_imu_edit_reingests(tmp_path):
    root = tmp_path / "ego"
    vids = []
    for uid in ("v1", "v3"):
        vids.append({"video_uid": uid, "has_imu": True, "video_metadata": {"video_duration_sec": 8.0}})
        write_video(root / "full_scale" / f"{uid}.mp4", 80, fps=10)
        _ego4d_csv(root / "imu" / f"{uid}.csv", seed=len(uid))
    (root / "ego4d.json").write_text(json.dumps({"videos": vids}))
    out = tmp_path / "st"
    assert not _ingest(root, out, layout="ego4d")["partial"]
    _ego4d_csv(root / "imu" / "v3.csv", seed=11)
    assert not _ingest(root, out, layout="ego4d")["partial"]
    assert not _ingest(root, tmp_path / "fresh", layout="ego4d")["partial"]
    assert_same_store(out, tmp_path / "fresh")


def _ego4d_csv(path: Path, seed: int) -> None:
    t = np.arange(0, 8, 1 / 200.0)
    x = imu_signal(t, seed=seed)
    ms = t * 1000.0
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"canonical_timestamp_ms": ms, "gyro_x": x[:, 3], "gyro_y": x[:, 4], "gyro_z": x[:, 5],
                  "accl_x": x[:, 0] * 9.80665, "accl_y": x[:, 1] * 9.80665,
                  "accl_z": x[:, 2] * 9.80665}).to_csv(path, index=False)


# ------------------------------------------------------------------------ a real killed process

def _env():
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _cmd(src, out):
    return [sys.executable, "-m", "crossmodal_har", "-q", "ingest", "--src", str(src), "--out", str(out),
            "--shard-size", "1", "--no-progress"]


@pytest.mark.slow
def test_killed_run_then_edit_then_rerun_equals_fresh(tmp_path):
    src = tmp_path / "src"
    for i in range(5):
        make_session(src, f"s{i:02d}", seconds=12, fps=10, seed=i)
    (src / "labels.csv").write_text("session,start,end,label\n" + "".join(f"s{i:02d},0,6,walk\n" for i in range(5)))
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(src, out), env=_env(), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    ledger = out / "ledger"
    while proc.poll() is None and time.monotonic() < deadline and not list(ledger.glob("[!.]*.json")):
        time.sleep(0.005)  # until the first session is finished (its ledger entry written)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "store.json").exists()
    done = sorted(json.loads(p.read_text())["session"] for p in ledger.glob("[!.]*.json"))
    assert done and len(done) < 5
    first = done[0]
    # edit a session the killed run had finished, and one it had not
    (src / "labels.csv").write_text((src / "labels.csv").read_text().replace(f"{first},0,6,walk", f"{first},0,6,sit"))
    t = np.arange(1200) / 100.0
    write_imu(src / "s04" / "imu.csv", t, imu_signal(t, seed=40))
    subprocess.run(_cmd(src, out), env=_env(), check=True, timeout=300, stderr=subprocess.DEVNULL)
    subprocess.run(_cmd(src, tmp_path / "fresh"), env=_env(), check=True, timeout=300, stderr=subprocess.DEVNULL)
    assert_same_store(out, tmp_path / "fresh")
    assert "sit" in WindowStore(out).class_names


# --------------------------------------------------------------------- the fingerprint itself

def _spec(tmp_path: Path):
    from crossmodal_har.pairs.sources import iter_paired_sessions

    src = _src(tmp_path)
    return src, {s.name: s for s in iter_paired_sessions(src)}


def _backdate(fp):
    """Pretend the files were hashed 10 s after their last change (not racy: the stat is trusted)."""
    for e in fp["files"]:
        if "blake2b" in e:
            e["hashed_at_ns"] = max(e["ctime_ns"], e["mtime_ns"]) + 10_000_000_000
    return fp


def test_inputs_listed_by_the_paired_source(tmp_path):
    src, specs = _spec(tmp_path)
    assert [p.name for p in specs["a"].inputs] == ["video.mp4", "imu.csv", "session.json"]
    from crossmodal_har.pairs.fingerprint import fingerprint

    fp = fingerprint(specs["a"])
    assert [("missing" in e) for e in fp["files"]] == [False, False, True]


def test_trusted_stat_skips_hashing_and_a_moved_ctime_rehashes(tmp_path, monkeypatch):
    import crossmodal_har.pairs.fingerprint as fpm

    src, specs = _spec(tmp_path)
    stored = _backdate(fpm.fingerprint(specs["a"]))

    def no_hash(path):
        raise AssertionError(f"{path} hashed although its stat is unchanged")

    monkeypatch.setattr(fpm, "file_digest", no_hash)
    assert fpm.compare(specs["a"], stored) == (None, None)
    monkeypatch.undo()
    # same size, mtime put back: ctime moved, so the file is hashed again and the edit is seen
    p = src / "a" / "video.mp4"
    st = os.stat(p)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fpm.compare(specs["a"], stored)[0] == "video.mp4"
    # touched only: not a change, and the entry is refreshed
    p.write_bytes(bytes(data))
    stored = _backdate(fpm.fingerprint(specs["a"]))
    os.utime(p)
    why, new = fpm.compare(specs["a"], stored)
    assert why is None and new is not None and new["files"][0]["mtime_ns"] != stored["files"][0]["mtime_ns"]


def test_session_json_appearing_or_other_video_is_a_change(tmp_path):
    from crossmodal_har.pairs.fingerprint import compare, fingerprint
    from crossmodal_har.pairs.sources import iter_paired_sessions

    src, specs = _spec(tmp_path)
    stored = fingerprint(specs["a"])
    (src / "a" / "session.json").write_text("{}")
    assert compare(specs["a"], stored)[0] == "session.json"
    (src / "a" / "session.json").unlink()
    shutil.copy(src / "a" / "video.mp4", src / "a" / "video.avi")  # now the source's choice
    spec = {s.name: s for s in iter_paired_sessions(src)}["a"]
    assert compare(spec, stored)[0] == "its set of input files"
    assert compare(specs["a"], {"files": []})[0].startswith("no input fingerprint")
    assert compare(specs["a"], dict(stored, files=[{"path": 3}]))[0] == "its set of input files"


def test_changed_local_encoder_weights_are_refused(tmp_path):
    from crossmodal_har.errors import UserError
    from crossmodal_har.pairs.fingerprint import file_entry
    from crossmodal_har.pairs.ingest import _local_weights
    from crossmodal_har.pairs.ledger import IngestState, check_weights
    from crossmodal_har.pairs.ingest_config import IngestConfig

    w = tmp_path / "weights"
    (w / "sub").mkdir(parents=True)
    (w / "config.json").write_text("{}")
    (w / "sub" / "model.safetensors").write_bytes(b"x" * 100)
    cfg = IngestConfig(video_mode="embeddings", video_encoder="videomae-tiny", video_encoder_weights=str(w))
    files = _local_weights(cfg)
    assert [p.name for p in files] == ["config.json", "model.safetensors"]
    state_path = tmp_path / "ingest_state.json"
    state = IngestState(settings={}, weights=[file_entry(p) for p in files])
    check_weights(state_path, state, files, cfg.video_encoder_weights)  # unchanged: fine
    (w / "sub" / "model.safetensors").write_bytes(b"y" * 100)
    with pytest.raises(UserError, match="model.safetensors"):
        check_weights(state_path, state, _local_weights(cfg), cfg.video_encoder_weights)
    (w / "extra.bin").write_bytes(b"z")
    with pytest.raises(UserError, match="list of files"):
        check_weights(state_path, state, _local_weights(cfg), cfg.video_encoder_weights)


GOPRO_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gopro"


@pytest.mark.skipif(not (GOPRO_DIR / "karma.mp4").is_file() or not (GOPRO_DIR / "max-heromode.mp4").is_file(),
                    reason=f"real GoPro samples not found at {GOPRO_DIR}")
def test_gopro_file_replaced_or_labels_edited_reingests(tmp_path):
    src = tmp_path / "gopro"
    (src / "alice").mkdir(parents=True)
    (src / "bob").mkdir()
    shutil.copy(GOPRO_DIR / "karma.mp4", src / "alice" / "GOPR0001.MP4")
    shutil.copy(GOPRO_DIR / "max-heromode.mp4", src / "bob" / "GS010001.MP4")
    (src / "labels.csv").write_text("session,start,end,label\nalice__GOPR0001,0,100,walk\nbob__GS010001,0,100,walk\n")
    out = tmp_path / "st"
    assert not _ingest(src, out, layout="gopro", video_mode="none")["partial"]
    before_alice = _shard_ids(out, "alice__GOPR0001")
    shutil.copy(GOPRO_DIR / "karma.mp4", src / "bob" / "GS010001.MP4")  # another recording, same name
    (src / "labels.csv").write_text("session,start,end,label\nalice__GOPR0001,0,100,walk\nbob__GS010001,0,100,sit\n")
    assert not _ingest(src, out, layout="gopro", video_mode="none")["partial"]
    assert not _ingest(src, tmp_path / "fresh", layout="gopro", video_mode="none")["partial"]
    assert_same_store(out, tmp_path / "fresh")
    assert _shard_ids(out, "alice__GOPR0001") == before_alice
    assert WindowStore(out).class_names == ["sit", "walk"]
