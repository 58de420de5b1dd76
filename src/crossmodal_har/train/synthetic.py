"""Synthetic paired IMU + video windows whose two sides are functions of one shared latent.

For engine tests and benchmarks without a simulator or a store. Each window draws a latent
``z = centre[class] + spread * noise``; the IMU window is a sum of sinusoids (0.5–4 Hz) whose
per-channel amplitudes are a fixed random linear function of ``z`` (plus random phase and sensor
noise; units nominally g and rad/s), and the "video" is either an embedding ``tanh(P z)`` plus noise
(like a frozen encoder's output) or tiny uint8 frames whose coloured grid cells encode ``z``.
With ``shuffle_pairs`` the video rows are permuted across windows: nothing to learn (the control).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from crossmodal_har.config import to_dict
from crossmodal_har.pairs.store import ShardData, write_shard
from crossmodal_har.pairs.store_file import write_store_json
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.splits import SplitConfig, subject_split
from crossmodal_har.train.data import ArrayPairs, PairedData


@dataclass
class SyntheticSource:
    """A picklable data source (see :mod:`crossmodal_har.train.data`) of synthetic pairs.

    Attributes:
        subjects: number of subjects (windows are split subject-disjointly).
        windows_per_subject: windows per subject.
        classes: number of activity classes (labels for the zero-shot classification).
        latent_dim: size of the shared latent.
        video_kind: ``embeddings``, ``frames`` or ``frame_embeddings`` (per-frame embeddings
            [K, D] whose mean over frames is one "appearance" vector per window, unrelated to the
            IMU: the shared latent lives only in the frame-to-frame changes, as egomotion does).
        video_dim: embedding size D (embeddings, frame_embeddings).
        num_frames, frame_size: K and H = W (frames).
        window: IMU samples per window; rate_hz: sampling rate (Hz).
        spread: within-class spread of the latent (0 = every window of a class identical).
        noise: IMU sensor noise (std, in units of the signal amplitude).
        shuffle_pairs: permute video across windows (breaks the pairing).
        seed: data seed.
        split: a ``SplitConfig``; default: 1 val and 1 test subject.
    """

    subjects: int = 6
    windows_per_subject: int = 64
    classes: int = 4
    latent_dim: int = 8
    video_kind: str = "embeddings"
    video_dim: int = 32
    num_frames: int = 2
    frame_size: int = 32
    window: int = 250
    rate_hz: float = 50.0
    spread: float = 0.8
    noise: float = 0.1
    shuffle_pairs: bool = False
    seed: int = 0
    split: Optional[object] = None

    def arrays(self):
        """``(imu [N, W, 6] float32, video, labels [N], subjects [N])``."""
        rng = np.random.default_rng(self.seed)
        n = self.subjects * self.windows_per_subject
        centres = rng.normal(size=(self.classes, self.latent_dim))
        labels = rng.integers(0, self.classes, size=n)
        z = centres[labels] + self.spread * rng.normal(size=(n, self.latent_dim))
        subjects = np.repeat([f"s{i:02d}" for i in range(self.subjects)], self.windows_per_subject)
        # IMU: 6 channels x 4 frequencies, amplitudes linear in z
        freqs = np.array([0.5, 1.0, 2.0, 4.0])
        mix = rng.normal(size=(self.latent_dim, 6 * len(freqs))) / np.sqrt(self.latent_dim)
        amp = (z @ mix).reshape(n, 6, len(freqs))
        t = np.arange(self.window) / self.rate_hz
        # a fixed phase per frequency plus a little jitter: amplitude signs stay recoverable
        phase = rng.uniform(0, 2 * np.pi, size=(1, 1, len(freqs))) + 0.3 * rng.normal(size=(n, 1, len(freqs)))
        waves = np.sin(2 * np.pi * freqs[None, None, :] * t[None, :, None] + phase)  # [n, W, F]
        imu = np.einsum("ntf,ncf->ntc", waves, amp)
        imu += self.noise * rng.normal(size=imu.shape)
        imu[..., 2] += 1.0  # gravity on acc_z (g)
        imu = imu.astype(np.float32)
        if self.video_kind == "embeddings":
            proj = rng.normal(size=(self.latent_dim, self.video_dim)) / np.sqrt(self.latent_dim)
            video = np.tanh(z @ proj) + 0.05 * rng.normal(size=(n, self.video_dim))
            video = video.astype(np.float16)
        elif self.video_kind == "frames":
            cells = 4
            proj = rng.normal(size=(self.latent_dim, cells * cells * 3)) / np.sqrt(self.latent_dim)
            grid = 1.0 / (1.0 + np.exp(-(z @ proj)))  # [n, 48] in (0, 1)
            grid = grid.reshape(n, cells, cells, 3)
            rep = self.frame_size // cells
            img = np.repeat(np.repeat(grid, rep, axis=1), rep, axis=2)  # [n, H, W, 3]
            frames = np.repeat(img[:, None], self.num_frames, axis=1)
            frames = frames + 0.03 * rng.normal(size=frames.shape)
            video = np.clip(frames * 255.0, 0, 255).astype(np.uint8)
        elif self.video_kind == "frame_embeddings":
            proj = rng.normal(size=(self.latent_dim, self.video_dim)) / np.sqrt(self.latent_dim)
            motion = np.tanh(z @ proj)  # [n, D]
            appearance = 2.0 * rng.normal(size=(n, 1, self.video_dim))  # per window, the same in every frame
            k = self.num_frames + self.num_frames % 2  # even K: the alternating part averages to 0
            sign = np.where(np.arange(k) % 2 == 0, 1.0, -1.0)[None, :, None]
            video = appearance + sign * motion[:, None, :] + 0.05 * rng.normal(size=(n, k, self.video_dim))
            video = video.astype(np.float16)
        else:
            raise ValueError(f"video_kind must be embeddings|frames|frame_embeddings, got {self.video_kind!r}")
        if self.shuffle_pairs:
            video = video[rng.permutation(n)]
        return imu, video, labels.astype(np.int64), subjects

    def load(self) -> PairedData:
        imu, video, labels, subjects = self.arrays()
        names = sorted(set(subjects))
        split_cfg = self.split or SplitConfig(val_subjects=names[-2:-1], test_subjects=names[-1:])
        parts = subject_split(names, split_cfg, allow_fewer=True).subjects

        def ds(group):
            if not parts[group]:
                return None
            idx = np.flatnonzero(np.isin(subjects, parts[group]))
            return ArrayPairs(imu, video, labels, subjects, idx)

        per_frame = self.video_kind == "frame_embeddings"
        return PairedData(
            train=ds("train"), val=ds("val"), test=ds("test"), video_kind="embeddings" if per_frame else self.video_kind,
            video_dim=self.video_dim if self.video_kind != "frames" else None,
            num_frames=int(video.shape[1]) if self.video_kind == "frames" or per_frame else None,
            preprocess=PreprocessConfig(rate_hz=self.rate_hz, window_s=self.window / self.rate_hz),
            split=parts, meta={"source": "synthetic", "shuffle_pairs": self.shuffle_pairs,
                               "class_names": [f"c{i}" for i in range(self.classes)]},
        )


def write_synthetic_store(path: str, source: SyntheticSource, shard_windows: int = 256) -> str:
    """Write ``source``'s windows as a window store (``crossmodal_har.pairs.store`` layout), one
    session per subject, so store-reading code paths can be tested without simulating video."""
    import pandas as pd  # lazy: only the store writer needs pandas, not the in-memory source

    imu, video, labels, subjects = source.arrays()
    classes = [f"c{i}" for i in range(source.classes)]
    window_s = source.window / source.rate_hz
    pre = PreprocessConfig(rate_hz=source.rate_hz, window_s=window_s, stride_s=window_s)
    shards = []
    for s in sorted(set(subjects)):
        rows = np.flatnonzero(subjects == s)
        for c, start in enumerate(range(0, len(rows), shard_windows)):
            r = rows[start:start + shard_windows]
            t0 = np.arange(start, start + len(r)) * window_s
            k = video.shape[1] if video.ndim in (3, 5) else source.num_frames
            times = t0[:, None] + (np.arange(k)[None, :] + 0.5) * window_s / k
            manifest = pd.DataFrame({"session": s, "subject": s, "start_s": t0, "end_s": t0 + window_s,
                                     "label": [classes[i] for i in labels[r]], "flags": ""})
            name = f"{s}-{c:04d}"
            write_shard(path, name, ShardData(imu=imu[r], video=video[r], frame_times=times, manifest=manifest))
            shards.append({"name": name, "n": int(len(r)), "session": s, "chunk": c})
    frames_mode = source.video_kind == "frames"
    per_frame = source.video_kind == "frame_embeddings"
    meta = {"layout": "synthetic", "preprocess": to_dict(pre),
            "video_mode": "frames" if frames_mode else "embeddings",
            "video_encoder": None if frames_mode else "synthetic", "video_encoder_weights": None,
            "embedding_layout": "frames" if per_frame else None,
            "frames": int(video.shape[1]) if frames_mode or per_frame else 1, "frames_per_slot": 1,
            "size": source.frame_size, "embed_dim": None if frames_mode else source.video_dim,
            "class_names": classes}
    write_store_json(path, meta, shards)
    return path
