"""``crossmodal-har predict``: classify every window of a long recording (streaming)."""

from __future__ import annotations

import argparse
import logging

from crossmodal_har.commands._units import add_unit_arguments, input_units

log = logging.getLogger(__name__)

NAME = "predict"
HELP = "classify a (days-long) IMU recording window by window with a classifier bundle"
DESCRIPTION = (
    "Streams FILE.csv|FILE.parquet (header time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z) or a device file "
    "(by extension or --format; units, rate and start time from the file) through the bundle's "
    "preprocessing and model with bounded memory. Writes one row per window (start, end, "
    "status, label, per-class probabilities); gaps, rows with missing values and windows failing "
    "quality checks are rows marked with their status and no label. A summary is printed and "
    "written beside the output as <out>.summary.json. Outputs are never inputs: an output that is "
    "the recording or a bundle file (also through a symlink or hard link) is refused, and existing "
    "outputs are replaced only with --force. With --start (or epoch times in the file) rows get an ISO "
    "8601 timestamp in --tz; windows while the device is not worn (van Hees et al. 2013) get status "
    "nonwear; --report DIR adds daily/hourly summaries and a self-contained report.html."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="classifier bundle directory")
    from crossmodal_har.signals import devices  # light: the registry of device readers

    readers = devices.READERS
    formats = sorted(readers) + list(getattr(devices, "TABLE_FORMATS", ()))

    p.add_argument("--input", required=True, metavar="FILE",
                   help="recording: .csv, .parquet or a device file (" + ", ".join(
                       f"{n} {'/'.join(r.suffixes)}" for n, r in readers.items()) + ")")
    p.add_argument("--format", default=None, choices=formats, metavar="NAME",
                   help="recording format when the extension does not say (" + ", ".join(formats) + ")")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="predictions CSV to write")
    add_unit_arguments(p)
    p.add_argument("--stride", type=float, default=None, metavar="S",
                   help="seconds between window starts (default: the bundle's)")
    p.add_argument("--smooth", default="0", metavar="N|majority[:N]|hmm",
                   help="N or majority:N: majority filter over N consecutive ok windows (majority = 5; "
                        "0 = off); hmm: Viterbi with the bundle's transition matrix (train-classifier)")
    p.add_argument("--timeline", default=None, metavar="PNG", help="also draw activity over time")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                   help="torch, or ONNX Runtime with MODEL_DIR/model.onnx (see `export`) or --onnx")
    p.add_argument("--onnx", default=None, metavar="FILE.onnx", help="exported model for --runtime onnx")
    p.add_argument("--chunk-rows", type=int, default=500_000, metavar="N",
                   help="input rows read at once (memory; results do not depend on it)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="windows per model call")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for the model (default: the runtime's; 1 can be faster on a busy machine)")
    p.add_argument("--force", action="store_true",
                   help="replace existing outputs (--out, its .summary.json, --timeline, --report's "
                        "files); never an input")
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
    g.add_argument("--report", default=None, metavar="DIR",
                   help="write DIR/daily_summary.csv, DIR/hourly_summary.csv and DIR/report.html")


