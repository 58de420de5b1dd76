"""IMU-only masked autoencoder: shares the encoder's weights, learns, and saves as a plain encoder."""

from __future__ import annotations

import math

import pytest
import torch

from crossmodal_har.errors import ConfigError
from crossmodal_har.models.encoder_file import load_encoder, save_encoder
from crossmodal_har.models.mae import ImuMaskedAutoencoder
from crossmodal_har.models.registry import create_model


def _sines(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(250, dtype=torch.float32) / 50.0
    f = 0.5 + 2.5 * torch.rand(n, 1, 6, generator=g)
    ph = 2 * math.pi * torch.rand(n, 1, 6, generator=g)
    return torch.sin(2 * math.pi * f * t[None, :, None] + ph)


def test_mae_shares_encoder_modules_and_masks_forty_percent():
    enc = create_model("patchtst-tiny")
    mae = ImuMaskedAutoencoder(enc)
    assert mae.pretrain.model.encoder is enc.backbone.encoder
    assert mae.pretrain.model.scaler is enc.backbone.scaler
    out = mae(_sines(4), return_outputs=True)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    # 15 patches per channel, int(15 * 0.6) = 9 kept -> 6 masked
    masked = mae.pretrain.model.masking(torch.zeros(4, 6, 15, 16))[1]
    assert masked.sum(-1).eq(6).all()
    # every encoder parameter that trains receives a gradient through the MAE loss
    mae(_sines(4)).backward()
    missing = [k for k, p in enc.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def _levels(n=64, seed=0):
    """Each channel holds a random level plus small noise: a masked patch is predictable from the
    visible patches of its channel, but not without looking at them (its level is random)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, generator=g) + 0.05 * torch.randn(n, 250, 6, generator=g)


def test_mae_learns_and_saves_as_a_normal_encoder(tmp_path):
    torch.manual_seed(0)
    enc = create_model("patchtst-tiny")
    mae = ImuMaskedAutoencoder(enc)
    x = _levels()
    opt = torch.optim.Adam(mae.parameters(), lr=1e-2)
    torch.manual_seed(1)
    with torch.no_grad():
        first = sum(mae(x).item() for _ in range(5)) / 5
    for _ in range(30):
        opt.zero_grad()
        mae(x).backward()
        opt.step()
    with torch.no_grad():
        last = sum(mae(x).item() for _ in range(5)) / 5
    assert last < 0.2 * first, (first, last)

    save_encoder(mae.encoder, tmp_path, {"normalization": "zscore"}, extra={"method": "imu-mae"})
    loaded, meta = load_encoder(tmp_path)
    assert meta["model"] == "patchtst-tiny"
    enc.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x[:4]), enc(x[:4]))


def test_mae_rejects_non_patchtst_and_bad_ratio():
    with pytest.raises(ConfigError, match="PatchTST"):
        ImuMaskedAutoencoder(create_model("convgru-tiny"))
    with pytest.raises(ConfigError, match="mask_ratio"):
        ImuMaskedAutoencoder(create_model("patchtst-tiny"), mask_ratio=1.0)
    assert isinstance(ImuMaskedAutoencoder.from_name("patchtst-tiny").encoder, torch.nn.Module)
