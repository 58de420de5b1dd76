"""Issue 12, item 7 and the pretraining seed: --seed, global-batch BatchNorm under DDP, CLIP temperature
clamped after the step, imu-mae mask token and mean pooling."""

import math
from pathlib import Path

import pytest
import torch

from crossmodal_har.cli import main
from crossmodal_har.models.losses import ClipLoss
from crossmodal_har.train.config import load_pretrain_config
from crossmodal_har.train.engine import pretrain
from crossmodal_har.train.job import PretrainJob, run_job
from crossmodal_har.train.loggers import read_metrics
from crossmodal_har.train.methods import build_method
from crossmodal_har.train.rundir import data_info
from crossmodal_har.train.seeding import seed_everything
from crossmodal_har.train.synthetic import SyntheticSource


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(run_dir) / "model.safetensors"))


def _tiny(config="siglip-tiny", **kw):
    base = ["imu_encoder=patchtst-tiny", "embed_dim=16", "batch_size=16", "log_every_steps=1",
            "checkpoint_every_steps=100", "optim.lr=3e-3", "optim.final_lr=1e-5"]
    return load_pretrain_config(config, base + [f"{k}={v}" for k, v in kw.items()])


# --------------------------------------------------------------------------- pretrain --seed

def test_pretrain_seed_flag_sets_the_run_seed(tmp_path):
    sets = ["val_every_epochs=0", "imu_encoder=patchtst-tiny", "embed_dim=16"]
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        job = PretrainJob(config="siglip-tiny", synthetic=True, max_steps=2, overrides=sets, seed=seed)
        assert run_job(job, tmp_path / name, show_progress=False).config.seed == seed
    assert "seed: 2" in (tmp_path / "c" / "config.yaml").read_text()
    a, b, c = (_weights(tmp_path / n) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_seed_flag_maps_onto_the_config_through_build_config():
    assert load_pretrain_config("siglip-tiny", seed=5).seed == 5
    assert load_pretrain_config("siglip-tiny", ["seed=7"], seed=5).seed == 7  # --set wins over the flag
    assert load_pretrain_config("siglip-tiny", seed=None).seed == 0


# --------------------------------------------------------------------------- BatchNorm under DDP

@pytest.mark.ddp
@pytest.mark.slow
def test_two_process_ddp_with_batchnorm_matches_the_global_batch(tmp_path):
    """PatchTST's default norm_type batchnorm: statistics over the global batch (as one process)."""
    common = dict(max_steps=2, head_dropout=0.0, val_every_epochs=0)
    cfg = _tiny(batch_size=16, **common)
    assert cfg.imu_encoder_overrides.get("norm_type", "batchnorm") == "batchnorm"
    src = SyntheticSource(subjects=4, windows_per_subject=32)
    pretrain(cfg, src, tmp_path / "one", show_progress=False, accelerator="cpu")
    pretrain(_tiny(batch_size=8, **common), src, tmp_path / "two", show_progress=False, devices=2,
             accelerator="cpu")
    l1, l2 = read_metrics(tmp_path / "one")["train/loss"], read_metrics(tmp_path / "two")["train/loss"]
    assert abs(l1[1] - l2[1]) < 1e-5 and abs(l1[2] - l2[2]) < 1e-4
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert any("running_mean" in k for k in a)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-4, atol=1e-5), k


def test_batchnorm_conversion_keeps_parameters_and_state_keys():
    from crossmodal_har.train.distributed import GlobalBatchNorm, sync_batchnorm

    cfg = _tiny()
    src = SyntheticSource(subjects=3, windows_per_subject=16)
    model = build_method(cfg, data_info(src.load()))
    params = {id(p) for p in model.parameters()}
    keys = set(model.state_dict())
    out = sync_batchnorm(model, "cpu")
    assert any(isinstance(m, GlobalBatchNorm) for m in out.modules())
    assert not any(type(m) is torch.nn.BatchNorm1d for m in out.modules())
    assert {id(p) for p in out.parameters()} == params and set(out.state_dict()) == keys
    # without a process group it is plain BatchNorm
    bn = torch.nn.BatchNorm1d(4)
    gbn = sync_batchnorm(torch.nn.Sequential(bn), "cpu")[0]
    gbn.load_state_dict(bn.state_dict())
    x = torch.randn(5, 4, 3)
    assert torch.allclose(gbn(x), torch.nn.BatchNorm1d(4)(x), atol=1e-6)


# --------------------------------------------------------------------------- CLIP temperature

def test_clip_temperature_gradient_survives_near_the_cap():
    torch.manual_seed(0)
    imu, video = torch.randn(8, 4), torch.randn(8, 4)
    loss = ClipLoss(init_logit_scale=math.log(100.0) + 1e-3)
    loss(imu, video).backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad.abs() > 0


