"""A GoPro MP4 as a paired-folder session (``crossmodal-har gopro-extract``): ``OUT/video.mp4`` (a
relative symlink to the MP4, or a copy), ``OUT/imu.csv`` (``time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z``:
s on the video clock, acc in ``acc_unit``, gyro in rad/s) and ``OUT/session.json`` (units, subject,
camera and telemetry details), so that ``ingest --layout paired`` reads it like any user session.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Literal, Optional, Union

import numpy as np

from crossmodal_har.errors import UserError
from crossmodal_har.io import atomic_write, atomic_write_json, make_temp
from crossmodal_har.pairs.gopro.source import load_gopro_imu
from crossmodal_har.pairs.gopro.telemetry import read_telemetry
from crossmodal_har.signals.types import CHANNELS, STANDARD_GRAVITY

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
OUTPUT_FILES = ("video.mp4", "imu.csv", "session.json")


def _link(src: Path, video: Path) -> None:
    """``video`` becomes a relative symlink to ``src``, made under a temporary name and moved into
    place (replacing an earlier run's link never touches the file it points to)."""
    target = os.path.relpath(src.resolve(), video.parent.resolve())
    tmp = make_temp(video)
    tmp.unlink()
    tmp.symlink_to(target)
    try:
        os.replace(tmp, video)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def extract_session(src: PathLike, out: PathLike, *, acc_unit: Literal["g", "m/s^2"] = "g",
                    subject: Optional[str] = None, copy: bool = False) -> Dict[str, Any]:
    """Write ``src``'s IMU (GPMF) and video as the session directory ``out`` (created); existing
    session files there are replaced (the caller decides whether they may be).

    Args:
        src: a GoPro MP4 with a telemetry track.
        out: the session directory.
        acc_unit: the accelerometer unit written to ``imu.csv`` (declared in ``session.json``).
        subject: the subject id (default: the file's stem).
        copy: copy the video instead of linking to it.

    Returns:
        The ``session.json`` written.

    Raises:
        UserError: ``src`` is not a file. DataError: not a GoPro file, truncated telemetry.
    """
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise UserError(f"{src}: no such file")
    tele = read_telemetry(src)
    subject = subject or src.stem
    rec = load_gopro_imu(src, name=src.stem, subject=subject, telemetry=tele)
    out.mkdir(parents=True, exist_ok=True)
    data = rec.data.copy()
    if acc_unit == "m/s^2":
        data[:, :3] *= STANDARD_GRAVITY
    table = np.column_stack([rec.t, data])

    def write_csv(tmp: Path) -> None:
        np.savetxt(tmp, table, delimiter=",", fmt=["%.6f"] + ["%.7g"] * 6, header=",".join(("time",) + CHANNELS),
                   comments="")

    atomic_write(out / "imu.csv", write_csv)
    if copy:
        atomic_write(out / "video.mp4", lambda tmp: shutil.copyfile(src, tmp))
    else:
        _link(src, out / "video.mp4")
    session = {
        "imu_offset_s": 0.0, "acc_unit": acc_unit, "gyro_unit": "rad/s", "time_unit": "s",
        "subject": subject, "camera": tele.camera, "source_file": src.name, "gopro": tele.meta(),
    }
    atomic_write_json(out / "session.json", session)
    acc = tele.streams["ACCL"]
    log.info("%s: %s, %d IMU samples over %.2f s (ACCL %.1f Hz, GYRO %.1f Hz) -> %s", src.name, tele.camera,
             len(rec.t), rec.t[-1] - rec.t[0], acc.rate_hz, tele.streams["GYRO"].rate_hz, out)
    return session
