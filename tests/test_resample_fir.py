"""Polyphase FIR resampling: the exact kernel's weights on regular input, the same bits whole or
streamed, within a stated bound of the exact convolution, and the exact path kept where irregular."""

from pathlib import Path

import numpy as np
import pytest

from crossmodal_har.infer import stream
from crossmodal_har.infer.stream import StreamingWindower, WindowBatch
from crossmodal_har.signals import polyphase
from crossmodal_har.signals.resample import fir_table, grid_start, lowpass_eval, nominal_step
from crossmodal_har.signals.types import ImuRecording, PreprocessConfig
from crossmodal_har.signals.windows import recording_windows

FREQS = np.array([0.4, 1.3, 2.9, 5.3, 8.7, 14.0])


def wave(t):
    x = np.sin(2 * np.pi * FREQS * (t[:, None] - t[0]) + np.arange(6))
    x[:, 2] += 1.0
    return x


def regular(seconds, rate=100.0, t0=1_780_000_000.0):
    return t0 + np.arange(int(seconds * rate)) / rate


def drifting(seconds, rate=100.0, ppm=230.0, t0=1_780_000_123.4567):
    """.cwa-like times: a sector timestamp every 40 samples from a clock off by ``ppm``, with a
    15-bit fraction (steps of 1/32768 s), samples interpolated linearly between sectors."""
    n = int(seconds * rate) // 40 * 40
    anchors = t0 + np.arange(n // 40 + 1) * 40 / (rate * (1 + ppm * 1e-6))
    anchors = np.floor(anchors * 32768) / 32768
    frac = np.arange(40) / 40
    return (anchors[:-1, None] + (anchors[1:] - anchors[:-1])[:, None] * frac[None, :]).ravel()


def gappy(seconds, rate=100.0, seed=3):
    """Regular stretches with gaps, a tolerated short gap and a badly jittered stretch."""
    rng = np.random.default_rng(seed)
    t = regular(seconds, rate)
    n = len(t)
    keep = np.ones(n, bool)
    keep[n // 5: n // 5 + 300] = False  # 3 s gap
    keep[n // 2: n // 2 + 7] = False  # 70 ms: tolerated, within one segment
    t = t.copy()
    j0, j1 = int(0.7 * n), int(0.7 * n) + 1500
    t[j0:j1] += rng.uniform(-0.3, 0.3, j1 - j0) / rate  # irregular for 15 s
    return t[keep]


def streamed(t, x, cfg, size):
    w = StreamingWindower(cfg)
    items = []
    for a in range(0, len(t), size):
        items += w.push(t[a:a + size], x[a:a + size])
    items += w.finish()
    b = [it for it in items if isinstance(it, WindowBatch)]
    return np.concatenate([i.x for i in b]), np.concatenate([i.start for i in b])


@pytest.mark.parametrize("kind", ["regular", "drifting", "gappy"])
def test_whole_equals_streaming_to_the_bit(kind):
    t = {"regular": regular, "drifting": drifting, "gappy": gappy}[kind](400.0)
    x = wave(t) + np.random.default_rng(0).normal(0, 0.05, (len(t), 6))
    cfg = PreprocessConfig()
    whole, start, _, _ = recording_windows(ImuRecording("r", t, x), cfg)
    assert len(whole) > 100
    for size in (10 ** 9, 4999, 777, 30011):
        xs, ss = streamed(t, x, cfg, size)
        assert xs.dtype == whole.dtype and xs.shape == whole.shape, size
        assert np.array_equal(xs, whole), (kind, size, np.abs(xs - whole).max())
        assert np.array_equal(ss, start)


@pytest.mark.parametrize("rate", [90.0, 64.0, 128.0, 85.7])
@pytest.mark.parametrize("kind", ["regular", "drifting"])
def test_rates_not_a_whole_multiple_take_the_fir_whole_equals_streaming(kind, rate):
    """ActiGraph 90 Hz, Empatica 64 Hz, APDM 128 Hz, GENEActiv 85.7 Hz to 50 Hz: the bases do not
    follow the grid with a whole step, so each output's taps are gathered; still the FIR path
    (not the exact one), within the phase bound's reach of the exact convolution, and the same bits
    whole or streamed."""
    t = regular(300.0, rate) if kind == "regular" else drifting(300.0, rate, ppm=-180.0)
    x = wave(t) + np.random.default_rng(1).normal(0, 0.05, (len(t), 6))
    grid = np.arange(grid_start(t[0], 50.0) + 20, int(t[-1] * 50.0) - 20) / 50.0
    step = nominal_step(t)
    out = np.empty((len(grid), 6))
    assert polyphase.fir_eval(t, x, grid, 50.0, step, fir_table(step, 50.0), out).all()
    exact = lowpass_eval(t, x, grid, 50.0, step_s=0.0)
    assert np.abs(out - exact).max() < 2e-3
    cfg = PreprocessConfig()
    whole, start, _, _ = recording_windows(ImuRecording("r", t, x), cfg)
    assert len(whole) > 100
    for size in (10 ** 9, 4999, 30011):
        xs, ss = streamed(t, x, cfg, size)
        assert np.array_equal(xs, whole), (kind, rate, size, np.abs(xs - whole).max())
        assert np.array_equal(ss, start)


@pytest.mark.parametrize("kind", ["regular", "drifting"])
def test_regular_and_drifting_clocks_take_the_fir(kind):
    t = regular(120.0) if kind == "regular" else drifting(120.0)
    x = wave(t)
    grid = np.arange(grid_start(t[0], 50.0) + 20, int(t[-1] * 50.0) - 20) / 50.0
    step = nominal_step(t)
    out = np.empty((len(grid), 6))
    done = polyphase.fir_eval(t, x, grid, 50.0, step, fir_table(step, 50.0), out)
    assert done.all()
    exact = lowpass_eval(t, x, grid, 50.0, step_s=0.0)
    # drift and wiggle: the FIR takes the samples as regular, the exact path at their times
    assert np.abs(out - exact).max() < 2e-3


def test_irregular_stretch_keeps_the_exact_path():
    t = gappy(200.0)
    x = wave(t)
    seg = t[t > t[0] + 100]  # the second segment, with the tolerated gap and the jittered stretch
    xs = x[t > t[0] + 100]
    grid = np.arange(grid_start(seg[0], 50.0), int(seg[-1] * 50.0)) / 50.0
    fir = lowpass_eval(seg, xs, grid, 50.0)
    exact = lowpass_eval(seg, xs, grid, 50.0, step_s=0.0)
    out = np.empty((len(grid), 6))
    step = nominal_step(seg)
    done = polyphase.fir_eval(seg, xs, grid, 50.0, step, fir_table(step, 50.0), out)
    assert 0.5 < done.mean() < 0.95  # edges, the short gap and the jittered stretch are exact
    np.testing.assert_array_equal(fir[~done], exact[~done])
    assert not np.array_equal(fir[done], exact[done])  # the FIR did run


@pytest.mark.parametrize("rate_in,rate_out", [(100.0, 50.0), (64.0, 50.0), (100.0, 30.0), (256.0, 50.0),
                                              (200.0, 20.0)])
def test_fir_equals_exact_within_the_phase_bound(rate_in, rate_out):
    """On exact times the FIR differs from the exact convolution only by the phase quantisation:
    at most max|x'| * step / (2 * PHASES), plus rounding."""
    t = 12.345 + np.arange(int(300 * rate_in)) / rate_in
    x = wave(t)
    grid = np.arange(grid_start(t[0], rate_out) + 30, int(t[-1] * rate_out) - 30) / rate_out
    fir = lowpass_eval(t, x, grid, rate_out)
    exact = lowpass_eval(t, x, grid, rate_out, step_s=0.0)
    bound = 2 * np.pi * FREQS / rate_in / (2 * polyphase.PHASES) + 1e-9
    assert np.all(np.abs(fir - exact).max(axis=0) <= bound), (np.abs(fir - exact).max(axis=0), bound)


def test_fir_table_rows_and_stream_block():
    w = fir_table(0.01, 50.0)
    assert w.shape == (polyphase.PHASES, 52) and not w.flags.writeable
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert fir_table(0.01, 50.0) is w  # cached per rate pair
    assert stream.BLOCK % polyphase.CHUNK == 0  # the stream's blocks cut the FIR's chunks nowhere


@pytest.mark.parametrize("ppm", [-800.0, 3000.0, 9000.0])
@pytest.mark.parametrize("t0", [5.0025, 77.77])
def test_fast_clocks_and_phases_whole_equals_streaming(ppm, t0):
    """Clocks up to 0.9 % off and start phases where outputs cross samples inside a chunk (the FIR's
    rows leave the chunk's whole-step line, near the data's edges too): still the same bits."""
    t = drifting(300.0, ppm=ppm, t0=t0)
    x = wave(t)
    whole = recording_windows(ImuRecording("r", t, x), PreprocessConfig())[0]
    for size in (10 ** 9, 1013):
        assert np.array_equal(streamed(t, x, PreprocessConfig(), size)[0], whole), size


DEVICES = Path(__file__).resolve().parents[2] / "shared" / "data" / "devices"


@pytest.mark.skipif(not DEVICES.is_dir(), reason=f"real device files not found at {DEVICES}")
@pytest.mark.parametrize("name", ["openmovement_example-610-steps.cwa", "ggirread_ax6_testfile.cwa"])
def test_real_cwa_files_fir_close_to_exact(name):
    """Real AX3/AX6 files (timestamps as the devices wrote them; the AX3's local rate wanders by
    1.5 %, where the exact path is kept): the FIR takes most outputs and stays within 1e-3 g/rad/s
    of the exact convolution, while the signal changes by up to ~700 g/s in a step's impact."""
    from crossmodal_har.signals.recording import iter_chunks
    from crossmodal_har.signals.units import Units

    chunks = list(iter_chunks(next(DEVICES.rglob(name)), Units(), 500_000))
    t = np.concatenate([c.t for c in chunks])
    x = np.concatenate([c.data for c in chunks])
    x = x[:, :3] if np.isnan(x[:, 3:]).all() else x
    grid = np.arange(grid_start(t[0], 50.0) + 20, int(t[-1] * 50.0) - 20) / 50.0
    step = nominal_step(t)
    out = np.empty((len(grid), x.shape[1]))
    done = polyphase.fir_eval(t, x, grid, 50.0, step, fir_table(step, 50.0), out)
    exact = lowpass_eval(t, x, grid, 50.0, step_s=0.0)
    assert done.mean() > 0.3  # measured: 38 % (AX3, wandering rate), 99 % (AX6)
    assert np.abs(out[done] - exact[done]).max() < 1e-3


@pytest.mark.parametrize("kind", ["drifting", "gappy"])
@pytest.mark.parametrize("zero", [[3, 4, 5], [1], [0, 2, 5]])
def test_channels_of_zeros_are_not_summed_and_give_the_same_bits(kind, zero):
    # an accelerometer-only model's gyroscope columns are 0.0 (or any channel that is 0.0 throughout):
    # skipped, and the live channels' bits are those of a run where every channel is summed
    t = drifting(300.0) if kind == "drifting" else gappy(300.0)
    x = wave(t)
    live = [c for c in range(6) if c not in zero]
    some_zero = x.copy()
    some_zero[:, zero] = 0.0
    grid = np.arange(grid_start(t[0], 50.0), int(t[-1] * 50.0)) / 50.0
    step = nominal_step(t)
    out_z, out_x = np.full((len(grid), 6), np.nan), np.full((len(grid), 6), np.nan)
    done_z = polyphase.fir_eval(t, some_zero, grid, 50.0, step, fir_table(step, 50.0), out_z)
    done_x = polyphase.fir_eval(t, x, grid, 50.0, step, fir_table(step, 50.0), out_x)
    assert np.array_equal(done_z, done_x) and 0.5 < done_z.mean()
    assert kind == "drifting" or done_z.mean() < 1.0  # gappy: part of each chunk is the exact path's
    assert np.array_equal(out_z[done_z][:, live], out_x[done_x][:, live])
    assert (out_z[done_z][:, zero] == 0.0).all()
    assert np.isnan(out_z[~done_z]).all()  # the exact path's outputs are left alone
    # and the whole resampler (FIR where regular, exact elsewhere) agrees on the live channels
    np.testing.assert_array_equal(lowpass_eval(t, some_zero, grid, 50.0)[:, live],
                                  lowpass_eval(t, x, grid, 50.0)[:, live])
