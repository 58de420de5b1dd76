"""``crossmodal-har gopro-extract FILE.mp4 --out DIR``: a GoPro MP4 as a paired-folder session.

Writes ``DIR/video.mp4`` (a relative symlink to FILE, or a copy with ``--copy``), ``DIR/imu.csv``
(``time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z``: s on the video clock, acc in ``--acc-unit``,
gyro in rad/s) and ``DIR/session.json`` (units, subject, camera and telemetry details), so that
``crossmodal-har ingest --layout paired`` reads it like any user session.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

NAME = "gopro-extract"
HELP = "write a GoPro MP4's IMU (GPMF) as a paired-folder session: video.mp4 + imu.csv + session.json"
DESCRIPTION = __doc__

OUTPUT_FILES = ("video.mp4", "imu.csv", "session.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="GoPro MP4 with a telemetry (GPMF) track")
    parser.add_argument("--out", type=Path, required=True, help="session directory to write")
    parser.add_argument("--copy", action="store_true", help="copy the video instead of symlinking it")
    parser.add_argument("--acc-unit", choices=("g", "m/s^2"), default="g",
                        help="accelerometer unit written to imu.csv (declared in session.json)")
    parser.add_argument("--subject", default=None, help="subject id for session.json (default: file stem)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite existing output files in --out (never the input FILE)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from crossmodal_har.errors import UserError
    from crossmodal_har.io import (atomic_write, atomic_write_json, clean_stale_temps, guard_output_dir,
        guard_outputs, make_temp)
    from crossmodal_har.pairs.gopro.source import load_gopro_imu
    from crossmodal_har.pairs.gopro.telemetry import read_telemetry
    from crossmodal_har.signals.types import CHANNELS, STANDARD_GRAVITY

    src: Path = args.file
    out: Path = args.out
    if not src.is_file():
        raise UserError(f"{src}: no such file")
    guard_output_dir(("--out", out), [("FILE", src)])
    # a video.mp4 that is a symlink is an earlier run's link to its source: replacing the link never
    # touches the file it points to, so only a real file there is checked against the input
    video = out / "video.mp4"
    outputs = [(f"--out's {n}", out / n) for n in OUTPUT_FILES if n != "video.mp4" or not video.is_symlink()]
    guard_outputs(outputs, [("FILE", src)], force=args.force)
    if video.is_symlink() and not args.force:
        raise UserError(f"--out's video.mp4 {video} already exists; use --force to overwrite")
    clean_stale_temps(video)
    tele = read_telemetry(src)  # DataError for non-GoPro / truncated files: one line, exit 2
    subject = args.subject or src.stem
    rec = load_gopro_imu(src, name=src.stem, subject=subject, telemetry=tele)

    out.mkdir(parents=True, exist_ok=True)
    data = rec.data.copy()
    if args.acc_unit == "m/s^2":
        data[:, :3] *= STANDARD_GRAVITY
    table = np.column_stack([rec.t, data])

    def write_csv(tmp: Path) -> None:
        np.savetxt(tmp, table, delimiter=",", fmt=["%.6f"] + ["%.7g"] * 6,
                   header=",".join(("time",) + CHANNELS), comments="")

    atomic_write(out / "imu.csv", write_csv)

    if args.copy:
        atomic_write(video, lambda tmp: shutil.copyfile(src, tmp))
    else:
        target = os.path.relpath(src.resolve(), out.resolve())
        tmp = make_temp(video)  # the link is made under a temporary name and moved into place
        tmp.unlink()
        tmp.symlink_to(target)
        try:
            os.replace(tmp, video)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    session = {
        "imu_offset_s": 0.0, "acc_unit": args.acc_unit, "gyro_unit": "rad/s", "time_unit": "s",
        "subject": subject, "camera": tele.camera, "source_file": src.name, "gopro": tele.meta(),
    }
    atomic_write_json(out / "session.json", session)
    acc = tele.streams["ACCL"]
    log.info("%s: %s, %d IMU samples over %.2f s (ACCL %.1f Hz, GYRO %.1f Hz) -> %s", src.name, tele.camera,
             len(rec.t), rec.t[-1] - rec.t[0], acc.rate_hz, tele.streams["GYRO"].rate_hz, out)
    return 0
