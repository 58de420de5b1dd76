"""Streaming windower and smoother: chunking never changes the result; bad stretches are marked."""

import numpy as np
import pytest

from crossmodal_har.models.smoothing import StreamingSmoother, majority_smooth
from crossmodal_har.infer.stream import Marker, StreamingWindower, WindowBatch
from crossmodal_har.signals.types import ImuRecording, PreprocessConfig


def signal(t):
    x = np.stack([np.sin(2 * np.pi * f * t + k) for k, f in enumerate((0.5, 1.1, 2.3, 3.7, 9.0, 21.0))], 1)
    x[:, 2] += 1.0
    return x


def recording(rate=100.0, seconds=90.0, jitter=0.3, seed=0, t0=1000.0):
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = t0 + np.arange(n) / rate + rng.uniform(0, jitter / rate, n)
    return t, signal(t) + rng.normal(0, 0.05, (n, 6))


def run(t, x, cfg, sizes):
    w = StreamingWindower(cfg)
    items, i, k = [], 0, 0
    while i < len(t):
        c = sizes[k % len(sizes)]
        items += w.push(t[i:i + c], x[i:i + c])
        i += c
        k += 1
    items += w.finish()
    batches = [it for it in items if isinstance(it, WindowBatch)]
    x_all = np.concatenate([b.x for b in batches]) if batches else np.zeros((0, cfg.window_samples, 6))
    start = np.concatenate([b.start for b in batches]) if batches else np.zeros(0)
    reason = np.concatenate([b.reason for b in batches]) if batches else np.zeros(0, object)
    markers = [(m.start, m.end, m.status) for m in items if isinstance(m, Marker)]
    order = [(it.start[0] if isinstance(it, WindowBatch) else it.start) for it in items]
    return x_all, start, reason, markers, order


CHUNKINGS = ([10 ** 9], [7], [1, 333, 50, 4000], [249, 250, 251], [1])


@pytest.mark.parametrize("rate,jitter", [(100.0, 0.3), (50.0, 0.4), (30.0, 0.2)])
def test_chunking_gives_identical_windows(rate, jitter):
    """Downsampling (anti-alias), same rate with jitter (Hermite) and upsampling, with a gap, a
    run of NaN rows and a stretch shorter than one window: byte-identical for every chunking."""
    t, x = recording(rate=rate, seconds=80, jitter=jitter)
    n = len(t)
    keep = np.ones(n, bool)
    keep[int(0.30 * n):int(0.30 * n) + int(rate)] = False  # 1 s gap
    keep[int(0.60 * n):int(0.60 * n) + int(rate)] = False  # another; then a 3 s stretch, then a gap
    keep[int(0.60 * n) + int(4 * rate):int(0.60 * n) + int(5 * rate)] = False
    t, x = t[keep], x[keep].copy()
    x[int(0.45 * len(t)):int(0.45 * len(t)) + 5, 3] = np.nan
    cfg = PreprocessConfig(stride_s=1.3)
    ref = run(t, x, cfg, CHUNKINGS[0])
    assert len(ref[0]) > 20
    statuses = [m[2] for m in ref[3]]
    assert statuses.count("gap") == 3 and statuses.count("non_finite") == 1 and statuses.count("short") == 1
    for sizes in CHUNKINGS[1:]:
        got = run(t, x, cfg, sizes)
        assert np.array_equal(got[0], ref[0]), sizes
        assert np.array_equal(got[1], ref[1])
        assert list(got[2]) == list(ref[2])
        assert got[3] == ref[3]
    assert np.all(np.diff(ref[4]) >= 0), "items come out in time order"


def test_matches_one_shot_signal_layer():
    """On a clean recording the streamed windows equal the signal layer's one-shot windows."""
    from crossmodal_har.signals.windows import recording_windows

    t, x = recording(rate=100.0, seconds=60)
    cfg = PreprocessConfig()
    xs, start, reason, markers, _ = run(t, x, cfg, [501])
    xr, sr, er, rr = recording_windows(ImuRecording("r", t, x), cfg)
    assert xs.shape == xr.shape and markers == []
    np.testing.assert_allclose(xs, xr, atol=1e-5)
    np.testing.assert_allclose(start, sr, atol=1e-9)


def test_no_window_spans_a_gap_and_markers_cover_it():
    t, x = recording(rate=50.0, seconds=40, jitter=0.0, t0=0.0)
    gap = (t > 20.0) & (t < 21.0)
    t, x = t[~gap], x[~gap]
    cfg = PreprocessConfig(window_s=2.0, stride_s=0.5)
    xs, start, reason, markers, _ = run(t, x, cfg, [123])
    end = start + cfg.window_s
    assert markers == [(pytest.approx(20.0), pytest.approx(21.0), "gap")]
    assert not np.any((start < 21.0) & (end > 20.0))
    # windows of the second segment start on its first grid sample
    assert np.min(start[start >= 21.0]) == pytest.approx(21.0)


