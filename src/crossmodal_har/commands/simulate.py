"""``crossmodal-har simulate``: a physically consistent paired IMU+video corpus (egomotion simulator)."""

from __future__ import annotations

import argparse

from crossmodal_har.commands._args.flags import add_threads_flag

NAME = "simulate"
HELP = "simulate people wearing a head camera and IMUs"
DESCRIPTION = (
    "Simulate people (a kinematic body: pelvis, trunk, head, arm) doing activities (walk, run, stand, sit, "
    "lie, turn, stairs, fall) in a textured 3-D arena, with a head camera and IMUs at head, waist or wrist posed "
    "by one body. Writes <out>/<session>/{video.mp4,imu.csv (or imu-<site>.csv),session.json}, <out>/labels.csv "
    "and <out>/simulation.json. Optional faults (sync offset, IMU dropouts, corrupt video) exercise ingestion.")

SIM_KEYS = ("subjects", "minutes", "seed", "size", "fps", "hfov_deg", "session_minutes", "mounting", "workers", "crf",
            "sync_offset_s", "declare_offset", "dropouts", "dropout_s", "corrupt_video", "corrupt_frames",
            "fault_fraction", "resume", "looks", "look_every_s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--subjects", type=int, default=4, help="number of simulated people (default 4)")
    parser.add_argument("--minutes", type=float, default=10.0, help="TOTAL minutes across all subjects (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed; same seed -> same files (default 0)")
    parser.add_argument("--size", type=int, default=64, help="frame size in pixels, even (default 64)")
    parser.add_argument("--fps", type=float, default=10.0, help="video frame rate, Hz (default 10)")
    parser.add_argument("--hfov", type=float, default=90.0, dest="hfov_deg",
                        help="horizontal field of view, degrees (default 90)")
    parser.add_argument("--session-minutes", type=float, default=5.0,
                        help="longest session; a subject's share is split into sessions (default 5)")
    parser.add_argument("--mounting", default="head", metavar="SITE[,SITE...]",
                        help="where the IMU is worn: head (on the camera), waist (belt phone), wrist (watch), "
                             "mixed (one per person), or several sites, e.g. head,waist: one imu-<site>.csv "
                             "each, from the same body (default head)")
    parser.add_argument("--looks", type=int, default=16,
                        help="pool of scene looks (colours, sky, sun) shared by all subjects; 0 = one per session (default 16)")
    parser.add_argument("--look-every", type=float, default=60.0, dest="look_every_s",
                        help="mean seconds between look changes within a session, at bout boundaries (default 60)")
    parser.add_argument("--workers", type=int, default=1, help="processes across sessions (default 1)")
    add_threads_flag(parser)
    parser.add_argument("--crf", type=int, default=23, help="x264 quality, lower = better (default 23)")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="redo every session (default: reuse sessions an identical earlier run finished)")
    f = parser.add_argument_group("fault injection (applied to --fault-fraction of the sessions)")
    f.add_argument("--sync-offset", type=float, default=0.0, dest="sync_offset_s",
                   help="write IMU timestamps this many seconds late (truth in simulation.json)")
    f.add_argument("--declare-offset", action="store_true",
                   help="also declare the correction in session.json imu_offset_s (= -sync offset)")
    f.add_argument("--dropouts", type=int, default=0, help="IMU gaps per faulted session")
    f.add_argument("--dropout-s", type=float, default=1.0, help="length of each IMU gap, s (default 1)")
    f.add_argument("--corrupt-video", choices=["none", "zero", "noise", "truncate"], default="none",
                   help="black frames, garbage frames, or a truncated mp4")
    f.add_argument("--corrupt-frames", type=int, default=5, help="frames spoiled per faulted session (default 5)")
    f.add_argument("--fault-fraction", type=float, default=1.0, help="share of sessions faulted (default 1 = all)")


def run(args: argparse.Namespace) -> int:
    from crossmodal_har.io import guard_output_dir
    from crossmodal_har.simulator import simulate

    guard_output_dir(("--out", args.out))  # an existing file, or a directory that cannot be made: one line
    summary = simulate(args.out, **{k: getattr(args, k) for k in SIM_KEYS})  # SimConfig fields
    tot = summary["totals"]
    print(f"wrote {tot['sessions']} sessions ({tot['minutes']:.1f} min, {tot['frames']} frames, "
          f"{tot['imu_samples']} IMU samples) to {args.out} in {tot['wall_s']:.1f} s "
          f"({tot['minutes'] / max(tot['cpu_s'] / 60.0, 1e-9):.1f} simulated min per CPU min)")
    return 0
