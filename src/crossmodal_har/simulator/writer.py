"""Writing one paired session: video.mp4 (PyAV/libx264), imu.csv, session.json."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from crossmodal_har.io import atomic_write

IMU_HEADER = "time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"


def format_imu_csv(times: np.ndarray, data: np.ndarray, time_unit: str) -> str:
    """CSV text with the paired-folder header; time to 1 µs (6 decimals in s, 3 in ms), values to 6 decimals."""
    tfmt = "%.3f" if time_unit == "ms" else "%.6f"
    fmt = tfmt + ",%.6f,%.6f,%.6f,%.6f,%.6f,%.6f"
    rows = np.concatenate([np.asarray(times, dtype=np.float64)[:, None], np.asarray(data, dtype=np.float64)], 1)
    lines = [IMU_HEADER]
    lines.extend(fmt % tuple(r) for r in rows.tolist())
    return "\n".join(lines) + "\n"


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """RGB [H, W, 3] uint8 → planar yuv420p [H * 3 / 2, W] uint8 (BT.601, limited range).

    Done here rather than by swscale so that the encoder's input is a fixed function of the frame
    (swscale's SIMD paths may depend on buffer alignment).
    """
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    h, w = r.shape
    y = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    cb = 128.0 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    cr = 128.0 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    cb = cb.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    cr = cr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    out = np.empty((h * 3 // 2, w), dtype=np.uint8)
    out[:h] = np.clip(np.floor(y + 0.5), 0, 255)
    out[h:h + h // 4] = np.clip(np.floor(cb + 0.5), 0, 255).reshape(h // 4, w)
    out[h + h // 4:] = np.clip(np.floor(cr + 0.5), 0, 255).reshape(h // 4, w)
    return out


class VideoWriter:
    """Streams RGB frames into an H.264 MP4 (yuv420p, constant frame rate, single-threaded encoder
    so that the bytes are a function of the frames). Written to a temporary file and moved into
    place on :meth:`close`."""

    def __init__(self, path: os.PathLike, size: int, fps: float, crf: int = 23):
        import av
        from fractions import Fraction

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._container = av.open(str(self.tmp), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001)
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width = size
        stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.time_base = 1 / rate
        # mbtree off: at these tiny sizes x264's macroblock-tree made the bytes vary between runs
        # of identical frames (found by the determinism test); single thread for the same reason.
        stream.options = {"preset": "veryfast", "crf": str(int(crf)), "threads": "1", "x264-params": "mbtree=0"}
        self._stream = stream
        self._av = av
        self._n = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one [H, W, 3] uint8 RGB frame."""
        yuv = rgb_to_yuv420p(frame)
        h, w = frame.shape[:2]
        vf = self._av.VideoFrame(w, h, "yuv420p")
        # Fill every plane including its row padding, so that no uninitialised byte reaches the encoder.
        parts = (yuv[:h], yuv[h:h + h // 4].reshape(h // 2, w // 2), yuv[h + h // 4:].reshape(h // 2, w // 2))
        for plane, arr in zip(vf.planes, parts):
            buf = np.zeros((plane.height, plane.line_size), dtype=np.uint8)
            buf[:, : arr.shape[1]] = arr
            plane.update(buf)
        vf.pts = self._n
        self._n += 1
        for packet in self._stream.encode(vf):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - best effort cleanup of a failed write
            pass
        self.tmp.unlink(missing_ok=True)


def truncate_file(path: os.PathLike, fraction: float) -> int:
    """Keep only the first ``fraction`` of a file's bytes (atomically); returns the new size."""
    data = Path(path).read_bytes()
    keep = max(1, int(len(data) * fraction))
    atomic_write(path, lambda p: p.write_bytes(data[:keep]))
    return keep


def labels_csv(rows: list) -> str:
    """``session,start,end,label,subject`` text (seconds, 3 decimals)."""
    out = ["session,start,end,label,subject"]
    for session, start, end, label, subject in rows:
        out.append(f"{session},{start:.3f},{end:.3f},{label},{subject}")
    return "\n".join(out) + "\n"