def test_quality_failures_are_reported_not_dropped():
    t, x = recording(rate=50.0, seconds=30, jitter=0.0, t0=0.0)
    x[(t >= 10) & (t < 20), :] = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # dead sensor: flat line
    cfg = PreprocessConfig(window_s=2.0, stride_s=1.0, median_kernel=0)
    xs, start, reason, markers, _ = run(t, x, cfg, [100])
    flat = start[reason == "flat_line"]
    assert len(flat) >= 7 and flat.min() >= 10.0 - 1e-9 and flat.max() + 2.0 <= 20.0 + 1e-9
    assert set(reason) == {"", "flat_line"}


def test_leading_and_trailing_bad_rows():
    t, x = recording(rate=50.0, seconds=20, jitter=0.0, t0=0.0)
    x[:10] = np.nan
    x[-10:] = np.nan
    cfg = PreprocessConfig(window_s=2.0, stride_s=1.0)
    xs, start, reason, markers, _ = run(t, x, cfg, [64])
    assert markers[0][2] == "non_finite" and markers[0][0] == pytest.approx(0.0)
    assert markers[-1][2] == "non_finite" and markers[-1][1] == pytest.approx(t[-1])
    assert start.min() >= t[10] - 1e-9


def brute_smooth(lab, ok, n, C):
    h, N, out = n // 2, len(lab), np.full(len(lab), -1)
    for i in range(N):
        if not ok[i]:
            continue
        a, b = i, i
        while a - 1 >= 0 and ok[a - 1]:
            a -= 1
        while b + 1 < N and ok[b + 1]:
            b += 1
        cnt = np.bincount(lab[max(i - h, a):min(i + h, b) + 1], minlength=C)
        out[i] = lab[i] if cnt[lab[i]] == cnt.max() else int(np.argmax(cnt))
    return out


def test_smoother_streaming_equals_reference_and_respects_runs():
    rng = np.random.default_rng(1)
    for _ in range(200):
        N, C, n = int(rng.integers(1, 60)), int(rng.integers(2, 5)), int(rng.integers(1, 8))
        lab, ok = rng.integers(0, C, N), rng.random(N) > 0.2
        ref = brute_smooth(lab, ok, n, C)
        sm, outs, i = StreamingSmoother(n, C), [], 0
        while i < N:
            k = int(rng.integers(1, 9))
            outs.append(sm.push(lab[i:i + k], ok[i:i + k]))
            i += k
        outs.append(sm.finish())
        assert np.array_equal(np.concatenate(outs), ref)
    # an isolated flip is removed, but nothing crosses a bad window
    lab = np.array([0, 0, 1, 0, 0, 1, 1, 1])
    ok = np.array([1, 1, 1, 1, 0, 1, 1, 1], bool)
    assert majority_smooth(lab, ok, 3, 2).tolist() == [0, 0, 0, 0, -1, 1, 1, 1]


@pytest.mark.parametrize("k", [3, 5, 7, 9])
def test_sorting_network_median_equals_signal_layer_interior(k):
    from scipy.ndimage import median_filter as reference

    from crossmodal_har.infer.stream import sorting_network_median

    rng = np.random.default_rng(k)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = 0.25  # ties
    h = k // 2
    assert np.array_equal(sorting_network_median(x, k), reference(x, size=(k, 1), mode="mirror")[h:len(x) - h])
    # long inputs go in blocks (the temporaries stay in cache): the same values, across block borders
    from crossmodal_har.signals import windows

    long = np.round(rng.normal(size=(3 * windows.MEDIAN_BLOCK + 17, 6)), 1).astype(np.float32)  # ties
    assert np.array_equal(sorting_network_median(long, k), reference(long, size=(k, 1), mode="mirror")[h:len(long) - h])


def test_finite_rows_is_the_row_mask_and_quiet():
    import warnings

    from crossmodal_har.signals.windows import finite_rows

    rng = np.random.default_rng(0)
    t, x = np.arange(500.0), rng.normal(size=(500, 6))
    assert finite_rows(t, x) is None
    cases = {"inf - inf": (3, 1, np.inf, 9, 2, -np.inf), "nan": (7, 5, np.nan, 7, 5, np.nan),
             "overflowing finite values": (1, 0, 1e308, 2, 0, 1e308)}
    for name, (r1, c1, v1, r2, c2, v2) in cases.items():
        y, tt = x.copy(), t.copy()
        y[r1, c1], y[r2, c2] = v1, v2
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy's "invalid value" / "overflow" would be printed to the user
            got = finite_rows(tt, y)
        want = np.isfinite(tt) & np.isfinite(y).all(axis=1)
        assert (got is None and want.all()) or np.array_equal(got, want), name
    tt = t.copy()
    tt[4] = np.nan
    assert np.array_equal(finite_rows(tt, x), np.isfinite(tt))
