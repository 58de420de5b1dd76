"""Decode each video once, cut IMU windows with the signal layer, pair each window with K frames (or a frozen
encoder's embedding) and write a sharded, memory-mapped window store. Resumable: re-run the same command after an
interruption. Exit status 3 when some sessions failed (see STORE/report.json). With --merge STORE... --out STORE, join
stores made on several machines.
"""

from __future__ import annotations

import argparse

NAME = "ingest"
HELP = "cut paired IMU + video into a window store"
DESCRIPTION = __doc__
# flag -> IngestConfig key (--frames/--size: None = the video encoder's, or 10 frames of 64 px)
CONFIG_KEYS = {**{k: f"source.{k}" for k in ("ego4d_json", "imu_dir", "video_dir", "imu_offset_s", "imu_site")}, **{k: k for k in (
    "layout", "video_mode", "video_encoder", "video_encoder_weights", "embedding_layout", "frames", "frames_per_slot",
    "size", "shard_size", "num_shards", "shard_index", "min_imu_coverage")}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from crossmodal_har.commands._args.flags import add_source_flags, add_overrides_flag, add_progress_flag, add_threads_flag

    p.add_argument("--layout", choices=("paired", "ego4d", "gopro"), default="paired", help="source layout (default: paired)")
    p.add_argument("--src", help="source directory")
    p.add_argument("--out", required=True, help="store directory to write")
    p.add_argument("--merge", nargs="+", metavar="STORE", help="merge these stores into --out (no ingestion)")
    p.add_argument("--video-mode", choices=("frames", "embeddings", "none"), default="frames", help="store uint8 frames "
                   "(default), float16 embeddings of a frozen video encoder, or none (IMU windows only)")
    p.add_argument("--video-encoder", help="registry name of the video encoder (embeddings mode), e.g. videomae-tiny")
    p.add_argument("--video-encoder-weights", metavar="DIR_OR_HUB_ID",
                   help="pretrained weights for the video encoder (a local directory; a hub id needs --allow-download)")
    p.add_argument("--allow-download", action="store_true", help="allow fetching --video-encoder-weights from the hub")
    p.add_argument("--embedding-layout", choices=("pooled", "frames"), default="pooled",
                   help="embeddings mode: one pooled vector per window (default) or per-frame features [K, D] "
                        "for a trainable temporal head (a frame encoder, e.g. efficientnet-lite0)")
    p.add_argument("--frames", type=int, help="K frames per window (default 10; embeddings mode: the encoder's num_frames)")
    p.add_argument("--frames-per-slot", type=int, default=1, help="J frames per slot, for jitter (frames mode; default 1)")
    p.add_argument("--size", type=int, help="frame side in pixels after resize + centre crop (default 64; embeddings: "
                   "the encoder's)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, one video each at a time (default 1)")
    add_threads_flag(p)
    p.add_argument("--num-shards", type=int, default=1, help="split sessions across this many machines")
    p.add_argument("--shard-index", type=int, default=0, help="this machine's part, 0..num-shards-1")
    p.add_argument("--shard-size", type=int, default=0, help="most windows per store shard (default 0: ~256 MiB of frames)")
    p.add_argument("--min-imu-coverage", type=float, default=0.5, help="a session whose IMU overlaps less than this "
                   "fraction of its video is an error (default 0.5)")
    p.add_argument("--preprocess", metavar="FILE", help="YAML/JSON file with PreprocessConfig keys")
    add_overrides_flag(p, "window_s=5", what="a preprocess key")
    add_source_flags(p)
    add_progress_flag(p)


def run(args: argparse.Namespace) -> int:
    from crossmodal_har.commands._args.flags import config_flags
    from crossmodal_har.io import guard_output_dir
    from crossmodal_har.pairs.ingest import build_ingest_config, ingest, partial_error
    from crossmodal_har.pairs.store_merge import merge_into

    guard_output_dir(("--out", args.out), [("--src", args.src), *(("--merge", m) for m in args.merge or [])])
    if args.merge:
        merge_into(args.merge, args.out, src=args.src)
        return 0
    cfg = build_ingest_config(config_flags(args, CONFIG_KEYS), preprocess_file=args.preprocess,
                              overrides=args.overrides, allow_download=args.allow_download)
    report = ingest(args.src, args.out, cfg, workers=max(1, args.workers), allow_download=args.allow_download,
                    progress=False if args.no_progress else None)
    if report["partial"]:
        raise partial_error(report, args.out)
    return 0