def parse_smooth(value: str):
    """``--smooth``: ``N`` / ``majority:N`` (majority filter, int N >= 0), ``majority`` (N = 5), ``hmm``."""
    from crossmodal_har.errors import UserError

    v = str(value).strip().lower()
    if v == "hmm":
        return "hmm"
    if v == "majority":
        return 5
    if v.startswith("majority:"):
        v = v[len("majority:"):]
    try:
        n = int(v)
    except ValueError:
        raise UserError(f"--smooth: expected N, majority[:N] or hmm, got {value!r}") from None
    if n < 0:
        raise UserError("--smooth must be >= 0")
    return n


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from crossmodal_har.errors import UserError
    from crossmodal_har.infer.predict import predict_file
    from crossmodal_har.infer.runtime import OnnxRunner, TorchRunner
    from crossmodal_har.infer.summary import format_summary
    from crossmodal_har.io import atomic_write_json, guard_outputs
    from crossmodal_har.models.bundle import (BUNDLE_META, BUNDLE_ONNX, BUNDLE_WEIGHTS, bundle_hmm, bundle_nonwear,
                                              read_bundle, weights_digest)

    if args.chunk_rows < 1 or args.batch_size < 1 or (args.threads is not None and args.threads < 1):
        raise UserError("--chunk-rows, --batch-size and --threads must be >= 1")
    smooth = parse_smooth(args.smooth)
    out = Path(args.out)
    summary_path = out.with_name(out.stem + ".summary.json")
    from crossmodal_har.config import from_dict
    from crossmodal_har.errors import ConfigError
    from crossmodal_har.infer.clinical_report import DayAggregator, report_paths, write_report
    from crossmodal_har.signals.clock import parse_start, zone
    from crossmodal_har.infer.calibration import CalibrationConfig
    from crossmodal_har.infer.nonwear import NonwearConfig, nonwear_settings

    nw = {"enabled": args.nonwear == "on"}
    for key, val in (("std_g", args.nonwear_std), ("range_g", args.nonwear_range),
                     ("approach", args.nonwear_approach)):
        if val is not None:
            nw[key] = val
    try:
        calibration = from_dict(CalibrationConfig, {"mode": args.calibrate}, where="--calibrate")
        calibration.validate()
        start_s = parse_start(args.start, args.tz) if args.start else None
        zone(args.tz)
    except (ValueError, ConfigError) as e:
        raise UserError(str(e)) from None
    report_files = list(report_paths(Path(args.report)).items()) if args.report else []
    model_files = [("--model", Path(args.model) / n) for n in (BUNDLE_META, BUNDLE_WEIGHTS, BUNDLE_ONNX)]
    guard_outputs([("--out", out), ("--out's summary", summary_path), ("--timeline", args.timeline),
                   *[(f"--report's {p.name}", p) for _, p in report_files]],
                  [("--input", args.input), *model_files, ("--onnx", args.onnx), ("--meta", args.meta)],
                  force=args.force)
    units = input_units(args, args.format)
    # ONNX needs only bundle.json (and never imports torch: faster start, less memory)
    bundle = read_bundle(args.model, with_model=args.runtime == "torch")
    pre = bundle.preprocess
    bundle_nw = bundle_nonwear(bundle)
    try:  # the defaults, then the bundle's nonwear section, then the flags
        nonwear = from_dict(NonwearConfig, nonwear_settings(bundle_nw, nw),
                            where=f"{Path(args.model) / BUNDLE_META}: nonwear" if bundle_nw else "non-wear")
        nonwear.validate()
    except (ValueError, ConfigError) as e:
        raise UserError(str(e)) from None
    if args.stride is not None:
        if not args.stride > 0:
            raise UserError("--stride must be > 0 seconds")
        pre = dataclasses.replace(pre, stride_s=float(args.stride))
    if args.runtime == "onnx":
        onnx_path = Path(args.onnx) if args.onnx else bundle.onnx_path
        if onnx_path is None or not onnx_path.is_file():
            raise UserError(f"--runtime onnx: no {args.onnx or Path(args.model) / 'model.onnx'}; run "
                            f"`crossmodal-har export --model {args.model} --format onnx --out "
                            f"{Path(args.model) / 'model.onnx'}` first or pass --onnx FILE")
        runner = OnnxRunner(onnx_path, threads=args.threads, weights_sha256=weights_digest(bundle.path))
    else:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)  # the program's choice, asked for by the user
        runner = TorchRunner(bundle.model)
    days = DayAggregator(bundle.class_names, min(pre.stride_s, pre.window_s)) if args.report else None
    hmm = None
    if smooth == "hmm":
        hmm = bundle_hmm(bundle)
        if hmm is None:
            raise UserError(f"--smooth hmm: bundle {args.model} has no hmm section (transition matrix); "
                            "retrain it with this version's `crossmodal-har train-classifier`, or use "
                            "--smooth majority")
    summary = predict_file(args.input, out, runner, pre, bundle.class_names, units,
                           smooth=0 if hmm is not None else smooth, hmm=hmm,
                           chunk_rows=args.chunk_rows, batch_size=args.batch_size,
                           nonwear=nonwear, start_s=start_s, tz=args.tz, days=days, fmt=args.format,
                           calibration=calibration)
    summary["nonwear"]["settings_from"] = ", ".join(
        ["defaults"] + (["the bundle's nonwear section"] if bundle_nw else []) +
        (["--nonwear-* flags"] if len(nw) > 1 else []))
    summary.update({"input": str(args.input), "output": str(out), "model": str(args.model),
                    "runtime": args.runtime, "stride_s": pre.stride_s, "window_s": pre.window_s,
                    "rate_hz": pre.rate_hz, "smooth": smooth, "units": units.to_dict()})
    atomic_write_json(summary_path, summary)
    if args.report:
        write_report(Path(args.report), days, summary, bundle.meta)
    if args.timeline:
        from crossmodal_har.infer.timeline import plot_timeline

        plot_timeline(out, args.timeline, bundle.class_names)
    if summary["windows_ok"] == 0:
        log.warning("%s: no window could be classified (see the stretches and skipped windows below)",
                    args.input)
    print(format_summary(summary))
    print(f"wrote {out} and {summary_path}" + (f" and {args.timeline}" if args.timeline else "")
          + (f" and {args.report}/" if args.report else ""))
    log.debug("summary: %s", json.dumps(summary))
    return 0
