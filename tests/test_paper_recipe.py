"""The paper's recipe (configs/paper/siglip-paper-recipe.yaml): it loads, validates and builds its IMU
tower from a local copy of the checkpoint it names, with no network."""

from pathlib import Path

import pytest
import torch

from crossmodal_har.errors import UserError
from crossmodal_har.models.registry import create_model
from crossmodal_har.train.config import load_pretrain_config, resolve_config_path
from crossmodal_har.train.methods import build_encoder

NAME = "paper/siglip-paper-recipe"


def test_paper_recipe_loads_and_validates():
    cfg = load_pretrain_config(NAME)
    assert (cfg.method, cfg.imu_encoder, cfg.imu_pretrained) == ("siglip", "patchtst", "namctin/patchtst_etth1_pretrain")
    assert (cfg.video_encoder, cfg.video_pretrained, cfg.video_mode) == ("videomae-base", "MCG-NJU/videomae-base-ssv2",
                                                                         "trainable")
    assert (cfg.epochs, cfg.batch_size, cfg.optim.lr, cfg.optim.final_lr) == (50, 32, 1e-4, 1e-7)
    assert cfg.allow_download is False  # never on by a config: the user passes --allow-download
    assert cfg.imu_encoder_overrides == {"scaling": "std"}  # transformers' default, as the official PatchTST
    text = resolve_config_path(NAME).read_text()
    assert "25" in text and "README" in text  # the official README's 25 epochs is said
    repo_cfg = Path(__file__).resolve().parents[1] / "configs" / "paper" / "siglip-paper-recipe.yaml"
    if repo_cfg.exists():
        assert load_pretrain_config(str(repo_cfg)) == cfg
    # the control beside it, as docs/scale.md runs it
    assert load_pretrain_config(NAME, ["split.shuffle_train_pairs=true"]).split.shuffle_train_pairs is True


def test_paper_recipe_imu_tower_needs_download_permission_or_a_local_dir(tmp_path):
    cfg = load_pretrain_config(NAME)
    shape = {"context_length": 250, **cfg.imu_encoder_overrides}
    with pytest.raises(UserError, match="allow-download"):
        build_encoder(cfg.imu_encoder, shape, cfg.imu_pretrained, cfg.allow_download, None)
    # a local directory holding the checkpoint (safetensors) loads offline: same weights, same output
    torch.manual_seed(0)
    ref = create_model(cfg.imu_encoder, **shape)
    ref.backbone.save_pretrained(tmp_path / "patchtst_etth1_pretrain", safe_serialization=True)
    local = load_pretrain_config(NAME, [f"imu_pretrained={tmp_path / 'patchtst_etth1_pretrain'}"])
    enc = build_encoder(local.imu_encoder, shape, local.imu_pretrained, local.allow_download, None)
    x = torch.randn(2, 250, 6)
    ref.eval(), enc.eval()
    torch.testing.assert_close(enc(x), ref(x))
