"""PyAV decoding: one pass, nearest frame by presentation time (CFR and VFR), resize + crop, errors."""

from __future__ import annotations

import numpy as np
import pytest

from crossmodal_har.errors import DataError
from crossmodal_har.pairs.video import (DecodeStats, decode_loop, iter_nearest_frames, probe_video,
                                        resize_crop_dims)
from helpers.sessions import frame_index, write_video


def test_resize_crop_dims():
    assert resize_crop_dims(48, 32, 64) == (96, 64, 16, 0)
    assert resize_crop_dims(32, 48, 16) == (16, 24, 0, 4)
    assert resize_crop_dims(64, 64, 64) == (64, 64, 0, 0)


def test_nearest_frames_cfr(tmp_path):
    p = write_video(tmp_path / "v.mp4", 40, fps=10)
    info = probe_video(p)
    assert info.fps == pytest.approx(10) and info.duration_s == pytest.approx(4.0, abs=0.11)
    targets = np.array([0.0, 0.04, 0.06, 0.51, 0.51, 1.0, 2.37, 3.9, 5.0])
    stats = DecodeStats()
    got = list(iter_nearest_frames(p, targets, 16, stats=stats))
    assert [g[0] for g in got] == list(range(len(targets)))
    idx = [frame_index(g[1]) for g in got]
    assert idx == [0, 0, 1, 5, 5, 10, 24, 39, 39]  # 5.0 s is past the end: the last frame (caller judges)
    assert [g[1].shape for g in got] == [(16, 16, 3)] * len(targets)
    np.testing.assert_allclose([g[2] for g in got], np.array(idx) / 10)
    assert stats.frames_converted == len(set(idx))  # each chosen frame converted once


def test_nearest_frames_vfr(tmp_path):
    times = np.cumsum(np.r_[0.0, np.tile([0.02, 0.2, 0.07], 10)])[:25]
    p = write_video(tmp_path / "vfr.mp4", len(times), times=times)
    targets = np.sort(np.random.default_rng(0).uniform(0, times[-1], 50))
    got = list(iter_nearest_frames(p, targets, 16))
    for (_, img, t), target in zip(got, targets):
        want = int(np.argmin(np.abs(times - target)))
        assert frame_index(img) == want
        assert t == pytest.approx(times[want], abs=1e-3)


def test_decode_loop_counts_frames(tmp_path):
    assert decode_loop(write_video(tmp_path / "v.mp4", 17)) == 17


def test_bad_files_are_data_errors(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(DataError, match="cannot open video"):
        probe_video(bad)
    with pytest.raises(DataError, match="not found"):
        list(iter_nearest_frames(tmp_path / "missing.mp4", np.array([0.0]), 16))
    good = write_video(tmp_path / "v.mp4", 30)
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError):
        probe_video(trunc)


def test_helper_video_frames_encode_index(tmp_path):
    import av

    p = write_video(tmp_path / "v.mp4", 20, fps=10)
    with av.open(str(p)) as c:
        idx = [frame_index(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    assert idx == list(range(20))
