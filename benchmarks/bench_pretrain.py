"""Pretraining throughput: frozen cached video tower vs the end-to-end loop, side by side.

Both loops train the *same* IMU encoder, projection heads and SigLIP loss with AdamW, on the same
windows (5 s, 50 Hz IMU; 10 video frames per window):

* **frozen cached** (ours): windows read from a window store holding precomputed video embeddings
  (float16 [N, 768] memmap) through ``PairedWindowDataset`` + DataLoader; only the IMU side and the
  heads train.
* **end-to-end as the official code does it**: for every window of every batch, open the MP4 with
  PyAV, seek to the window start, decode until its end, pick 10 frames at the slot centres; then the
  video tower runs forward *and backward* every step.

Prints pairs/s of each and the ratio (goal >= 50x on a 2-core CPU). ``--quick`` runs a smaller,
cheaper video tower (the ratio is then a lower bound: decoding alone dominates).

    python benchmarks/bench_pretrain.py [--quick] [--video-encoder videomae-base] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_video(path: Path, seconds: float, size: int, fps: int, seed: int = 0) -> None:
    """A textured pattern drifting over time, H.264 with a 1 s GOP (easy on the end-to-end seeks)."""
    import av

    rng = np.random.default_rng(seed)
    tex = (rng.random((size * 2, size * 2, 3)) * 255).astype(np.uint8)
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width = st.height = size
        st.pix_fmt = "yuv420p"
        st.codec_context.gop_size = fps
        st.options = {"preset": "veryfast", "crf": "23"}
        for i in range(int(seconds * fps)):
            dx, dy = (i * 3) % size, (i * 2) % size
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(tex[dy:dy + size, dx:dx + size]), format="rgb24")
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)


def decode_window(path: Path, start_s: float, end_s: float, k: int) -> np.ndarray:
    """The official-code pattern: open, seek, decode the window's frames, keep k at slot centres."""
    import av

    centres = start_s + (np.arange(k) + 0.5) * (end_s - start_s) / k
    frames, times = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        c.seek(int(start_s / s.time_base), stream=s, backward=True, any_frame=False)
        for f in c.decode(s):
            t = float(f.pts * s.time_base)
            if t < start_s - 1e-6:
                continue
            if t > end_s:
                break
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(t)
    times = np.asarray(times)
    pick = [int(np.argmin(np.abs(times - c))) for c in centres]
    return np.stack([frames[i] for i in pick])


def build(imu_name: str, video_name, video_in: int, window: int, k: int):
    import torch

    from crossmodal_har.models.heads import ProjectionHead
    from crossmodal_har.models.losses import SigLipLoss
    from crossmodal_har.models.registry import create_model

    torch.manual_seed(0)
    imu = create_model(imu_name, context_length=window)
    video = create_model(video_name, num_frames=k) if video_name else None
    heads = torch.nn.ModuleDict({"imu": ProjectionHead(imu.embed_dim, 512),
                                 "video": ProjectionHead(video.embed_dim if video else video_in, 512)})
    loss = SigLipLoss(rank=0, world_size=1)
    mods = torch.nn.ModuleList([imu, heads, loss] + ([video] if video else []))
    opt = torch.optim.AdamW([p for p in mods.parameters() if p.requires_grad], lr=1e-4)
    return imu, video, heads, loss, opt


