"""Small paired test data written on the fly (a short MP4 via PyAV + imu.csv), used by the ingest,
store and video tests and by tests/data/make_bad_sessions.py.

Each frame encodes its own index in binary as BITS horizontal black/white bands (top band = bit 0),
so a test can tell from a stored (resized, cropped) frame which decoded frame it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

BITS = 10  # up to 1024 frames per video


def write_video(path: Path, n_frames: int, fps: int = 10, size=(48, 32), *, times: Optional[Sequence[float]] = None,
                codec: str = "mpeg4", faststart: bool = False) -> Path:
    """Write a video whose frame i shows i in binary bands (see frame_image). ``times`` (s) gives VFR timestamps."""
    import av
    from fractions import Fraction

    assert n_frames <= 2 ** BITS
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), mode="w", options={"movflags": "faststart"} if faststart else None) as out:
        if times is None:
            stream = out.add_stream(codec, rate=fps)
        else:
            stream = out.add_stream(codec, rate=1000)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.options = {"qscale": "1"}
        stream.codec_context.time_base = Fraction(1, fps) if times is None else Fraction(1, 1000)
        for i in range(n_frames):
            img = frame_image(i, h, w)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i if times is None else int(round(times[i] * 1000))
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return path


def frame_image(i: int, h: int, w: int) -> np.ndarray:
    """Frame ``i``: BITS horizontal bands, band b white when bit b of ``i`` is set."""
    rows = (np.arange(h) * BITS) // h
    bits = ((i >> rows) & 1).astype(np.uint8) * 255
    return np.repeat(np.repeat(bits[:, None, None], w, axis=1), 3, axis=2)


def frame_index(img: np.ndarray) -> int:
    """Which frame a stored (resized, cropped) frame is: read the bands' middle rows."""
    h = img.shape[0]
    value = 0
    for b in range(BITS):
        mid = int((b + 0.5) * h / BITS)
        if float(img[mid].mean()) > 127:
            value |= 1 << b
    return value


def imu_signal(t: np.ndarray, seed: int = 0) -> np.ndarray:
    """A smooth, non-flat 6-channel signal (g, rad/s) with gravity on z."""
    rng = np.random.default_rng(seed)
    ph = rng.uniform(0, 2 * np.pi, 6)
    f = np.array([0.7, 1.1, 1.9, 0.5, 1.3, 2.3])
    amp = np.array([0.2, 0.2, 0.1, 0.5, 0.4, 0.3])
    x = amp * np.sin(2 * np.pi * f * t[:, None] + ph)
    x[:, 2] += 1.0
    return x


def write_imu(path: Path, t: np.ndarray, data: np.ndarray, cols=None) -> Path:
    import pandas as pd

    cols = cols or ["time", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    df = pd.DataFrame(np.column_stack([t, data]), columns=cols)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, float_format="%.9g")
    return path


def make_session(root: Path, name: str, *, seconds: float = 8.0, fps: int = 10, imu_rate: float = 100.0,
                 imu_start: float = 0.0, imu_seconds: Optional[float] = None, seed: int = 0,
                 session_json: Optional[dict] = None, video: bool = True) -> Path:
    """A paired session ``root/name`` with ``seconds`` of video at ``fps`` and IMU at ``imu_rate``."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    if video:
        write_video(d / "video.mp4", int(round(seconds * fps)), fps=fps)
    dur = seconds if imu_seconds is None else imu_seconds
    t = imu_start + np.arange(int(round(dur * imu_rate))) / imu_rate
    write_imu(d / "imu.csv", t, imu_signal(t, seed))
    if session_json is not None:
        (d / "session.json").write_text(json.dumps(session_json))
    return d
