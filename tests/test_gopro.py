"""GoPro MP4s with embedded IMU: the two real samples, error cases, and ``gopro-extract``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError
from crossmodal_har.pairs import gpmf
from crossmodal_har.pairs.gopro import source as gopro_source
from crossmodal_har.pairs.gopro import telemetry as gopro_telemetry

GOPRO_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gopro"
SAMPLES = ("karma.mp4", "max-heromode.mp4")
needs_samples = pytest.mark.skipif(
    not all((GOPRO_DIR / f).is_file() for f in SAMPLES),
    reason=f"real GoPro samples not found at <repo>/../shared/data/gopro ({GOPRO_DIR})",
)


@pytest.fixture(scope="module")
def telemetry():
    return {f: gopro_telemetry.read_telemetry(GOPRO_DIR / f) for f in SAMPLES}


@pytest.fixture(scope="module")
def recordings(telemetry):
    return {f: gopro_source.load_gopro_imu(GOPRO_DIR / f, telemetry=t) for f, t in telemetry.items()}


# Nominal rates per camera (Hz), from GoPro's documentation: HERO5 ACCL 200 / GYRO 400, MAX 200 / 200.
NOMINAL = {"karma.mp4": {"ACCL": 200.0, "GYRO": 400.0}, "max-heromode.mp4": {"ACCL": 200.0, "GYRO": 200.0}}


@needs_samples
@pytest.mark.parametrize("name", SAMPLES)
def test_sample_counts_and_rates_match_the_file(telemetry, name):
    tele = telemetry[name]
    dur = tele.media.video_duration_s
    for key in ("ACCL", "GYRO"):
        s = tele.streams[key]
        assert s.declared_total == len(s.t), f"{key}: read {len(s.t)} samples, TSMP declares {s.declared_total}"
        assert s.payloads == tele.media.declared_payloads
        # measured rate agrees with the declared count over the video's duration, and with the
        # camera's nominal rate (real clocks are within a few %)
        assert s.rate_hz == pytest.approx(s.declared_total / dur, rel=0.01)
        assert s.rate_hz == pytest.approx(NOMINAL[name][key], rel=0.03)
        assert np.all(np.diff(s.t) > 0)


@needs_samples
def test_camera_identification(telemetry):
    karma, mx = telemetry["karma.mp4"], telemetry["max-heromode.mp4"]
    assert karma.camera == "HERO5 Black" and karma.streams["ACCL"].axis_order == "ZXY"
    assert karma.streams["ACCL"].timing == "payload"  # HERO5 has no STMP
    assert mx.camera == "MAX" and mx.streams["ACCL"].axis_order == "XzY"  # from the ORIN tag
    assert mx.streams["ACCL"].timing == "stmp"


@needs_samples
@pytest.mark.parametrize("name", SAMPLES)
def test_gravity_is_one_g_on_plus_z(recordings, name):
    rec = recordings[name]
    acc = rec.data[:, :3]
    assert np.linalg.norm(acc, axis=1).mean() == pytest.approx(1.0, rel=0.10)
    mean = acc.mean(axis=0)
    # both cameras were upright: gravity reads on the camera's +Z (out of its top)
    assert mean[2] > 0.9 and abs(mean[0]) < 0.2 and abs(mean[1]) < 0.2
    # gyro in rad/s: a still-ish camera turns at well under 1 rad/s on average
    assert np.abs(rec.data[:, 3:]).mean() < 1.0


@needs_samples
@pytest.mark.parametrize("name", SAMPLES)
def test_imu_spans_the_video(recordings, telemetry, name):
    rec, media = recordings[name], telemetry[name].media
    span = rec.t[-1] - rec.t[0]
    assert span == pytest.approx(media.video_duration_s, abs=0.1)
    assert abs(rec.t[0]) < 0.1 and abs(rec.t[-1] - media.video_duration_s) < 0.1
    assert rec.t.dtype == np.float64 and rec.data.shape == (len(rec.t), 6)


@needs_samples
def test_stmp_and_payload_timing_agree_on_max(telemetry):
    with_stmp = telemetry["max-heromode.mp4"].streams["ACCL"]
    without = gopro_telemetry.read_telemetry(GOPRO_DIR / "max-heromode.mp4", use_stmp=False).streams["ACCL"]
    assert without.timing == "payload"
    assert np.abs(with_stmp.t - without.t).max() < 0.01


@needs_samples
def test_max_orin_and_mtrx_give_the_same_axes():
    payloads, _ = gopro_telemetry.read_payloads(GOPRO_DIR / "max-heromode.mp4")
    block = next(gpmf.iter_samples(gpmf.parse(payloads[0].data), keys=["ACCL"]))
    assert "ORIN" in block.props and "MTRX" in block.props
    via_orin = gopro_telemetry.axis_plan(block, "MAX")[1](block.values())
    no_orin = gpmf.SensorBlock(block.key, block.item, block.device_id, block.device_name,
                               {k: v for k, v in block.props.items() if k != "ORIN"})
    desc, fn = gopro_telemetry.axis_plan(no_orin, "MAX")
    assert desc.startswith("MTRX")
    np.testing.assert_allclose(fn(no_orin.values()), via_orin)


def _gravity_tracking_error(t: np.ndarray, acc: np.ndarray, gyro: np.ndarray) -> float:
    """Mean angle (deg) between the low-passed accelerometer direction and the initial gravity
    direction carried along by integrating the gyro."""
    from scipy.ndimage import uniform_filter1d
    from scipy.spatial.transform import Rotation

    fs = 1.0 / np.median(np.diff(t))
    a = uniform_filter1d(acc, int(fs * 0.5), axis=0)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    steps = Rotation.from_rotvec(gyro[:-1] * np.diff(t)[:, None]).as_matrix()
    r = np.eye(3)
    g_world = a[0]  # body frame == world frame at t0
    err = [0.0]
    for k in range(len(steps)):
        r = r @ steps[k]  # body-to-world
        g_body = r.T @ g_world
        err.append(np.degrees(np.arccos(np.clip(g_body @ a[k + 1], -1, 1))))
    return float(np.mean(err))


@needs_samples
@pytest.mark.parametrize("name", SAMPLES)
def test_gyro_axes_agree_with_accelerometer_axes(recordings, name):
    # Integrating the gyro should follow the accelerometer's gravity direction better than no
    # rotation at all, or a gyro with its axes negated or X/Y swapped (wrong axis maps).
    rec = recordings[name]
    t, acc, gyr = rec.t, rec.data[:, :3], rec.data[:, 3:]
    right = _gravity_tracking_error(t, acc, gyr)
    for wrong in (np.zeros_like(gyr), -gyr, gyr[:, [1, 0, 2]]):
        assert right < 0.85 * _gravity_tracking_error(t, acc, wrong)


# ------------------------------------------------------------------------------ bad files


def _plain_mp4(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 40, np.uint8), format="rgb24")
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def test_non_gopro_mp4_is_a_clear_data_error(tmp_path):
    path = _plain_mp4(tmp_path / "phone.mp4")
    with pytest.raises(DataError, match="no GoPro telemetry track") as exc:
        gopro_source.load_gopro_imu(path)
    assert exc.value.path == str(path)
    notes = tmp_path / "notes.mp4"
    notes.write_text("hello")
    with pytest.raises(DataError, match="not a readable MP4"):
        gopro_telemetry.read_payloads(notes)


@needs_samples
def test_truncated_files(tmp_path):
    data = (GOPRO_DIR / "karma.mp4").read_bytes()
    # GoPro writes the index (moov) last: a cut file has no index at all
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable MP4"):
        gopro_source.load_gopro_imu(cut)
    # index first (as after a "faststart" remux), data cut: telemetry payloads missing
    import av

    fast = tmp_path / "fast.mp4"
    faststart = {"movflags": "faststart"}
    with av.open(str(GOPRO_DIR / "karma.mp4")) as inp, av.open(str(fast), "w", options=faststart) as out:
        vin = inp.streams.video[0]
        met = next(s for s in inp.streams if "GoPro MET" in s.metadata.get("handler_name", ""))
        vout, mout = out.add_stream_from_template(vin), out.add_stream_from_template(met)
        for pkt in inp.demux(vin, met):
            if pkt.dts is None:
                continue
            pkt.stream = vout if pkt.stream is vin else mout
            out.mux(pkt)
    assert len(gopro_source.load_gopro_imu(fast).t) > 4000  # the remux itself is fine
    raw = fast.read_bytes()
    cut2 = tmp_path / "cut2.mp4"
    cut2.write_bytes(raw[: int(len(raw) * 0.7)])
    with pytest.raises(DataError, match=r"telemetry track truncated: \d+ of 13 payloads"):
        gopro_source.load_gopro_imu(cut2)


@needs_samples
def test_sessions_over_a_folder(tmp_path):
    pytest.importorskip("crossmodal_har.pairs.sources")
    (tmp_path / "alice").mkdir()
    shutil.copy(GOPRO_DIR / "karma.mp4", tmp_path / "alice" / "GOPR0001.MP4")
    (tmp_path / "max.mp4").symlink_to(GOPRO_DIR / "max-heromode.mp4")
    _plain_mp4(tmp_path / "alice" / "phone.mp4")
    (tmp_path / "labels.csv").write_text("session,start,end,label\nmax,0,5,walk\n")
    specs = {s.name: s for s in gopro_source.iter_gopro_sessions(tmp_path)}
    assert sorted(specs) == ["alice__GOPR0001", "alice__phone", "max"]
    assert specs["alice__GOPR0001"].subject == "alice" and specs["max"].subject == "max"
    assert specs["max"].labels == [(0.0, 5.0, "walk")]
    rec = specs["max"].load_imu()
    assert rec.name == "max" and len(rec.t) == 2082
    assert specs["max"].meta["camera"] == "MAX"
    assert specs["max"].meta["gopro"]["streams"]["ACCL"]["samples"] == 2082
    with pytest.raises(DataError, match="no GoPro telemetry"):
        specs["alice__phone"].load_imu()
    # same stem, suffixes differing in case: both kept, told apart by suffix
    if not (tmp_path / "max.MP4").exists():  # case-sensitive file system
        (tmp_path / "max.MP4").symlink_to(GOPRO_DIR / "max-heromode.mp4")
        names = [s.name for s in gopro_source.iter_gopro_sessions(tmp_path)]
        assert names == sorted(names) and {"max__mp4", "max__MP4"} <= set(names)
    from crossmodal_har.errors import UserError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no .mp4"):
        list(gopro_source.iter_gopro_sessions(empty))
    with pytest.raises(UserError, match="no such directory"):
        list(gopro_source.iter_gopro_sessions(tmp_path / "nope"))


# ------------------------------------------------------------------------------ the command


@needs_samples
def test_gopro_extract_writes_a_paired_session(tmp_path, recordings):
    from crossmodal_har.pairs.gopro.extract import extract_session

    out = tmp_path / "sessions" / "karma"
    extract_session(GOPRO_DIR / "karma.mp4", out)
    video = out / "video.mp4"
    assert video.is_symlink() and video.resolve() == (GOPRO_DIR / "karma.mp4").resolve()
    lines = (out / "imu.csv").read_text().splitlines()
    assert lines[0] == "time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"
    table = np.loadtxt(out / "imu.csv", delimiter=",", skiprows=1)
    rec = recordings["karma.mp4"]
    np.testing.assert_allclose(table[:, 0], rec.t, atol=1e-6)
    np.testing.assert_allclose(table[:, 1:], rec.data, rtol=1e-5, atol=1e-6)
    sj = json.loads((out / "session.json").read_text())
    assert sj["imu_offset_s"] == 0.0 and sj["time_unit"] == "s"
    assert (sj["acc_unit"], sj["gyro_unit"]) == ("g", "rad/s")
    assert sj["camera"] == "HERO5 Black" and sj["subject"] == "karma"
    # the command again without --force: refused; with --copy --force and m/s^2: a real file, acc scaled
    assert main(["gopro-extract", str(GOPRO_DIR / "karma.mp4"), "--out", str(out)]) == 2
    assert main(["gopro-extract", str(GOPRO_DIR / "karma.mp4"), "--out", str(out), "--copy", "--force",
                 "--acc-unit", "m/s^2", "--subject", "pilot"]) == 0
    assert not video.is_symlink() and video.stat().st_size == (GOPRO_DIR / "karma.mp4").stat().st_size
    sj = json.loads((out / "session.json").read_text())
    assert sj["acc_unit"] == "m/s^2" and sj["subject"] == "pilot"
    table2 = np.loadtxt(out / "imu.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(table2[:, 1:4], table[:, 1:4] * 9.80665, rtol=1e-5, atol=1e-5)
    # the paired layout reads it back as the same recording
    sources = pytest.importorskip("crossmodal_har.pairs.sources")
    (spec,) = list(sources.iter_sessions("paired", tmp_path / "sessions"))
    back = spec.load_imu()
    np.testing.assert_allclose(back.data, rec.data, rtol=1e-5, atol=1e-5)
    assert spec.subject == "pilot"


def test_gopro_extract_bad_input_exits_2(tmp_path, capsys):
    path = _plain_mp4(tmp_path / "phone.mp4")
    assert main(["gopro-extract", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no GoPro telemetry track" in err[0] and "phone.mp4" in err[0]
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------- IMU and video in sync


def _best_lag(t_sig: np.ndarray, sig: np.ndarray, t_imu: np.ndarray, imu: np.ndarray,
              max_lag_s: float = 0.5, step_s: float = 0.01):
    """Lag L (s) maximising |corr(imu(t + L), sig(t))|, and that correlation."""
    lags = np.arange(-max_lag_s, max_lag_s + step_s / 2, step_s)
    cs = np.array([np.corrcoef(np.interp(t_sig + lag, t_imu, imu), sig)[0, 1] for lag in lags])
    i = int(np.argmax(np.abs(cs)))
    return float(lags[i]), float(cs[i])


@needs_samples
def test_max_gyro_matches_the_cameras_frame_locked_orientation(recordings):
    # CORI: the camera's orientation quaternion for every video frame (w, x, y, z). Its rate of
    # turn, placed at frame index / fps, must line up with our gyro timeline.
    from scipy.spatial.transform import Rotation

    payloads, media = gopro_telemetry.read_payloads(GOPRO_DIR / "max-heromode.mp4")
    q = np.concatenate([b.values() for p in payloads
                        for b in gpmf.iter_samples(gpmf.parse(p.data), keys=["CORI"])])
    assert len(q) >= media.video_frames
    rot = Rotation.from_quat(q[:, [1, 2, 3, 0]])
    w_frames = np.linalg.norm((rot[:-1].inv() * rot[1:]).as_rotvec(), axis=1) * media.video_fps
    t_frames = (np.arange(len(q) - 1) + 0.5) / media.video_fps
    rec = recordings["max-heromode.mp4"]
    lag, corr = _best_lag(t_frames, w_frames, rec.t, np.linalg.norm(rec.data[:, 3:], axis=1))
    assert corr > 0.9 and abs(lag) <= 0.03, (lag, corr)


@needs_samples
def test_karma_gyro_yaw_matches_image_motion(recordings):
    # Horizontal image motion between consecutive frames (phase correlation) follows the rate of
    # turn about the camera's Z (up) axis, with no lag beyond a frame or two.
    import av

    frames, times = [], []
    with av.open(str(GOPRO_DIR / "karma.mp4")) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for f in c.decode(stream):
            frames.append(f.to_ndarray(width=128, height=72, format="gray").astype(np.float64))
            times.append(f.time)
    win = np.outer(np.hanning(72), np.hanning(128))
    spec = [np.fft.fft2((f - f.mean()) * win) for f in frames]
    dx = []
    for a, b in zip(spec[1:], spec[:-1]):
        r = a * np.conj(b)
        corr = np.fft.ifft2(r / (np.abs(r) + 1e-9)).real
        ix = int(np.unravel_index(np.argmax(corr), corr.shape)[1])
        dx.append(ix - 128 if ix > 64 else ix)
    t_mid = (np.array(times[1:]) + np.array(times[:-1])) / 2
    rec = recordings["karma.mp4"]
    lag, corr = _best_lag(t_mid, np.array(dx, float), rec.t, rec.data[:, 5])
    assert corr > 0.8 and abs(lag) <= 0.07, (lag, corr)


# ------------------------------------------------------------------- ingestion (issue 3)


@needs_samples
@pytest.mark.slow
def test_ingest_gopro_layout_pairs_frames_with_imu(tmp_path, recordings):
    pytest.importorskip("crossmodal_har.pairs.ingest")
    from crossmodal_har.pairs.store import WindowStore
    from crossmodal_har.signals.windows import recording_windows

    src = tmp_path / "src"
    src.mkdir()
    for f in SAMPLES:
        (src / f).symlink_to(GOPRO_DIR / f)
    # two bad files: each a clear per-file error in the report, the others ingested (exit 3)
    _plain_mp4(src / "phone.mp4")
    data = (GOPRO_DIR / "karma.mp4").read_bytes()
    (src / "cut.mp4").write_bytes(data[: len(data) // 2])
    store_dir = tmp_path / "store"
    assert main(["ingest", "--layout", "gopro", "--src", str(src), "--out", str(store_dir), "--no-progress"]) == 3
    report = json.loads((store_dir / "report.json").read_text())
    assert report["sessions_ok"] == 2 and report["partial"]
    errors = {e["session"]: e["error"] for e in report["errors"]}
    assert set(errors) == {"phone", "cut"}
    assert "no GoPro telemetry track" in errors["phone"] and "cut.mp4: not a readable MP4" in errors["cut"]
    store = WindowStore(store_dir)
    man = store.manifest
    ftimes = np.asarray(store.frame_times[:])
    pre = store.preprocess
    k = ftimes.shape[1]
    for f in SAMPLES:
        sess = f[:-4]
        rows = np.flatnonzero(man["session"].to_numpy() == sess)
        assert len(rows) >= 2, f"{sess}: only {len(rows)} windows"
        rec = recordings[f]
        x, start, end, reasons = recording_windows(rec, pre)
        fps = 30000 / 1001
        for i in rows:
            s0, s1 = float(man["start_s"].iloc[i]), float(man["end_s"].iloc[i])
            assert s1 - s0 == pytest.approx(5.0)
            # the first frame is the one at the centre of the window's first slot: same interval
            assert abs(ftimes[i, 0] - (s0 + 0.5 * 5.0 / k)) <= 0.5 / fps + 1e-6
            assert s0 <= ftimes[i, 0] and ftimes[i, -1] <= s1
            # the IMU stored for that window starts at s0 on the video clock: it is the signal
            # layer's window of the GoPro recording that starts there
            j = int(np.argmin(np.abs(start - s0)))
            assert start[j] == pytest.approx(s0, abs=1e-6) and reasons[j] == ""
            np.testing.assert_allclose(np.asarray(store.imu[i]), x[j], rtol=1e-5, atol=1e-6)
            assert rec.t[0] <= s0 + 1.0 / pre.rate_hz
