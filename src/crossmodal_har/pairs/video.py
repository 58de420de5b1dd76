"""Video decoding with PyAV: one sequential pass per video, frames picked by presentation time.

Each video is decoded once, front to back, for all of its windows (never one seek-and-decode per
window). For every requested target time (sorted), the decoded frame whose presentation time is
nearest is returned; only those frames are converted (scaled so the short side is ``size``, then
centre-cropped to ``size`` x ``size``, RGB). Timing comes from each frame's ``pts`` x ``time_base``,
so variable-frame-rate video is handled.

Video clock: seconds from the stream's ``start_time`` (0 for most files), i.e. ``t = (pts -
start_time) * time_base``. IMU timestamps of every source are on this clock.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple, Union

import av
import numpy as np

from crossmodal_har.errors import DataError

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class VideoInfo:
    """What the container declares (may be approximate; decoding is the truth).

    Attributes:
        duration_s: stream duration (s), or None when the container does not say.
        fps: average frame rate (Hz), or None.
        width, height: frame size (pixels).
        frames: declared frame count (0 = unknown).
    """

    duration_s: Optional[float]
    fps: Optional[float]
    width: int
    height: int
    frames: int = 0


@dataclass
class DecodeStats:
    """What one decoding pass saw."""

    frames_decoded: int = 0
    frames_converted: int = 0
    bad_packets: int = 0
    stopped_early: Optional[str] = None  # error that ended demuxing before the end of the file
    first_time_s: Optional[float] = None
    last_time_s: Optional[float] = None
    extra: Dict[str, int] = field(default_factory=dict)


class NotAVideoError(DataError):
    """The file opens, but is a still picture (JPEG, PNG, ...) or has a single frame: not a video."""


def _is_image_format(name: str) -> bool:
    """FFmpeg demuxers of still pictures: ``image2``, ``image2pipe``, ``jpeg_pipe``, ``png_pipe``, ..."""
    return any(n in ("image2", "image2pipe") or n.endswith("_pipe") for n in (name or "").split(","))


def _open(path: Path) -> "av.container.InputContainer":
    if not path.is_file():
        raise DataError(path, "video file not found")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise DataError(path, f"cannot open video: {reason}") from None
    if not container.streams.video:
        container.close()
        raise DataError(path, "no video stream in file")
    return container


def probe_video(path: PathLike) -> VideoInfo:
    """Read the container header (no decoding). Raises DataError when the file cannot be opened, and
    :class:`NotAVideoError` when it is a still picture or declares a single frame (a video has a
    video stream with more than one frame; see also :func:`count_frames`)."""
    path = Path(path)
    container = _open(path)
    try:
        fmt = getattr(container.format, "name", "") or ""
        if _is_image_format(fmt):
            raise NotAVideoError(path, f"not a video: a still picture ({fmt.split(',')[0]}); expected a video "
                                       "stream with more than one frame")
        st = container.streams.video[0]
        if st.frames == 1:
            raise NotAVideoError(path, "not a video: its video stream has a single frame")
        duration = None
        if st.duration is not None and st.time_base is not None:
            duration = float(st.duration * st.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6
        rate = st.average_rate or st.guessed_rate
        fps = float(rate) if rate else None
        cc = st.codec_context
        return VideoInfo(duration_s=duration, fps=fps, width=int(cc.width or 0), height=int(cc.height or 0),
                         frames=int(st.frames or 0))
    finally:
        container.close()


def resize_crop_dims(width: int, height: int, size: int) -> Tuple[int, int, int, int]:
    """Scaled size (short side = ``size``) and crop offsets: ``(new_w, new_h, x0, y0)``."""
    scale = size / min(width, height)
    nw = max(size, int(round(width * scale)))
    nh = max(size, int(round(height * scale)))
    return nw, nh, (nw - size) // 2, (nh - size) // 2


def frame_to_rgb(frame, size: int) -> np.ndarray:
    """One decoded frame -> uint8 [size, size, 3]: scale short side to ``size``, centre crop."""
    nw, nh, x0, y0 = resize_crop_dims(frame.width, frame.height, size)
    img = frame.reformat(width=nw, height=nh, format="rgb24", interpolation="AREA").to_ndarray()
    return np.ascontiguousarray(img[y0:y0 + size, x0:x0 + size])


def iter_nearest_frames(path: PathLike, targets: np.ndarray, size: int, *, stats: Optional[DecodeStats] = None,
                        threads: bool = True) -> Iterator[Tuple[int, Optional[np.ndarray], float]]:
    """Decode ``path`` once and yield, for each target time, the nearest decoded frame.

    Args:
        path: the video file.
        targets: [M] float64 target times (s, video clock), sorted ascending.
        size: output frame side (pixels).
        stats: filled with what decoding saw (frames, bad packets, first/last frame time).
        threads: let FFmpeg decode with frame/slice threads (``thread_type="AUTO"``).

    Yields:
        ``(target_index, rgb uint8 [size, size, 3], frame_time_s)`` in target order. When no frame
        was decoded at all, frames are None and times NaN. Callers judge distance to the target.

    Raises:
        DataError: the file cannot be opened, or a decoded frame cannot be converted.
    """
    path = Path(path)
    targets = np.asarray(targets, dtype=np.float64)
    if len(targets) and np.any(np.diff(targets) < 0):
        raise ValueError("targets must be sorted")
    stats = stats if stats is not None else DecodeStats()
    container = _open(path)
    try:
        stream = container.streams.video[0]
        if threads:
            stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base is not None else None
        start_pts = stream.start_time or 0
        m = len(targets)
        j = 0
        prev = None  # (frame, time)
        cache_id = None
        cache_img = None

        def convert(fr) -> np.ndarray:
            nonlocal cache_id, cache_img
            if cache_id is not fr:  # consecutive targets often share a frame
                try:
                    cache_img = frame_to_rgb(fr, size)
                except av.error.FFmpegError as exc:  # a frame FFmpeg decoded but cannot scale
                    raise DataError(path, f"cannot convert a decoded frame to RGB: {exc}") from None
                cache_id = fr
                stats.frames_converted += 1
            return cache_img

        def frames():
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    return
                except av.error.FFmpegError as exc:  # truncated / corrupt container
                    stats.stopped_early = str(exc)
                    return
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    stats.bad_packets += 1
                    continue
                yield from decoded

        for fr in frames():
            if fr.pts is None or tb is None:
                stats.extra["no_pts"] = stats.extra.get("no_pts", 0) + 1
                continue
            t = (fr.pts - start_pts) * tb
            stats.frames_decoded += 1
            if stats.first_time_s is None:
                stats.first_time_s = t
            if prev is not None and t <= prev[1]:  # out-of-order timestamps: keep the stream monotonic
                stats.extra["non_monotonic_pts"] = stats.extra.get("non_monotonic_pts", 0) + 1
                continue
            stats.last_time_s = t
            while j < m and targets[j] <= t:
                if prev is None or (t - targets[j]) <= (targets[j] - prev[1]):
                    yield j, convert(fr), t
                else:
                    yield j, convert(prev[0]), prev[1]
                j += 1
            if j >= m and stats.frames_decoded >= 2:  # a second frame tells a video from a picture
                break
            prev = (fr, t)
        while j < m:
            if prev is None:
                yield j, None, float("nan")
            else:
                yield j, convert(prev[0]), prev[1]
            j += 1
    finally:
        container.close()


def count_frames(path: PathLike, limit: int) -> int:
    """Decode up to ``limit`` frames of the first video stream and return how many there were (a
    damaged stream counts the frames decoded before the damage). Raises DataError when the file
    cannot be opened."""
    path = Path(path)
    container = _open(path)
    n = 0
    try:
        packets = container.demux(container.streams.video[0])
        while n < limit:
            try:
                packet = next(packets)
            except (StopIteration, av.error.FFmpegError):
                break
            try:
                n += len(packet.decode())
            except av.error.FFmpegError:
                continue
    finally:
        container.close()
    return min(n, limit)


def decode_loop(path: PathLike, *, threads: bool = True) -> int:
    """Bare PyAV decode of every frame (the benchmark's reference). Returns the frame count."""
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if threads:
            stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            n += 1
    return n
