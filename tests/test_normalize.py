"""Normalisation modes: ``zscore`` per window, ``recording`` per whole recording (the paper's code)."""

import numpy as np
import pytest

from crossmodal_har.infer.source import InferenceSource
from crossmodal_har.infer.stream import StreamingWindower, WindowBatch, recording_stats_stream
from crossmodal_har.signals.normalize import RecordingStats, normalize_windows, recording_stats
from crossmodal_har.signals.recording import read_recording
from crossmodal_har.signals.types import ImuRecording, PreprocessConfig
from crossmodal_har.signals.units import Units
from crossmodal_har.signals.windows import recording_windows


def gappy_recording(rate=50.0, seconds=80.0, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = 100.0 + np.arange(n) / rate
    x = np.stack([np.sin(2 * np.pi * f * t + k) * (k + 1) for k, f in enumerate((0.3, 0.7, 1.1, 1.9, 2.3, 3.1))], 1)
    x[:, 2] += 1.0
    x[t > 160.0] *= 3.0  # the last stretch is louder: its windows' scale differs from the recording's
    x += rng.normal(0, 0.05, x.shape)
    keep = ~((t > 130.0) & (t < 131.0))  # a 1 s gap: two segments
    return t[keep], x[keep]


def test_recording_stats_in_pieces_equal_numpy_and_constant_channel_gets_std_1():
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 2.0, (1001, 6))
    x[:, 4] = 3.25  # constant
    x[17, 1] = np.nan  # left out of its channel only
    acc = RecordingStats()
    for a in range(0, len(x), 97):
        acc.push(x[a:a + 97])
    mean, std = acc.finish()
    np.testing.assert_allclose(mean, np.nanmean(x, axis=0), rtol=1e-12)
    np.testing.assert_allclose(std[[0, 1, 2, 3, 5]], np.nanstd(x, axis=0)[[0, 1, 2, 3, 5]], rtol=1e-10)
    assert std[4] == 1.0 and mean[4] == 3.25
    with pytest.raises(ValueError):
        RecordingStats().finish()


def test_recording_mode_zscores_the_whole_recording_before_windowing():
    """Hand-checked on one on-grid segment with no filter: windows are slices of the recording
    z-scored with its own mean and population std, not each window z-scored on its own."""
    rate = 50.0
    t = np.arange(0, 30, 1 / rate)
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (len(t), 6)) * [1, 2, 3, 0.1, 0.2, 0.3] + [0, 0, 1, 0, 0, 0]
    cfg = PreprocessConfig(normalization="recording", median_kernel=0, window_s=5.0, stride_s=5.0)
    xw, start, _, reasons = recording_windows(ImuRecording("r", t, x), cfg)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    expect = np.stack([z[i * 250:(i + 1) * 250] for i in range(6)])
    np.testing.assert_allclose(xw, expect, atol=1e-5)
    assert list(reasons) == [""] * 6
    # differs from per-window z-scoring, and normalize_windows leaves these windows alone
    phys, *_ = recording_windows(ImuRecording("r", t, x), PreprocessConfig(normalization="none", median_kernel=0,
                                                                            window_s=5.0, stride_s=5.0))
    assert not np.allclose(normalize_windows(phys, "zscore"), xw, atol=1e-2)
    assert normalize_windows(xw, "recording") is xw


def stream(t, x, cfg, sizes, stats):
    w = StreamingWindower(cfg, stats=stats)
    items, i, k = [], 0, 0
    while i < len(t):
        c = sizes[k % len(sizes)]
        items += w.push(t[i:i + c], x[i:i + c])
        i, k = i + c, k + 1
    items += w.finish()
    return np.concatenate([b.x for b in items if isinstance(b, WindowBatch)])


class Chunk:
    def __init__(self, t, data):
        self.t, self.data = t, data


@pytest.mark.parametrize("sizes", [[10 ** 9], [333, 7, 1000], [1]])
def test_streaming_recording_normalisation_equals_whole_file(sizes):
    """First pass for the statistics, second for the windows: the whole-file windows, whatever the
    chunking (a gap splits the recording; the statistics span both segments)."""
    t, x = gappy_recording()
    cfg = PreprocessConfig(normalization="recording", stride_s=2.0)
    whole, *_ = recording_windows(ImuRecording("r", t, x), cfg)
    chunks = [Chunk(t[a:a + s], x[a:a + s]) for a, s in zip(np.cumsum([0] + sizes * len(t))[:-1], sizes * len(t))
              if a < len(t)]
    stats = recording_stats_stream(chunks, cfg)
    got = stream(t, x, cfg, sizes, stats)
    assert got.shape == whole.shape and len(got) > 20
    np.testing.assert_allclose(got, whole, atol=1e-4)
    # the statistics are the whole recording's: the last, louder stretch keeps its larger scale
    assert np.abs(got[-1]).max() > 2 * np.abs(got[0]).max()
    with pytest.raises(ValueError, match="statistics"):
        StreamingWindower(cfg)


def test_predict_source_windows_equal_training_windows(tmp_path):
    """predict's path (InferenceSource: reader, first pass, windower) on a CSV file gives the windows
    the training loader cuts from the same file."""
    t, x = gappy_recording(seconds=60.0, seed=3)
    p = tmp_path / "r.csv"
    np.savetxt(p, np.column_stack([t, x]), delimiter=",", fmt="%.9f",
               header="time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z", comments="")
    units = Units("g", "rad/s", "s")
    cfg = PreprocessConfig(normalization="recording")
    whole, *_ = recording_windows(read_recording(p, units), cfg)
    src = InferenceSource(p, units, "acc+gyro", chunk_rows=211)
    src.calibrate()
    w = src.windower(cfg)
    items = [it for c in src for it in w.push(c.t, c.data)] + w.finish()
    got = np.concatenate([b.x for b in items if isinstance(b, WindowBatch)])
    np.testing.assert_allclose(got, whole, atol=1e-4)
    mean, std = recording_stats(np.concatenate([whole.reshape(-1, 6)]))
    assert np.abs(mean).max() < 0.2 and np.abs(std - 1).max() < 0.2  # roughly unit scale overall


def test_empty_stream_has_neutral_statistics():
    mean, std = recording_stats_stream([], PreprocessConfig(normalization="recording"))
    assert mean.tolist() == [0.0] * 6 and std.tolist() == [1.0] * 6
