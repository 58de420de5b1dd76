"""Units, reading, resampling, median filter, windows and quality checks."""

import math

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.signals.recording import read_recording
from crossmodal_har.signals.resample import (ANTIALIAS_MARGIN_S, antialias_margin_s, grid_start, grid_stop,
                                             resample, resample_segment, split_at_gaps)
from crossmodal_har.signals.types import STANDARD_GRAVITY, ImuRecording, PreprocessConfig, Segment
from crossmodal_har.signals.units import Units, to_canonical
from crossmodal_har.signals.windows import (check_quality, flat_windows, median_filter, recording_windows,
                                            window_segments)


# ------------------------------------------------------------------------------------- units

def test_to_canonical_converts_every_unit():
    t = np.array([0.0, 20.0, 40.0])
    acc = np.array([[STANDARD_GRAVITY, 0, -2 * STANDARD_GRAVITY]] * 3)
    gyro = np.array([[180.0, 90.0, -57.29577951308232]] * 3)
    ts, data = to_canonical(t, acc, gyro, Units("m/s^2", "deg/s", "ms"))
    np.testing.assert_allclose(ts, [0.0, 0.02, 0.04])
    np.testing.assert_allclose(data[0], [1.0, 0.0, -2.0, math.pi, math.pi / 2, -1.0], rtol=1e-12)
    assert ts.dtype == np.float64 and data.dtype == np.float64 and data.shape == (3, 6)
    ts2, data2 = to_canonical(t, acc, gyro, Units())
    np.testing.assert_array_equal(ts2, t)
    np.testing.assert_array_equal(data2[:, :3], acc)


def test_reader_applies_declared_units(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z,extra\n"
                 "1000,9.80665,0,0,180,0,0,x\n1010,0,9.80665,0,0,90,0,y\n")
    rec = read_recording(p, Units("m/s^2", "deg/s", "ms"), subject="s1")
    assert rec.name == "r" and rec.subject == "s1"
    np.testing.assert_allclose(rec.t, [1.0, 1.01])
    np.testing.assert_allclose(rec.data, [[1, 0, 0, math.pi, 0, 0], [0, 1, 0, 0, math.pi / 2, 0]])


