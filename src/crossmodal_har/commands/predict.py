"""``crossmodal-har predict``: classify every window of a long recording (streaming)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

NAME = "predict"
HELP = "classify a (days-long) IMU recording window by window with a classifier bundle"
DESCRIPTION = (
    "Streams FILE.csv|FILE.parquet (header time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z) through the "
    "bundle's preprocessing and model with bounded memory. Writes one row per window (start, end, "
    "status, label, per-class probabilities); gaps, rows with missing values and windows failing "
    "quality checks are rows marked with their status and no label. A summary is printed and "
    "written beside the output as <out>.summary.json."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="classifier bundle directory")
    p.add_argument("--input", required=True, metavar="FILE", help="recording (.csv or .parquet)")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="predictions CSV to write")
    add_unit_arguments(p)
    p.add_argument("--stride", type=float, default=None, metavar="S",
                   help="seconds between window starts (default: the bundle's)")
    p.add_argument("--smooth", type=int, default=0, metavar="N",
                   help="majority filter over N consecutive ok windows (0 = off)")
    p.add_argument("--timeline", default=None, metavar="PNG", help="also draw activity over time")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                   help="torch, or ONNX Runtime with MODEL_DIR/model.onnx (see `export`) or --onnx")
    p.add_argument("--onnx", default=None, metavar="FILE.onnx", help="exported model for --runtime onnx")
    p.add_argument("--chunk-rows", type=int, default=500_000, metavar="N",
                   help="input rows read at once (memory; results do not depend on it)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="windows per model call")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for the model (default: the runtime's; 1 can be faster on a busy machine)")


def add_unit_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input units (default: g, rad/s, s)")
    g.add_argument("--acc-unit", choices=("g", "m/s^2"), default=None)
    g.add_argument("--gyro-unit", choices=("rad/s", "deg/s"), default=None)
    g.add_argument("--time-unit", choices=("s", "ms"), default=None)
    g.add_argument("--meta", default=None, metavar="dataset.json",
                   help="read the three units from a dataset.json instead")


def resolve_units(args: argparse.Namespace):
    """Units from --meta or the three flags (missing flags default to g, rad/s, s)."""
    from crossmodal_har.errors import UserError
    from crossmodal_har.io import read_json
    from crossmodal_har.signals.units import Units

    flags = {k: getattr(args, k) for k in ("acc_unit", "gyro_unit", "time_unit")}
    if args.meta:
        if any(v is not None for v in flags.values()):
            raise UserError("give either --meta or --acc-unit/--gyro-unit/--time-unit, not both")
        data = read_json(args.meta)
        if not isinstance(data, dict):
            raise UserError(f"{args.meta}: expected a JSON object with acc_unit, gyro_unit, time_unit")
        return Units.from_mapping(data, path=args.meta)
    if all(v is None for v in flags.values()):
        log.warning("no units given: assuming acc in g, gyro in rad/s, time in s "
                    "(pass --acc-unit/--gyro-unit/--time-unit or --meta)")
    return Units(**{k: v for k, v in flags.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from crossmodal_har.errors import UserError
    from crossmodal_har.infer.bundle import read_bundle, weights_digest
    from crossmodal_har.infer.predict import OnnxRunner, TorchRunner, format_summary, predict_file
    from crossmodal_har.io import atomic_write_json

    if args.chunk_rows < 1 or args.batch_size < 1 or (args.threads is not None and args.threads < 1):
        raise UserError("--chunk-rows, --batch-size and --threads must be >= 1")
    if args.smooth < 0:
        raise UserError("--smooth must be >= 0")
    units = resolve_units(args)
    # ONNX needs only bundle.json (and never imports torch: faster start, less memory)
    bundle = read_bundle(args.model, with_model=args.runtime == "torch")
    pre = bundle.preprocess
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
    out = Path(args.out)
    summary = predict_file(args.input, out, runner, pre, bundle.class_names, units, smooth=args.smooth,
                           chunk_rows=args.chunk_rows, batch_size=args.batch_size)
    summary.update({"input": str(args.input), "output": str(out), "model": str(args.model),
                    "runtime": args.runtime, "stride_s": pre.stride_s, "window_s": pre.window_s,
                    "rate_hz": pre.rate_hz, "smooth": args.smooth, "units": units.to_dict()})
    summary_path = out.with_name(out.stem + ".summary.json")
    atomic_write_json(summary_path, summary)
    if args.timeline:
        from crossmodal_har.infer.timeline import plot_timeline

        plot_timeline(out, args.timeline, bundle.class_names)
    if summary["windows_ok"] == 0:
        log.warning("%s: no window could be classified (see the stretches and skipped windows below)",
                    args.input)
    print(format_summary(summary))
    print(f"wrote {out} and {summary_path}" + (f" and {args.timeline}" if args.timeline else ""))
    log.debug("summary: %s", json.dumps(summary))
    return 0
