"""crossmodal-har gopro-extract FILE.mp4 --out DIR: a GoPro MP4 as a paired-folder session.

Writes DIR/video.mp4 (a relative symlink to FILE, or a copy with --copy), DIR/imu.csv
(time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z: s on the video clock, acc in --acc-unit,
gyro in rad/s) and DIR/session.json (units, subject, camera and telemetry details), so that
crossmodal-har ingest --layout paired reads it like any user session.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "gopro-extract"
HELP = "a GoPro MP4's IMU as a paired session folder"
DESCRIPTION = __doc__


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
    from crossmodal_har.errors import UserError
    from crossmodal_har.io import clean_stale_temps, guard_output_dir, guard_outputs
    from crossmodal_har.pairs.gopro.extract import OUTPUT_FILES, extract_session

    out, video = args.out, args.out / "video.mp4"
    guard_output_dir(("--out", out), [("FILE", args.file)])
    # a video.mp4 that is a symlink is an earlier run's link to its source: replacing the link never
    # touches the file it points to, so only a real file there is checked against the input
    outputs = [(f"--out's {n}", out / n) for n in OUTPUT_FILES if n != "video.mp4" or not video.is_symlink()]
    guard_outputs(outputs, [("FILE", args.file)], force=args.force)
    if video.is_symlink() and not args.force:
        raise UserError(f"--out's video.mp4 {video} already exists; use --force to overwrite")
    clean_stale_temps(video)
    # DataError for non-GoPro / truncated files: one line, exit 2
    extract_session(args.file, out, acc_unit=args.acc_unit, subject=args.subject, copy=args.copy)
    return 0