def train_step(imu_enc, video_enc, heads, loss_fn, opt, imu, video) -> float:
    import torch

    from crossmodal_har.signals.normalize import normalize_windows

    a = heads["imu"](imu_enc(normalize_windows(imu, "zscore")))
    v = heads["video"](video_enc(video) if video_enc is not None else video)
    loss = loss_fn(a, v)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
    opt.step()
    return float(loss.detach())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="videomae-tiny, fewer steps (ratio is a lower bound)")
    ap.add_argument("--imu-encoder", default="patchtst", help="IMU encoder, the same in both loops")
    ap.add_argument("--video-encoder", default=None, help="video tower of the end-to-end loop "
                    "(default videomae-base; --quick: videomae-tiny)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--e2e-steps", type=int, default=None, help="timed end-to-end steps (default 1; quick 2)")
    ap.add_argument("--frozen-steps", type=int, default=None, help="timed frozen steps (default 40; quick 20)")
    ap.add_argument("--size", type=int, default=224, help="video frame size, px (official: 224 after resize)")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader

    from crossmodal_har.pairs.store import PairedWindowDataset, WindowStore
    from crossmodal_har.train.synthetic import SyntheticSource, write_synthetic_store

    torch.set_num_threads(args.threads)
    video_name = args.video_encoder or ("videomae-tiny" if args.quick else "videomae-base")
    e2e_steps = args.e2e_steps or (2 if args.quick else 1)
    frozen_steps = args.frozen_steps or (20 if args.quick else 40)
    b, k, window, rate = args.batch_size, 10, 250, 50.0
    n_windows = max(b * (frozen_steps + 2), b * (e2e_steps + 1))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} threads; IMU encoder {args.imu_encoder}, batch {b}, {k} frames/window")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # ---- data: a store of cached 768-d embeddings, and an MP4 for the end-to-end loop
        src = SyntheticSource(subjects=1, windows_per_subject=n_windows, video_dim=768, window=window,
                              rate_hz=rate)
        store = WindowStore(write_synthetic_store(str(tmp / "store"), src))
        seconds = (e2e_steps + 1) * b * 2.5 + 10
        t0 = time.perf_counter()
        make_video(tmp / "clip.mp4", seconds, args.size, args.fps)
        print(f"made a {seconds:.0f} s {args.size}x{args.size} {args.fps} fps H.264 clip in "
              f"{time.perf_counter() - t0:.1f} s")

        # ---- frozen cached
        imu_enc, _, heads, loss_fn, opt = build(args.imu_encoder, None, 768, window, k)
        loader = DataLoader(PairedWindowDataset(store), batch_size=b, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(0))
        it = iter(loader)
        batch = next(it)
        train_step(imu_enc, None, heads, loss_fn, opt, batch["imu"], batch["video"])  # warm-up
        t0 = time.perf_counter()
        for _ in range(frozen_steps):
            batch = next(it)
            train_step(imu_enc, None, heads, loss_fn, opt, batch["imu"], batch["video"])
        frozen_s = time.perf_counter() - t0
        frozen_rate = frozen_steps * b / frozen_s
        print(f"frozen cached: {frozen_rate:.1f} pairs/s; now the end-to-end loop with {video_name} ...", flush=True)

        # ---- end-to-end: decode per window + video forward/backward every step
        imu_enc, video_enc, heads, loss_fn, opt = build(args.imu_encoder, video_name, 0, window, k)
        imu_all = np.asarray(store.imu[: (e2e_steps + 1) * b])
        decode_s = 0.0

        def e2e_batch(j: int):
            nonlocal decode_s
            t = time.perf_counter()
            frames = np.stack([decode_window(tmp / "clip.mp4", (j * b + i) * 2.5, (j * b + i) * 2.5 + 5.0, k)
                               for i in range(b)])
            decode_s += time.perf_counter() - t
            return torch.from_numpy(imu_all[j * b:(j + 1) * b]), torch.from_numpy(frames)

        if args.quick:  # warm-up step; with VideoMAE-base a step lasts minutes and warm-up is noise
            imu, frames = e2e_batch(0)
            train_step(imu_enc, video_enc, heads, loss_fn, opt, imu, frames)
        decode_s = 0.0
        t0 = time.perf_counter()
        for j in range(1, e2e_steps + 1):
            imu, frames = e2e_batch(j)
            train_step(imu_enc, video_enc, heads, loss_fn, opt, imu, frames)
        e2e_s = time.perf_counter() - t0
        e2e_rate = e2e_steps * b / e2e_s

    print(f"{'loop':44s} {'pairs/s':>10s} {'s/step':>8s}")
    print(f"{'frozen cached video tower (store embeddings)':44s} {frozen_rate:10.1f} {frozen_s / frozen_steps:8.3f}")
    print(f"{'end-to-end: PyAV decode per window + ' + video_name:44s} {e2e_rate:10.2f} {e2e_s / e2e_steps:8.3f}"
          f"   (decode {decode_s / e2e_s:.0%} of it)")
    ratio = frozen_rate / e2e_rate
    if args.quick and video_name != "videomae-base":
        print(f"ratio frozen/end-to-end: {ratio:.0f}x with {video_name} end to end (quick smoke run: a lower "
              "bound set by per-window decoding; the >= 50x goal is for the default run with videomae-base)")
    else:
        print(f"ratio frozen/end-to-end: {ratio:.0f}x (goal >= 50x) {'OK' if ratio >= 50 else 'BELOW GOAL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
