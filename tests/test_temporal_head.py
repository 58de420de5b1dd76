"""Per-frame video embeddings ([K, D] per window) and the trainable temporal head over them:
ingestion stores what the frame encoder gives per frame, and pretraining learns from the
frame-to-frame changes (with a shuffled-pairs control and a head that cannot see time)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crossmodal_har.cli import main
from crossmodal_har.models.heads import TemporalHead
from crossmodal_har.pairs.store import PairedWindowDataset, WindowStore
from crossmodal_har.train.synthetic import SyntheticSource, write_synthetic_store
from helpers.sessions import make_session

FPS = 12


def test_temporal_head_shapes_and_order_sensitivity():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 20)
    head = TemporalHead(20, hidden=16)
    assert head(x).shape == (4, 16)
    perm = x[:, torch.randperm(6)]
    assert not torch.allclose(head(x), head(perm), atol=1e-4)  # it sees frame order
    pooled = TemporalHead(20, hidden=16, layers=0, motion=False)  # a plain mean: order-blind
    torch.testing.assert_close(pooled(x), pooled(perm), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="per-frame features"):
        head(torch.randn(4, 20))


def test_per_frame_ingest_matches_the_encoder_frame_by_frame(tmp_path):
    from crossmodal_har.pairs.video_encoder import create_video_encoder, embed_frames

    src = tmp_path / "src"
    make_session(src, "a", seconds=8, fps=FPS)
    base = ["-q", "ingest", "--src", str(src), "--no-progress", "--video-mode", "embeddings",
            "--video-encoder", "efficientnet-tiny"]
    assert main([*base, "--out", str(tmp_path / "pf"), "--embedding-layout", "frames"]) == 0
    assert main([*base, "--out", str(tmp_path / "pooled")]) == 0
    enc = create_video_encoder("efficientnet-tiny")
    pf, pooled = WindowStore(tmp_path / "pf"), WindowStore(tmp_path / "pooled")
    assert pf.meta["embedding_layout"] == "frames" and pooled.meta["embedding_layout"] is None
    assert pf.video.shape == (len(pf), enc.num_frames, enc.embed_dim) and pf.video.dtype == np.float16
    assert pooled.video.shape == (len(pf), enc.embed_dim)
    # the pooled embedding is the mean of the per-frame ones (this encoder pools by mean)
    np.testing.assert_allclose(pf.video[:].astype(np.float32).mean(axis=1), pooled.video[:].astype(np.float32),
                               atol=2e-2, rtol=2e-2)
    assert main(["-q", "ingest", "--src", str(src), "--no-progress", "--out", str(tmp_path / "fr"),
                 "--size", str(enc.input_size), "--frames", str(enc.num_frames)]) == 0
    frames = WindowStore(tmp_path / "fr").video[:]
    np.testing.assert_allclose(pf.video[:].astype(np.float32),
                               embed_frames(enc, frames, per_frame=True).astype(np.float32), atol=2e-2, rtol=2e-2)
    assert PairedWindowDataset(pf)[0]["video"].shape == (enc.num_frames, enc.embed_dim)
    # stores of different layouts do not merge
    assert main(["-q", "ingest", "--merge", str(tmp_path / "pf"), str(tmp_path / "pooled"),
                 "--out", str(tmp_path / "m")]) == 2


def test_per_frame_layout_needs_a_frame_encoder(tmp_path, capsys):
    src = tmp_path / "src"
    make_session(src, "a", seconds=6, fps=FPS)
    code = main(["-q", "ingest", "--src", str(src), "--no-progress", "--out", str(tmp_path / "x"),
                 "--video-mode", "embeddings", "--video-encoder", "videomae-tiny", "--embedding-layout", "frames"])
    err = capsys.readouterr().err.strip()
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1 and "per-frame" in errors[0], err
    assert main(["-q", "ingest", "--src", str(src), "--no-progress", "--out", str(tmp_path / "y"),
                 "--embedding-layout", "frames"]) == 2  # frames mode has no embedding layout


def _retrieval(tmp_path, name, shuffle=False, *sets):
    store = write_synthetic_store(str(tmp_path / f"store-{name}"), SyntheticSource(
        subjects=6, windows_per_subject=64, video_kind="frame_embeddings", num_frames=6, shuffle_pairs=shuffle))
    run = tmp_path / f"run-{name}"
    args = ["-q", "pretrain", "--config", "siglip-tiny", "--store", store, "--out", str(run), "--no-progress",
            "--set", "epochs=15"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    assert main(["-q", "zeroshot", "--run", str(run), "--store", store, "--out", str(tmp_path / f"zs-{name}")]) == 0
    return json.loads((tmp_path / f"zs-{name}" / "results.json").read_text())["retrieval"]["imu_to_video"]


@pytest.mark.slow
def test_temporal_head_learns_from_frame_changes_with_controls(tmp_path):
    """The synthetic video's per-window mean is appearance noise; the IMU's latent is only in the
    alternating frame-to-frame part. The temporal head finds it; the same run on shuffled pairs and a
    head that only averages frames (no motion, no temporal convolution) stay near chance."""
    real = _retrieval(tmp_path, "real")
    assert real["R@1"] >= 5 * real["chance_R@1"], real
    for name, shuffle, sets in (("shuffled", True, ()),
                                ("mean-only", False, ("temporal_head.layers=0", "temporal_head.motion=false"))):
        m = _retrieval(tmp_path, name, shuffle, *sets)
        p = m["chance_R@1"]
        assert m["R@1"] <= p + 3 * np.sqrt(p * (1 - p) / m["n"]), (name, m)


def test_imu2clip_on_per_frame_embeddings_reads_the_middle_frame_frozen():
    from crossmodal_har.config import from_dict, to_dict
    from crossmodal_har.signals.types import PreprocessConfig
    from crossmodal_har.train.config import PretrainConfig
    from crossmodal_har.train.methods import build_method

    info = {"video_kind": "embeddings", "video_dim": 12, "num_frames": 5, "window": 250,
            "preprocess": to_dict(PreprocessConfig())}
    video = torch.randn(3, 5, 12)
    m = build_method(from_dict(PretrainConfig, {"method": "imu2clip", "imu_encoder": "convgru-tiny"}), info)
    assert m.video_temporal is None
    torch.testing.assert_close(m.video_features(video), video[:, 2])
    mean3 = build_method(from_dict(PretrainConfig, {"method": "imu2clip", "imu_encoder": "convgru-tiny",
                                                    "clip_frames": "mean3"}), info)
    torch.testing.assert_close(mean3.video_features(video), video[:, [0, 2, 4]].mean(dim=1))
    sig = build_method(from_dict(PretrainConfig, {"method": "siglip", "imu_encoder": "patchtst-tiny"}), info)
    assert sig.video_temporal is not None and sig.video_features(video).shape == (3, sig.video_temporal.out_dim)
