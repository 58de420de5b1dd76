"""Streams FILE.csv|FILE.parquet (header time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z) or a device file (by extension
or --format; units, rate and start time from the file) through the bundle's preprocessing and model with bounded
memory. Writes one row per window (start, end, status, label, per-class probabilities); gaps, rows with missing values
and windows failing quality checks are rows marked with their status and no label. A summary is printed and written
beside the output as <out>.summary.json. Outputs are never inputs: an output that is the recording or a bundle file
(also through a symlink or hard link) is refused, and existing outputs are replaced only with --force. With --start
(or epoch times in the file) rows get an ISO 8601 timestamp in --tz; windows while the device is not worn (van Hees et
al. 2013) get status nonwear; --report DIR adds daily/hourly summaries and a self-contained report.html. Many
recordings (--input a folder, a glob or a list file; --out a folder) are a study: --workers, resumable, --shard i/K.
"""

from __future__ import annotations

import argparse

from crossmodal_har.commands._args.recording import (CLINICAL_KEYS, STUDY_KEYS, UNIT_KEYS, add_clinical_arguments,
                                                add_study_arguments, add_unit_arguments)

NAME = "predict"
HELP = "classify a (days-long) recording with a bundle"
DESCRIPTION = __doc__
CONFIG_KEYS = {"stride": "stride_s", **UNIT_KEYS, **CLINICAL_KEYS, **{k: k for k in (  # flag -> PredictConfig key
    "model", "input", "format", "out", "smooth", "timeline", "runtime", "onnx", "chunk_rows", "batch_size", "threads",
    "device", "precision", "force", "strict")}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from crossmodal_har.commands._args.flags import add_device_flag, add_progress_flag, add_threads_flag
    from crossmodal_har.signals.devices import DEFAULT_CHUNK_SAMPLES, READERS, TABLE_FORMATS  # light: the registry

    formats = sorted(READERS) + list(TABLE_FORMATS)
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="classifier bundle directory")
    p.add_argument("--input", required=True, metavar="FILE|DIR|GLOB|LIST", help="recording: .csv, .parquet or a device "
                   "file (" + ", ".join(f"{n} {'/'.join(r.suffixes)}" for n, r in READERS.items()) + "); or a study: "
                   "a folder, a quoted glob or a list file (.txt) of them")
    p.add_argument("--format", default=None, choices=formats, metavar="NAME",
                   help="recording format when the extension does not say (" + ", ".join(formats) + ")")
    p.add_argument("--out", required=True, metavar="FILE.csv|DIR", help="predictions CSV to write (a study: a folder)")
    add_unit_arguments(p)
    p.add_argument("--stride", type=float, metavar="S", help="seconds between window starts (default: the bundle's)")
    p.add_argument("--smooth", default="0", metavar="N|majority[:N]|hmm",
                   help="N or majority:N: majority filter over N consecutive ok windows (majority = 5; "
                        "0 = off); hmm: Viterbi with the bundle's transition matrix (train-classifier)")
    p.add_argument("--timeline", default=None, metavar="PNG", help="also draw activity over time")
    p.add_argument("--runtime", choices=("auto", "torch", "onnx"), default="auto", help="auto (default): ONNX "
                   "Runtime with MODEL_DIR/model.onnx (train-classifier, export) or --onnx, fp32 on CPU; else torch")
    p.add_argument("--onnx", default=None, metavar="FILE.onnx", help="exported model for --runtime onnx")
    p.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_SAMPLES, metavar="N",
                   help="input rows read at once (memory; results do not depend on it)")
    p.add_argument("--batch-size", type=int, metavar="N", help="windows per model call (default: 64 onnx, 256 torch)")
    add_device_flag(p)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: torch autocast to "
                   "bfloat16 where supported (labels agreed with fp32 on 99.9 %% of windows); default fp32")
    add_threads_flag(p)
    add_progress_flag(p)
    add_clinical_arguments(p)
    add_study_arguments(p)


def run(args: argparse.Namespace) -> int:
    from crossmodal_har.commands._args.flags import config_flags
    from crossmodal_har.infer.malloc import keep_freed_blocks
    from crossmodal_har.infer.study import predict_any

    keep_freed_blocks()  # this process streams recordings until it exits (a study's workers: their own)
    flags = {**config_flags(args, CONFIG_KEYS), "nonwear.enabled": args.nonwear == "on"}
    result = predict_any(flags, config_flags(args, STUDY_KEYS),  # one recording, or a study
                         progress=False if args.no_progress else None)
    print(result.text())
    result.check_complete()  # damaged parts left out, a recording of a study failed: exit status 3
    return 0
