"""``crossmodal-har embed``: per-window embeddings of a recording (Parquet or .npy)."""

from __future__ import annotations

import argparse
import logging

from crossmodal_har.commands._units import add_unit_arguments, input_units

log = logging.getLogger(__name__)

NAME = "embed"
HELP = "write per-window embeddings (start, end, e0..eD-1) of a recording for your own analyses"
DESCRIPTION = (
    "Streams FILE through the same preprocessing and windows as `predict` and writes the encoder's "
    "embedding of every window that passes the quality checks. --out FILE.parquet (columns start, "
    "end, e0..) or FILE.npy (float64 [N, 2 + D]: start, end, embedding). An --out that is the "
    "recording or a model file (also through a symlink or hard link) is refused; an existing --out is "
    "replaced only with --force."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="MODEL_DIR", help="classifier bundle (its encoder is used)")
    src.add_argument("--encoder", metavar="RUN_DIR", help="encoder/run directory with encoder.json")
    from crossmodal_har.signals.devices import READERS, TABLE_FORMATS

    p.add_argument("--input", required=True, metavar="FILE",
                   help="recording: .csv/.parquet table or a device file (.cwa, .bin, ...; see --format)")
    p.add_argument("--out", required=True, metavar="FILE.parquet|FILE.npy")
    p.add_argument("--format", dest="fmt", choices=(*TABLE_FORMATS, *READERS), default=None,
                   help="input format (default: by the file's suffix); device files carry their own units, "
                        "rate and start time")
    p.add_argument("--tz", default="UTC", metavar="ZONE",
                   help="IANA time zone of a device clock that stores local time without a zone "
                        "(Axivity .cwa; default UTC)")
    add_unit_arguments(p)
    p.add_argument("--calibrate", choices=("auto", "off"), default="auto",
                   help="autocalibration against gravity, as in `predict` (default auto: the windows predict "
                        "classifies); off")
    p.add_argument("--stride", type=float, default=None, metavar="S", help="seconds between window starts")
    p.add_argument("--chunk-rows", type=int, default=500_000, metavar="N")
    p.add_argument("--batch-size", type=int, default=256, metavar="N")
    p.add_argument("--force", action="store_true", help="replace an existing --out (never an input)")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from crossmodal_har.errors import UserError
    from crossmodal_har.infer.embed import embed_file
    from crossmodal_har.io import guard_outputs
    from crossmodal_har.models.bundle import BUNDLE_META, BUNDLE_ONNX, BUNDLE_WEIGHTS, load_bundle
    from crossmodal_har.models.encoder_file import ENCODER_META, ENCODER_WEIGHTS, encoder_preprocess, load_encoder
    from crossmodal_har.models.run_file import RUN_META, RUN_WEIGHTS
    from crossmodal_har.models.classifier import NormalizedEncoder

    if args.chunk_rows < 1 or args.batch_size < 1:
        raise UserError("--chunk-rows and --batch-size must be >= 1")
    if Path(args.out).suffix.lower() not in (".parquet", ".npy"):
        raise UserError(f"--out {args.out}: expected a .parquet or .npy file name")
    if args.model:
        model_files = [("--model", Path(args.model) / n) for n in (BUNDLE_META, BUNDLE_WEIGHTS, BUNDLE_ONNX)]
    else:
        model_files = [("--encoder", Path(args.encoder) / n)
                       for n in (ENCODER_META, ENCODER_WEIGHTS, RUN_META, RUN_WEIGHTS, "config.json")]
    guard_outputs([("--out", args.out)], [("--input", args.input), *model_files, ("--meta", args.meta)],
                  force=args.force)
    from crossmodal_har.config import from_dict
    from crossmodal_har.errors import ConfigError
    from crossmodal_har.infer.calibration import CalibrationConfig

    try:
        calibration = from_dict(CalibrationConfig, {"mode": args.calibrate}, where="--calibrate")
        calibration.validate()
    except (ValueError, ConfigError) as e:
        raise UserError(str(e)) from None
    units = input_units(args, args.fmt)
    if args.model:
        bundle = load_bundle(args.model)
        encoder, pre = bundle.model.encoder, bundle.preprocess
    else:
        encoder, meta = load_encoder(args.encoder)
        pre = encoder_preprocess(meta, args.encoder)
    if args.stride is not None:
        if not args.stride > 0:
            raise UserError("--stride must be > 0 seconds")
        pre = dataclasses.replace(pre, stride_s=float(args.stride))
    dim = int(getattr(encoder, "embed_dim"))
    res = embed_file(args.input, args.out, NormalizedEncoder(encoder, pre.normalization).eval(), pre, units, dim,
                     chunk_rows=args.chunk_rows, batch_size=args.batch_size, fmt=args.fmt, tz=args.tz,
                     calibration=calibration)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(res["skipped"].items())) or "none"
    print(f"wrote {args.out}: {res['windows']} windows x {dim} dims (without embedding: {skipped})")
    return 0
