"""Running ``crossmodal-har`` in tests while the simulator may not yet write one IMU per site.

``simulate --mounting head,waist`` (one ``imu-<site>.csv`` per body site) is the simulator's interface
for several sites. Where this checkout's simulator refuses a comma list, :func:`runner` simulates the
first site and copies its ``imu.csv`` to ``imu-<site>.csv`` for every site (the same signal at each site:
enough to test the plumbing of site selection and of the placement study, not the body)."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path
from typing import List

from crossmodal_har.cli import build_parser, main


def simulator_has_sites() -> bool:
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # argparse's refusal is not this test's output
            build_parser().parse_args(["simulate", "--out", "x", "--mounting", "head,waist"])
    except SystemExit:
        return False
    return True


def runner(argv: List[str]) -> int:
    argv = ["-q", *argv]
    if argv[1] != "simulate" or "--mounting" not in argv or simulator_has_sites():
        return main(argv)
    i = argv.index("--mounting")
    sites = argv[i + 1].split(",")
    if len(sites) == 1:
        return main(argv)
    code = main(argv[:i + 1] + [sites[0]] + argv[i + 2:])
    out = Path(argv[argv.index("--out") + 1])
    for imu in out.glob("*/imu.csv"):
        for site in sites:
            shutil.copyfile(imu, imu.with_name(f"imu-{site}.csv"))
        imu.unlink()
    return code
