"""Streams FILE through the same preprocessing and windows as 'predict' and writes the encoder's embedding of every
window that passes the quality checks. --out FILE.parquet (columns start, end, e0..) or FILE.npy (float64 [N, 2 + D]:
start, end, embedding). An --out that is the recording or a model file (also through a symlink or hard link) is
refused; an existing --out is replaced only with --force.
"""

from __future__ import annotations

import argparse

from crossmodal_har.commands._args.recording import UNIT_KEYS, add_unit_arguments

NAME = "embed"
HELP = "per-window embeddings of a recording"
DESCRIPTION = __doc__
# flag -> EmbedConfig key
CONFIG_KEYS = {"fmt": "format", "stride": "stride_s", "calibrate": "calibration.mode", **UNIT_KEYS, **{k: k for k in (
    "model", "encoder", "input", "out", "tz", "chunk_rows", "batch_size", "device", "force")}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from crossmodal_har.commands._args.flags import add_device_flag, add_threads_flag
    from crossmodal_har.signals.devices import DEFAULT_CHUNK_SAMPLES, READERS, TABLE_FORMATS  # light: the registry

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="MODEL_DIR", help="classifier bundle (its encoder is used)")
    src.add_argument("--encoder", metavar="RUN_DIR", help="encoder/run directory with encoder.json")
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
                   help="autocalibration against gravity, as in 'predict' (default auto: the windows predict "
                        "classifies); off")
    p.add_argument("--stride", type=float, default=None, metavar="S", help="seconds between window starts")
    p.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_SAMPLES, metavar="N")
    p.add_argument("--batch-size", type=int, default=256, metavar="N")
    add_device_flag(p)
    add_threads_flag(p)
    p.add_argument("--force", action="store_true", help="replace an existing --out (never an input)")


def run(args: argparse.Namespace) -> int:
    from crossmodal_har.commands._args.flags import config_flags
    from crossmodal_har.config import build_config
    from crossmodal_har.infer.embed import EmbedConfig, run_embed

    print(run_embed(build_config(EmbedConfig, flags=config_flags(args, CONFIG_KEYS), where="embed")).text())
    return 0