def test_clip_temperature_is_clamped_after_each_step(tmp_path):
    cfg = _tiny("clip-tiny", max_steps=3, val_every_epochs=0, init_logit_scale=math.log(100.0) - 1e-4,
                **{"optim.lr": 0.5, "optim.warmup_fraction": 0.0, "optim.final_lr": 0.5})
    src = SyntheticSource(subjects=3, windows_per_subject=32)
    pretrain(cfg, src, tmp_path, show_progress=False)
    w = _weights(tmp_path)
    (key,) = [k for k in w if k.endswith("logit_scale")]
    assert float(w[key]) <= math.log(100.0) + 1e-6
    scales = read_metrics(tmp_path)["train/logit_scale"]
    assert all(v <= 100.0 + 1e-3 for v in scales.values())
    # ... and the method's hook does it: a parameter pushed above the cap comes back
    model = build_method(cfg, data_info(src.load()))
    with torch.no_grad():
        model.loss_fn.logit_scale.fill_(7.0)
    model.after_optimizer_step()
    assert float(model.loss_fn.logit_scale.detach()) == pytest.approx(math.log(100.0))


# --------------------------------------------------------------------------- imu-mae

def _mae(**kw):
    cfg = _tiny("imu-mae-tiny", **kw)
    src = SyntheticSource(subjects=3, windows_per_subject=16)
    data = src.load()
    seed_everything(0)
    return cfg, build_method(cfg, data_info(data)), data


def test_mae_mask_token_is_used_and_trained():
    cfg, model, data = _mae()
    assert cfg.mask_fill == "token"
    token = model.mae.mask_token
    assert token.requires_grad and any(token is p for g in model.param_groups(0.01) for p in g["params"])
    batch = {"imu": torch.stack([torch.as_tensor(data.train[i]["imu"]) for i in range(8)])}
    model.train()
    torch.manual_seed(1)
    loss, _ = model(batch)
    loss.backward()
    assert token.grad is not None and token.grad.abs().sum() > 0
    # the token (not the value 0) stands in for masked patches: changing it changes the loss
    with torch.no_grad():
        torch.manual_seed(1)
        l1 = float(model(batch)[0])
        token.add_(1.0)
        torch.manual_seed(1)
        l2 = float(model(batch)[0])
    assert l1 != l2
    # the downstream encoder is untouched by the token outside the MAE's own forward
    model.eval()
    with torch.no_grad():
        e1 = model.imu_encoder(batch["imu"].float())
        token.add_(1.0)
        e2 = model.imu_encoder(batch["imu"].float())
    assert torch.equal(e1, e2)


def test_mae_zero_fill_stays_reachable():
    cfg, model, _ = _mae(mask_fill="zero")
    assert cfg.mask_fill == "zero" and getattr(model.mae, "mask_token", None) is None
    # zero fill is the old imu-mae, CLS pooling included (a resumed pre-mask_fill run keeps it)
    assert model.imu_encoder.cfg.pooling == "cls"


def test_mae_encoder_pools_by_mean_by_default_and_cls_on_request():
    _, model, data = _mae()
    assert model.imu_encoder.cfg.pooling == "mean"
    _, cls_model, _ = _mae(imu_encoder_overrides="{pooling: cls}")
    assert cls_model.imu_encoder.cfg.pooling == "cls"
    cls_model.load_state_dict(model.state_dict())
    x = torch.stack([torch.as_tensor(data.train[i]["imu"]) for i in range(4)]).float()
    model.eval(), cls_model.eval()
    with torch.no_grad():
        assert not torch.allclose(model.imu_encoder(x), cls_model.imu_encoder(x))


def test_an_imu_mae_run_saved_before_mask_fill_rebuilds_with_zero_fill(tmp_path):
    import json

    from crossmodal_har.train.rundir import load_run

    cfg = _tiny("imu-mae-tiny", max_steps=1, val_every_epochs=0, mask_fill="zero")
    pretrain(cfg, SyntheticSource(subjects=3, windows_per_subject=32), tmp_path, show_progress=False)
    meta_path = tmp_path / "model.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["mask_fill"]  # as written before the option existed
    meta_path.write_text(json.dumps(meta))
    model, _ = load_run(tmp_path)
    assert model.mae.mask_token is None


def test_resume_refuses_a_different_seed(tmp_path, capsys):
    args = ["pretrain", "--config", "siglip-tiny", "--synthetic", "--no-progress", "--max-steps", "1",
            "--set", "val_every_epochs=0", "--set", "imu_encoder=patchtst-tiny", "--set", "embed_dim=16",
            "--out", str(tmp_path)]
    assert main(["-q", *args, "--seed", "3"]) == 0
    assert main(["-q", *args, "--seed", "4", "--resume"]) == 2
    assert "seed 3" in capsys.readouterr().err
