"""Ingestion benchmark: video frames/s of ingestion vs a bare PyAV decode loop on the same files,
and the time to ingest one hour of IMU-only data at 50 Hz.

    python benchmarks/bench_ingest.py [--videos 3 --seconds 60 --fps 30 --width 640 --height 360]

Goals (issue 3): ingestion >= 0.7x the bare decode loop's frames/s; one hour of IMU < 2 s.
Both loops decode with the same settings (FFmpeg frame/slice threads, ``thread_type="AUTO"``), one
video at a time (``--workers 1``). Each measurement is repeated (``--repeats``) and the best kept,
since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np


def make_video(path: Path, seconds: float, fps: int, width: int, height: int, codec: str, seed: int) -> int:
    """A moving textured scene (so the codec has real work), H.264 by default."""
    import av

    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 255, size=(height * 2, width * 2, 3), dtype=np.uint8)
    tex = ((tex.astype(np.float32) + np.roll(tex, 1, 0) + np.roll(tex, 1, 1)) / 3).astype(np.uint8)
    n = int(round(seconds * fps))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        st = out.add_stream(codec, rate=fps)
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.codec_context.time_base = Fraction(1, fps)
        if codec == "libx264":
            st.options = {"preset": "veryfast", "crf": "23"}
        for i in range(n):
            y = int(height / 2 * (1 + np.sin(i / 40)))
            x = int(width / 2 * (1 + np.cos(i / 55)))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(tex[y:y + height, x:x + width]), format="rgb24")
            frame.pts = i
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return n


def write_imu_csv(path: Path, seconds: float, rate: float, seed: int) -> None:
    import pandas as pd

    t = np.arange(int(round(seconds * rate))) / rate
    rng = np.random.default_rng(seed)
    x = 0.05 * rng.standard_normal((len(t), 6)) + np.sin(2 * np.pi * 1.7 * t)[:, None] * 0.3
    x[:, 2] += 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["time", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    pd.DataFrame(np.column_stack([t, x]), columns=cols).to_csv(path, index=False, float_format="%.6f")


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--codec", default="libx264")
    ap.add_argument("--size", type=int, default=64, help="stored frame side")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--imu-hours", type=float, default=1.0)
    ap.add_argument("--workdir", help="keep generated data here (default: a temporary directory)")
    args = ap.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    from crossmodal_har.config import from_dict
    from crossmodal_har.pairs.ingest import ingest
    from crossmodal_har.pairs.ingest_config import IngestConfig
    from crossmodal_har.pairs.video import decode_loop

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    results = {}
    try:
        # ---------------------------------------------------------------- video: ingest vs bare decode
        src = work / "paired"
        videos = []
        total_frames = 0
        t0 = time.perf_counter()
        for i in range(args.videos):
            d = src / f"session{i:02d}"
            v = d / "video.mp4"
            if not v.exists():
                make_video(v, args.seconds, args.fps, args.width, args.height, args.codec, seed=i)
                write_imu_csv(d / "imu.csv", args.seconds, 100.0, seed=i)
            videos.append(v)
        gen_s = time.perf_counter() - t0
        total_frames = sum(decode_loop(v) for v in videos)  # warm-up + the frame count

        def bare():
            for v in videos:
                decode_loop(v)

        def run_ingest():
            out = work / "store"
            shutil.rmtree(out, ignore_errors=True)
            cfg = from_dict(IngestConfig, {"frames": args.frames, "size": args.size})
            rep = ingest(src, out, cfg, workers=1, progress=False)
            assert rep["sessions_ok"] == args.videos, rep["errors"]
            results["windows"] = rep["windows_kept"]
            # ingestion stops decoding after the last window's last frame: count what it decoded too
            results["ingest_frames_decoded"] = sum(s["video"]["frames_decoded"] for s in rep["sessions"])

        # interleave so both see the same machine load
        t_bare, t_ing = [], []
        for _ in range(args.repeats):
            t_bare.append(best_of(bare, 1))
            t_ing.append(best_of(run_ingest, 1))
        fps_bare = total_frames / min(t_bare)
        fps_ing = total_frames / min(t_ing)
        results.update(video_frames=total_frames, video_seconds=args.videos * args.seconds,
                       resolution=f"{args.width}x{args.height}", codec=args.codec,
                       bare_decode_s=round(min(t_bare), 3), ingest_s=round(min(t_ing), 3),
                       bare_decode_fps=round(fps_bare, 1), ingest_fps=round(fps_ing, 1),
                       ingest_vs_bare=round(fps_ing / fps_bare, 3), data_generation_s=round(gen_s, 1))

        # ---------------------------------------------------------------- store: random-access reads
        from crossmodal_har.pairs.store import PairedWindowDataset

        ds = PairedWindowDataset(work / "store")
        order = np.random.default_rng(0).permutation(len(ds))
        reps = max(1, 2000 // len(ds))
        t0 = time.perf_counter()
        for _ in range(reps):
            for i in order:
                ds[int(i)]
        results["store_items_per_s"] = round(reps * len(ds) / (time.perf_counter() - t0), 1)

        # ---------------------------------------------------------------- IMU only: one hour at 50 Hz
        isrc = work / "imu_only"
        csv = isrc / "hour" / "imu.csv"
        if not csv.exists():
            write_imu_csv(csv, args.imu_hours * 3600, 50.0, seed=0)

        def run_imu():
            out = work / "imu_store"
            shutil.rmtree(out, ignore_errors=True)
            cfg = from_dict(IngestConfig, {"video_mode": "none"})
            rep = ingest(isrc, out, cfg, workers=1, progress=False)
            results["imu_windows"] = rep["windows_kept"]

        results["imu_hours"] = args.imu_hours
        results["imu_ingest_s"] = round(best_of(run_imu, args.repeats), 3)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    print(f"video: {results['video_frames']} frames ({results['resolution']} {results['codec']}, "
          f"{results['video_seconds']:.0f} s)")
    print(f"  bare PyAV decode loop : {results['bare_decode_fps']:8.1f} frames/s ({results['bare_decode_s']} s)")
    print(f"  ingestion (K={args.frames}, {args.size}px): {results['ingest_fps']:8.1f} frames/s "
          f"({results['ingest_s']} s, {results['windows']} windows)")
    print(f"  ratio                 : {results['ingest_vs_bare']:.2f}x  (goal >= 0.7x)")
    dec = results["ingest_frames_decoded"] / results["ingest_s"]
    print(f"  (ingestion decoded {results['ingest_frames_decoded']} of the frames: {dec:.1f} decoded frames/s, "
          f"{dec / results['bare_decode_fps']:.2f}x)")
    print(f"store: {results['store_items_per_s']} random-access items/s from PairedWindowDataset "
          f"(IMU [250, 6] + {args.frames} frames of {args.size}px each)")
    print(f"IMU only: {results['imu_hours']:g} h at 50 Hz ingested in {results['imu_ingest_s']} s "
          f"({results['imu_windows']} windows; goal < 2 s per hour)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