def test_reader_columns_in_any_order_and_parquet_matches_csv(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(100, 6)), columns=["gyro_z", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y"])
    df.insert(3, "time", np.arange(100) * 0.01)
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_parquet(tmp_path / "a.parquet")
    a = read_recording(tmp_path / "a.csv", Units())
    b = read_recording(tmp_path / "a.parquet", Units())
    np.testing.assert_allclose(a.data, b.data)
    np.testing.assert_allclose(a.data[:, 5], df["gyro_z"].to_numpy())


# --------------------------------------------------------------------------------- resampling

def _sine_fit(y, rate, freq):
    """Amplitude and phase-free frequency estimate of a sampled sine."""
    n = len(y)
    y = y - y.mean()
    spec = np.abs(np.fft.rfft(y * np.hanning(n)))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    k = int(np.argmax(spec))
    # amplitude by least squares at the known frequency
    tt = np.arange(n) / rate
    A = np.stack([np.sin(2 * np.pi * freq * tt), np.cos(2 * np.pi * freq * tt), np.ones(n)], 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return freqs[k], float(np.hypot(coef[0], coef[1]))


@pytest.mark.parametrize("in_rate", [20.0, 32.0, 50.0, 100.0, 200.0, 400.0])
def test_sine_keeps_frequency_and_amplitude(in_rate):
    freq, amp = 2.5, 0.7
    t = 0.013 + np.arange(int(30 * in_rate)) / in_rate
    x = np.stack([amp * np.sin(2 * np.pi * freq * t) + 1.0] * 6, axis=1)
    seg = resample_segment(t, x, 50.0)
    assert seg.rate_hz == 50.0
    assert seg.t0 == pytest.approx(math.ceil(0.013 * 50) / 50)
    y = seg.data[25:-25, 0].astype(np.float64)  # away from the edges
    f_est, a_est = _sine_fit(y, 50.0, freq)
    assert f_est == pytest.approx(freq, abs=0.05)
    assert a_est == pytest.approx(amp, rel=0.02)
    assert y.mean() == pytest.approx(1.0, abs=0.01)  # DC (gravity) kept
    tt = seg.t0 + np.arange(len(seg.data)) / 50.0
    truth = amp * np.sin(2 * np.pi * freq * tt) + 1.0
    assert np.max(np.abs(seg.data[:, 0] - truth)) < 0.05


def test_downsampling_removes_content_above_output_nyquist():
    t = np.arange(0, 20, 1 / 200)
    x = np.sin(2 * np.pi * 40.0 * t)[:, None]  # would alias to 10 Hz at 50 Hz
    seg = resample_segment(t, x, 50.0)
    assert np.abs(seg.data[20:-20]).max() < 0.01
    naive = x[::4, 0]  # plain decimation aliases with full amplitude
    assert np.abs(naive).max() > 0.5


def test_irregular_and_jittered_timestamps():
    rng = np.random.default_rng(1)
    for mean_dt in (0.01, 0.02, 0.04):  # 100 Hz, 50 Hz, 25 Hz with +-40 % jitter
        t = np.cumsum(rng.uniform(0.6 * mean_dt, 1.4 * mean_dt, int(40 / mean_dt)))
        x = np.stack([np.sin(2 * np.pi * 1.5 * t), np.cos(2 * np.pi * 0.7 * t)], axis=1)
        seg = resample_segment(t, x, 50.0)
        tt = seg.t0 + np.arange(len(seg.data)) / 50.0
        assert tt[0] >= t[0] - 1e-9 and tt[-1] <= t[-1] + 1e-9
        truth = np.stack([np.sin(2 * np.pi * 1.5 * tt), np.cos(2 * np.pi * 0.7 * tt)], axis=1)
        err = np.abs(seg.data - truth)[15:-15]
        assert err.max() < 0.02, (mean_dt, err.max())


def test_split_at_gaps_and_no_interpolation_across_gaps():
    t = np.concatenate([np.arange(0, 10, 0.02), np.arange(12, 20, 0.02), [20.5, 20.7]])
    assert split_at_gaps(t, 0.25) == [(0, 500), (500, 900), (900, 902)]
    assert split_at_gaps(np.array([]), 0.25) == []
    x = np.ones((len(t), 6))
    x[500:] = 2.0
    rec = ImuRecording("r", t, x)
    segs = resample(rec, 50.0, 0.25)
    assert len(segs) == 3
    assert segs[0].t0 == 0.0 and len(segs[0].data) == 500
    assert segs[1].t0 == pytest.approx(12.0) and np.all(segs[1].data == 2.0)
    assert np.all(segs[0].data == 1.0)  # nothing of the second stretch leaked in
    # a small (tolerated) gap is interpolated
    assert len(resample(rec, 50.0, 5.0)) == 1


@pytest.mark.parametrize("mean_dt", [0.005, 0.0025])  # ~200 Hz and ~400 Hz, jittered
def test_global_grid_is_deterministic_across_chunks(mean_dt):
    """A stretch resampled from a chunk (plus the documented margin) is bit-identical to the same
    stretch of the whole recording (streaming prediction relies on it)."""
    from crossmodal_har.signals.resample import lowpass_eval

    rng = np.random.default_rng(2)
    t = 3.7 + np.cumsum(rng.uniform(0.6 * mean_dt, 1.4 * mean_dt, int(100 / mean_dt)))
    x = np.stack([np.sin(2 * np.pi * 3 * t), rng.normal(size=len(t))], axis=1)
    whole = resample_segment(t, x, 50.0)
    k_whole = grid_start(t[0], 50.0)
    assert whole.t0 == k_whole / 50.0
    m = antialias_margin_s(50.0)
    assert m == ANTIALIAS_MARGIN_S
    a, b = 30.0, 50.0
    sel = (t >= a - m - 2 * mean_dt * 1.4) & (t <= b + m + 2 * mean_dt * 1.4)
    k0, k1 = grid_start(a, 50.0), grid_stop(b, 50.0)
    part = resample_segment(t[sel], x[sel], 50.0, t0=k0 / 50.0, n=k1 - k0 + 1, antialias=True)
    np.testing.assert_array_equal(part.data, whole.data[k0 - k_whole:k1 - k_whole + 1])
    grid = k0 / 50.0 + np.arange(k1 - k0 + 1) / 50.0
    np.testing.assert_array_equal(lowpass_eval(t, x, grid, 50.0, block=7), lowpass_eval(t, x, grid, 50.0))


def test_on_grid_input_is_copied_exactly():
    t = np.arange(1000) / 50.0
    x = np.random.default_rng(0).normal(size=(1000, 6))
    seg = resample_segment(t, x, 50.0)
    np.testing.assert_array_equal(seg.data, x.astype(np.float32))


# ---------------------------------------------------------------------------- median filter

def test_median_filter_per_channel_and_edges():
    d = np.zeros((20, 2))
    d[:, 1] = 1.0
    d[7, 0] = 100.0  # spike
    d[0, 1] = 5.0
    out = median_filter(d, 5)
    assert out[7, 0] == 0.0 and out[:, 1].max() == 1.0 and out[0, 1] == 1.0
    assert median_filter(d, 0) is d and median_filter(d, 1) is d
    with pytest.raises(ValueError):
        median_filter(d, 4)


# -------------------------------------------------------------------------- windows, quality

def test_window_boundaries_and_times():
    cfg = PreprocessConfig(rate_hz=10.0, window_s=1.0, stride_s=0.5, median_kernel=0)
    data = np.arange(35, dtype=np.float32)[:, None].repeat(6, 1)
    data[:, 2] += 1.0
    segs = [Segment(t0=2.0, rate_hz=10.0, data=data), Segment(t0=10.0, rate_hz=10.0, data=data[:9])]
    x, start, end, reasons = window_segments(segs, cfg)
    assert x.shape == (6, 10, 6) and x.dtype == np.float32
    np.testing.assert_allclose(start, [2.0, 2.5, 3.0, 3.5, 4.0, 4.5])
    np.testing.assert_allclose(end, start + 1.0)
    np.testing.assert_array_equal(x[1, :, 0], np.arange(5, 15))  # window starts at sample stride*i
    assert x[-1, -1, 0] == 34  # last full window ends at the segment end
    assert list(reasons) == [""] * 6
    x2, s2, e2, r2 = window_segments([segs[1]], cfg)  # shorter than one window
    assert x2.shape == (0, 10, 6) and len(s2) == len(e2) == len(r2) == 0


def test_quality_reasons():
    cfg = PreprocessConfig(acc_saturation_g=8.0, gyro_saturation_rad_s=30.0)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, size=(5, 250, 6)).astype(np.float32)
    x[1, 10, 4] = np.nan
    x[2, :, :3] = [0.0, 0.0, 1.0]  # dead accelerometer
    x[3, :20, 0] = 8.0  # clipped at the rail on 8 % of samples
    x[4, :, 3] = 40.0
    assert list(check_quality(x, cfg)) == ["", "non_finite", "flat_line", "saturation", "saturation"]
    assert list(check_quality(x, PreprocessConfig())) == ["", "non_finite", "flat_line", "", ""]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("W", [1, 2, 3, 250, 1000])
def test_flat_windows_decide_as_numpy_std(W, dtype):
    """The range bounds decide as numpy's std would, on windows near the threshold (std from 0.5x to
    2x of it), constant ones, and small noise on a large offset (the float mean's error matters)."""
    thr = PreprocessConfig().flat_std_g
    rng = np.random.default_rng(W)
    n = 600
    offset = rng.choice([0.0, 1.0, -8.0, 15.99], size=(n, 1, 6))
    x = (offset + rng.normal(size=(n, W, 6)) * thr * rng.uniform(0.5, 2.0, size=(n, 1, 6))).astype(dtype)
    x[::5] = x[::5, :1]  # constant windows
    x[1::5, :, :3] *= 1e-3  # one channel's noise decides
    x[2::5, :, 0] = offset[2::5, :, 0] + 1e-2 * rng.normal(size=(len(x[2::5]), W))
    ref = (x[:, :, :3].std(axis=1) < thr).all(axis=1)
    got = flat_windows(x, thr)
    assert np.array_equal(got, ref)
    assert 0 < got.sum() < n or W == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("W", [2, 250, 1000])
def test_flat_windows_at_the_bounds(W, dtype):
    """Windows whose std is exactly one of the bounds: two values a +- h (std = r / 2) and a pair of
    outliers a +- h among constants (std = r / sqrt(2 W)), the std from just under to just over the
    threshold, on offsets up to 16 g: the decisions are numpy's std's."""
    thr = PreprocessConfig().flat_std_g
    f = np.concatenate([np.linspace(0.95, 1.05, 41), 1 + np.array([-1e-6, -1e-7, 0.0, 1e-7, 1e-6])])
    offsets = np.array([0.0, 1.0, -8.0, 15.99])
    parts = []
    for a in offsets:
        two = np.full((len(f), W, 6), a)
        two[:, 0::2, :3] += (f * thr)[:, None, None]
        two[:, 1::2, :3] -= (f * thr)[:, None, None]
        if W % 2 == 0:
            parts.append(two)
        pair = np.full((len(f), W, 6), a)
        h = f * thr * np.sqrt(W / 2)
        pair[:, 0, :3] += h[:, None]
        pair[:, 1, :3] -= h[:, None]
        parts.append(pair)
    x = np.concatenate(parts).astype(dtype)
    ref = (x[:, :, :3].std(axis=1) < thr).all(axis=1)
    assert np.array_equal(flat_windows(x, thr), ref)
    assert 0 < ref.sum() < len(ref)


@pytest.mark.filterwarnings("ignore:Degrees of freedom")  # numpy's std of no samples, as before
def test_flat_windows_integers_and_empty_windows():
    x = np.zeros((3, 5, 6), dtype=np.int16)
    x[1, 2, 0] = 1
    assert flat_windows(x, 1e-4).tolist() == [True, False, True]
    assert flat_windows(np.zeros((2, 0, 6), np.float32), 1e-4).tolist() == [False, False]


def test_recording_windows_pipeline():
    cfg = PreprocessConfig()  # 50 Hz, 5 s windows, 2.5 s stride, median 5
    rate = 100.0
    t = np.concatenate([np.arange(0, 20, 1 / rate), np.arange(30, 33, 1 / rate)])  # 2nd part too short
    x = np.zeros((len(t), 6))
    x[:, 2] = 1.0 + 0.1 * np.sin(2 * np.pi * 1.0 * t)
    x[:, 3] = 0.5 * np.sin(2 * np.pi * 0.5 * t)
    rec = ImuRecording("r", t, x)
    xw, start, end, reasons = recording_windows(rec, cfg)
    assert xw.shape == (7, 250, 6)
    np.testing.assert_allclose(start, np.arange(7) * 2.5)
    assert (end <= 20.0).all()
    assert list(reasons) == [""] * 7
    assert xw[:, :, 2].mean() == pytest.approx(1.0, abs=1e-3)


# ------------------------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), rate=st.sampled_from([10.0, 25.0, 50.0, 100.0]),
       in_rate=st.sampled_from([7.0, 30.0, 50.0, 120.0, 400.0]), jitter=st.floats(0.0, 0.9),
       t0=st.floats(-1000.0, 1e6))
