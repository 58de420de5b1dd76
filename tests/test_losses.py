"""Contrastive losses: hand-computed values, and the distributed path against a single process on
the concatenated batch (faked collectives, then a real 2-process gloo run)."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from crossmodal_har.models.classifier import build_head
from crossmodal_har.models.heads import ProjectionHead
from crossmodal_har.models.losses import ClipLoss, SigLipLoss, dist_info

LOSSES = {"siglip": SigLipLoss, "clip": ClipLoss}


def _emb(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def test_siglip_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    loss = SigLipLoss().double()(a, v)
    # logits = 10 * cos - 10; positives on the diagonal, negatives elsewhere; sum / n
    cos = [[1.0, 0.6], [0.0, 0.8]]
    total = 0.0
    for i in range(2):
        for j in range(2):
            z = 10 * cos[i][j] - 10
            total += -math.log(1 / (1 + math.exp(-z))) if i == j else -math.log(1 / (1 + math.exp(z)))
    assert loss.item() == pytest.approx(total / 2, rel=1e-6)  # float32-initialised log 10
    assert SigLipLoss().logit_scale.item() == pytest.approx(math.log(10))
    assert SigLipLoss().logit_bias.item() == -10


def test_clip_matches_hand_computation_and_normalises_inputs():
    a = torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=torch.float64)  # not unit length: normalised inside
    v = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    loss = ClipLoss(init_logit_scale=0.0).double()(a, v)  # scale 1
    cos = torch.tensor([[1.0, 0.6], [0.0, 0.8]], dtype=torch.float64)
    row = -(torch.log_softmax(cos, 1).diagonal()).mean()
    col = -(torch.log_softmax(cos.t(), 1).diagonal()).mean()
    assert loss.item() == pytest.approx(((row + col) / 2).item(), rel=1e-12)
    assert ClipLoss().logit_scale.exp().item() == pytest.approx(1 / 0.07)


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_loss_prefers_aligned_pairs(kind):
    x = _emb(8, 16, 0)
    loss = LOSSES[kind]().double()
    assert loss(x, x) < loss(x, _emb(8, 16, 1))


def test_heads_shapes_and_residual():
    head = ProjectionHead(12, 8, dropout=0.1).eval()
    x = torch.randn(5, 12)
    out = head(x)
    assert out.shape == (5, 8)
    p = head.projection(x)
    assert torch.allclose(out, head.norm(head.fc(head.act(p)) + p))
    assert torch.allclose(out.mean(-1), torch.zeros(5), atol=1e-5)  # LayerNorm output
    assert build_head({"type": "linear", "in_features": 12, "num_classes": 3})(x).shape == (5, 3)


def test_dist_info_defaults_to_single_process():
    assert dist_info() == (0, 1)
    assert dist_info(2, 4) == (2, 4)
    with pytest.raises(ValueError):
        dist_info(4, 4)


# ------------------------------------------------------------------ faked collectives


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_gather_with_faked_collectives_matches_single_process(kind, monkeypatch):
    """W simulated ranks. Each rank's loss equals the single-process loss on the concatenated batch;
    its local-embedding gradient is W × the single-process slice; the DDP-averaged parameter gradient
    of a shared encoder equals the single-process gradient."""
    world, b, d_in, d = 3, 4, 5, 6
    torch.manual_seed(0)
    enc = torch.nn.Linear(d_in, d).double()
    x_imu, vid = _emb(world * b, d_in, 1), _emb(world * b, d, 2)

    ref_loss_fn = LOSSES[kind]().double()
    ref = ref_loss_fn(enc(x_imu), vid)
    ref.backward()
    ref_grads = [p.grad.clone() for p in enc.parameters()]
    ref_scale_grad = ref_loss_fn.logit_scale.grad.clone()
    with torch.no_grad():
        imu_all = enc(x_imu)
    enc.zero_grad()

    # What the other ranks send: the loss gathers normalised IMU embeddings first, then video.
    sent = []

    def fake_all_gather(parts, tensor):
        src = sent.pop(0)
        for r in range(world):
            parts[r].copy_(src[r * b:(r + 1) * b])

    def fake_all_reduce(tensor, op=None):
        # Every rank computes the same global loss, hence the same gathered gradient: the sum over
        # ranks is world × this rank's.
        tensor.mul_(world)

    monkeypatch.setattr(dist, "all_gather", fake_all_gather)
    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)

    emb_ref = imu_all.clone().requires_grad_(True)
    LOSSES[kind]().double()(emb_ref, vid).backward()

    avg = [torch.zeros_like(p) for p in enc.parameters()]
    for rank in range(world):
        sl = slice(rank * b, (rank + 1) * b)
        loss_fn = LOSSES[kind](rank=rank, world_size=world).double()
        imu_local = enc(x_imu[sl])
        emb_leaf = imu_local.detach().clone().requires_grad_(True)
        sent[:] = [F.normalize(imu_all, dim=-1), F.normalize(vid, dim=-1)]
        loss = loss_fn(emb_leaf, vid[sl])
        assert not sent  # both collectives were used
        assert loss.item() == pytest.approx(ref.item(), abs=1e-10)
        loss.backward()
        # local embedding gradient = world × single-process slice
        assert torch.allclose(emb_leaf.grad, world * emb_ref.grad[sl], atol=1e-10)
        # loss-parameter gradient is the full single-process one on every rank
        assert torch.allclose(loss_fn.logit_scale.grad, ref_scale_grad, atol=1e-10)
        # parameter gradient through the local encoder output; DDP averages these over ranks
        grads = torch.autograd.grad(imu_local, list(enc.parameters()), grad_outputs=emb_leaf.grad)
        for a, g in zip(avg, grads):
            a += g / world
    for a, g in zip(avg, ref_grads):
        assert torch.allclose(a, g, atol=1e-10)


# ------------------------------------------------------------------ real 2-process gloo run

WORLD = 2
B_LOCAL = 3


def _data():
    g = torch.Generator().manual_seed(123)
    x = torch.randn(WORLD * B_LOCAL, 5, generator=g)
    vid = torch.randn(WORLD * B_LOCAL, 4, generator=g)
    return x, vid


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, vid = _data()
        sl = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
        out = {}
        for kind, cls in LOSSES.items():
            torch.manual_seed(0)
            enc = torch.nn.Linear(5, 4)
            ddp = torch.nn.parallel.DistributedDataParallel(enc)
            loss_fn = cls()  # rank/world_size read from torch.distributed
            emb = ddp(x[sl])
            emb.retain_grad()
            loss = loss_fn(emb, vid[sl])
            loss.backward()
            out[f"{kind}/loss"] = loss.detach()
            out[f"{kind}/emb_grad"] = emb.grad.detach()
            out[f"{kind}/weight_grad"] = enc.weight.grad.detach()
            out[f"{kind}/bias_grad"] = enc.bias.grad.detach()
            out[f"{kind}/scale_grad"] = loss_fn.logit_scale.grad.detach()
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.slow
def test_real_two_process_gloo_matches_single_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(WORLD, str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    x, vid = _data()
    for kind, cls in LOSSES.items():
        torch.manual_seed(0)
        enc = torch.nn.Linear(5, 4)
        loss_fn = cls()
        emb = enc(x)
        emb.retain_grad()
        ref = loss_fn(emb, vid)
        ref.backward()
        for rank in range(WORLD):
            got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
            sl = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
            assert abs(got[f"{kind}/loss"].item() - ref.item()) < 1e-5, kind
            # convention: local embedding gradient = world_size × single-process slice ...
            assert torch.allclose(got[f"{kind}/emb_grad"], WORLD * emb.grad[sl], atol=1e-6), kind
            # ... so that after DDP's averaging, parameter gradients equal the single-process ones
            assert torch.allclose(got[f"{kind}/weight_grad"], enc.weight.grad, atol=1e-6), kind
            assert torch.allclose(got[f"{kind}/bias_grad"], enc.bias.grad, atol=1e-6), kind
            assert torch.allclose(got[f"{kind}/scale_grad"], loss_fn.logit_scale.grad, atol=1e-6), kind
