"""Argument groups of the commands that stream a recording (``predict``, ``embed``), each with the
config keys its flags set: the input units (both commands; ``UnitSettings``) and predict's absolute
time, non-wear and clinician's report. Not a command (the leading underscore keeps the CLI's
discovery away); imports nothing heavy.
"""

from __future__ import annotations

import argparse

# flag -> config key of the input units (a UnitSettings section named units)
UNIT_KEYS = {k: f"units.{k}" for k in ("acc_unit", "gyro_unit", "time_unit", "meta")}
UNIT_KEYS["sensor"] = "sensor"  # and which sensor of a file that holds several (a top-level key)
# flag -> PredictConfig key of predict's group below (and --nonwear on|off -> nonwear.enabled)
CLINICAL_KEYS = {"start": "start", "tz": "tz", "calibrate": "calibration.mode", "report": "report",
                 "nonwear_std": "nonwear.std_g", "nonwear_range": "nonwear.range_g",
                 "nonwear_approach": "nonwear.approach", "min_wear_hours": "min_wear_hours",
                 "exclude_first_last": "exclude_first_last"}
# flag -> StudyConfig key (predict over many recordings)
STUDY_KEYS = {k: k for k in ("workers", "shard", "participants")}


def add_unit_arguments(p: argparse.ArgumentParser) -> None:
    """The four unit flags and ``--sensor``, as one argument group."""
    g = p.add_argument_group("input units (default: g, rad/s, s)")
    g.add_argument("--acc-unit", choices=("g", "m/s^2"), default=None)
    g.add_argument("--gyro-unit", choices=("rad/s", "deg/s"), default=None)
    g.add_argument("--time-unit", choices=("s", "ms"), default=None)
    g.add_argument("--meta", default=None, metavar="dataset.json",
                   help="read the three units from a dataset.json instead")
    g.add_argument("--sensor", default=None, metavar="LABEL",
                   help="which sensor of a file that holds several (APDM .h5 with several Opals: a label such as "
                        "Lumbar or Right Wrist, or an id; default: the one sensor, or the lumbar one)")


def add_clinical_arguments(p: argparse.ArgumentParser) -> None:
    """``predict``'s flags of absolute time, calibration, non-wear and the clinician's report, as one group."""
    g = p.add_argument_group("absolute time, non-wear and the clinician's report")
    g.add_argument("--start", default=None, metavar="ISO8601",
                   help="wall-clock time of the first sample for a file with relative times (e.g. "
                        "2026-03-01T08:30:00+01:00; without an offset it is read in --tz). Files whose "
                        "times are > 1e9 s are taken as Unix epoch seconds and need no --start")
    g.add_argument("--tz", default="UTC", metavar="ZONE",
                   help="IANA time zone of the timestamps and calendar days (default UTC)")
    g.add_argument("--calibrate", choices=("auto", "off"), default="auto",
                   help="autocalibration against gravity (van Hees et al. 2014): auto (default) fits per-axis "
                        "offsets and scales on still 10-s epochs in a first pass and applies them when the fit "
                        "succeeds and reduces the error (else skipped, with the reason in the summary); off")
    g.add_argument("--nonwear", choices=("on", "off"), default="on",
                   help="non-wear detection (van Hees et al. 2013, GGIR's thresholds or the bundle's nonwear "
                        "section; default on)")
    g.add_argument("--nonwear-std", type=float, default=None, metavar="G",
                   help="per-axis standard deviation below which an axis is still (default: the bundle's, "
                        "else 0.013 g)")
    g.add_argument("--nonwear-range", type=float, default=None, metavar="G",
                   help="per-axis value range below which an axis is still (default: the bundle's, else 0.05 g)")
    g.add_argument("--nonwear-approach", choices=("2023", "2013"), default=None,
                   help="2023 (default): flag the whole 60-min window, edges refined to the minute; 2013: only "
                        "its central 15 min")
    g.add_argument("--min-wear-hours", type=float, default=None, metavar="H",
                   help="a calendar day is valid with at least H hours of wear (default 16, GGIR's includedaycrit; "
                        "skdh uses 10)")
    g.add_argument("--exclude-first-last", action="store_true", default=None,
                   help="the first and last calendar days are never valid (the days the device goes on and off)")
    g.add_argument("--report", default=None, metavar="DIR",
                   help="write DIR/daily_summary.csv, DIR/hourly_summary.csv and DIR/report.html")


def add_study_arguments(p: argparse.ArgumentParser) -> None:
    """``predict``'s ``--force`` and ``--strict``, and the flags of a study (``--input`` naming many
    recordings), as one group."""
    p.add_argument("--force", action="store_true",
                   help="replace existing outputs (--out, its .summary.json, --timeline, --report's "
                        "files); never an input")
    p.add_argument("--strict", action="store_true", help="refuse a device file with damaged parts (default: read "
                   "the rest, list what was left out in the summary and report, exit status 3)")
    g = p.add_argument_group("a study: --input names many recordings, --out is a folder")
    g.add_argument("--workers", type=int, default=None, metavar="N", help="recordings run at once (processes)")
    g.add_argument("--shard", default=None, metavar="i/K",
                   help="only shard i (0-based) of K, e.g. $SLURM_ARRAY_TASK_ID/K; then run crossmodal-har collate OUT_DIR")
    g.add_argument("--participants", default=None, metavar="CSV",
                   help="participant ids: columns file (name or stem), participant (default: participants.csv "
                        "in the input folder, else the file name)")
