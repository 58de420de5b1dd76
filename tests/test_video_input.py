"""The video tower's ``video_input`` option: what the backbone sees of the frames."""

import pytest
import torch

from crossmodal_har.errors import ConfigError
from crossmodal_har.models.registry import create_model
from crossmodal_har.models.video_common import frame_input
from crossmodal_har.train.config import load_pretrain_config
from crossmodal_har.train.methods import build_method


def _pixels(b=2, k=4, s=8):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, k, 3, s, s, generator=g)


def test_rgb_is_identity():
    x = _pixels()
    assert torch.equal(frame_input(x, "rgb"), x)


def test_diff_is_consecutive_differences_with_first_repeated():
    x = _pixels()
    y = frame_input(x, "diff")
    assert y.shape == x.shape
    for t in range(1, x.shape[1]):
        assert torch.allclose(y[:, t], x[:, t] - x[:, t - 1])
    assert torch.allclose(y[:, 0], x[:, 1] - x[:, 0])


def test_diff_removes_a_static_scene():
    still = _pixels(k=1).expand(2, 6, 3, 8, 8)
    assert torch.count_nonzero(frame_input(still, "diff")) == 0
    assert torch.count_nonzero(frame_input(still, "rgb")) > 0


def test_gray_and_gray_diff():
    x = _pixels()
    g = frame_input(x, "gray")
    assert torch.allclose(g[:, :, 0], x.mean(dim=2)) and torch.equal(g[:, :, 0], g[:, :, 2])
    gd = frame_input(x, "gray_diff")
    assert torch.allclose(gd[:, 2, 1], x[:, 2].mean(dim=1) - x[:, 1].mean(dim=1))


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        frame_input(_pixels(), "flow")
    with pytest.raises(ValueError):
        frame_input(_pixels(k=1), "diff")


def _tiny(video_input):
    torch.manual_seed(0)
    return create_model("videomae-tiny", num_frames=4, video_input=video_input).eval()


def test_videomae_option_changes_what_the_backbone_sees():
    frames = torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8)
    rgb, diff = _tiny("rgb"), _tiny("diff")
    diff.load_state_dict(rgb.state_dict())  # same weights: only the input differs
    with torch.no_grad():
        a, b = rgb(frames), diff(frames)
        still = frames[:, :1].expand(2, 4, 32, 32, 3).contiguous()
        # a still clip: every diff input is zero, so two different still scenes embed the same
        other = torch.randint(0, 256, (2, 1, 32, 32, 3), dtype=torch.uint8).expand(2, 4, 32, 32, 3).contiguous()
        assert torch.allclose(diff(still), diff(other), atol=1e-5)
        assert not torch.allclose(rgb(still), rgb(other), atol=1e-3)
    assert not torch.allclose(a, b)
    assert rgb.model_cfg["video_input"] == "rgb" and diff.model_cfg["video_input"] == "diff"


def test_videomae_rejects_unknown_video_input():
    with pytest.raises(ConfigError):
        create_model("videomae-tiny", video_input="flow")


@pytest.mark.parametrize("config", ["siglip-tiny", "clip-tiny"])
def test_tiny_configs_default_to_a_frozen_tower_on_frame_differences(config):
    info = {"video_kind": "frames", "video_dim": None, "num_frames": 10, "window": 250,
            "preprocess": {"normalization": "none"}}
    method = build_method(load_pretrain_config(config), info)
    assert method.video_frozen and method.video_encoder.cfg.video_input == "diff"
    assert not any(p.requires_grad for p in method.video_encoder.parameters())
    # the option can be turned back to the old end-to-end RGB tower
    old = build_method(load_pretrain_config(config, ["video_mode=trainable", "video_encoder_overrides.video_input=rgb"]), info)
    assert not old.video_frozen and old.video_encoder.cfg.video_input == "rgb"