def test_resample_keeps_constants_and_lines(seed, rate, in_rate, jitter, t0):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    steps = (1.0 + jitter * rng.uniform(-1, 1, n - 1)) / in_rate
    t = t0 + np.concatenate([[0.0], np.cumsum(steps)])
    const = np.tile(np.array([0.3, -1.0, 9.0, 0.0, 2.5, -0.25]), (n, 1))
    seg = resample_segment(t, const, rate)
    k0 = grid_start(t[0], rate)
    assert seg.t0 == k0 / rate
    assert len(seg.data) == max(0, grid_stop(t[-1], rate) - k0 + 1)
    np.testing.assert_allclose(seg.data, np.broadcast_to(const[:1], seg.data.shape), rtol=1e-6, atol=1e-6)
    # Hermite interpolation reproduces straight lines exactly
    line = np.stack([2.0 * (t - t0) + 1.0] * 6, axis=1)
    seg = resample_segment(t, line, rate, antialias=False)
    tt = seg.t0 + np.arange(len(seg.data)) / rate
    np.testing.assert_allclose(seg.data[:, 0], 2.0 * (tt - t0) + 1.0, rtol=1e-5, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 300), window=st.integers(2, 60), stride=st.integers(1, 70))
def test_window_count_and_starts(n, window, stride):
    from crossmodal_har.signals.windows import window_starts

    starts = window_starts(n, window, stride)
    expected = (n - window) // stride + 1 if n >= window else 0
    assert len(starts) == expected
    if expected:
        assert starts[0] == 0 and starts[-1] + window <= n and np.all(np.diff(starts) == stride)


@pytest.mark.parametrize("k", [3, 5, 7, 9, 11])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_filter_equals_scipy_mirror_everywhere(k, dtype):
    """The signal layer's median (a sorting network on mirrored edges, scipy past kernel 9 or with
    non-finite values) gives scipy.ndimage's values exactly, edges and short inputs included."""
    from scipy.ndimage import median_filter as reference

    rng = np.random.default_rng(k)
    for n in (1, 2, k // 2, k // 2 + 1, k, k + 1, 2 * k + 3, 257):
        x = rng.normal(size=(n, 6)).astype(dtype)
        x[rng.random(x.shape) < 0.3] = 0.25  # ties
        got = median_filter(x, k)
        assert got.dtype == x.dtype
        assert np.array_equal(got, reference(x, size=(k, 1), mode="mirror")), (k, n)
    x[5, 2] = np.nan
    assert np.array_equal(median_filter(x, k), reference(x, size=(k, 1), mode="mirror"), equal_nan=True)
