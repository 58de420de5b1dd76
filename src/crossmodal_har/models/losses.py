"""Contrastive losses that see the global batch under data parallelism.

Both losses take ``(imu_emb [B, D], video_emb [B, D])`` of the *local* batch, L2-normalise them
(idempotent if the caller already did), and, when ``world_size > 1``, gather the embeddings of all
ranks so that every rank computes the loss of the **global** batch (N = B × world_size pairs):

* ``SigLipLoss`` (the paper's): ``logits = exp(t) · imu @ videoᵀ + b`` with learnable log-temperature
  ``t`` (init log 10) and bias ``b`` (init −10); ``loss = −Σᵢⱼ log σ(zᵢⱼ · logitsᵢⱼ) / N`` with
  ``zᵢᵢ = 1`` and ``zᵢⱼ = −1`` otherwise.
* ``ClipLoss``: symmetric InfoNCE, ``(CE(logits, diag) + CE(logitsᵀ, diag)) / 2`` with
  ``logits = exp(t) · imu @ videoᵀ``, ``t`` learnable (init log(1/0.07)). ``exp(t)`` is capped at 100
  as in open_clip: the *parameter* is clamped to [0, log 100] after every optimiser step
  (:meth:`ClipLoss.clamp_logit_scale_`, called by the trainer), not the forward value, whose clamp would
  zero the temperature's gradient once above the cap.

Gradient convention under DDP (``dist_impl="gather"``): the all-gather is an autograd function whose
backward sums the gathered gradient over ranks (all-reduce) and returns this rank's slice. Every rank
computes the same global loss ``L``, so the gradient reaching a rank's local embeddings is
``world_size × ∂L/∂(local slice)``; DDP then *averages* parameter gradients over ranks, which gives
exactly ``∂L/∂θ`` — the gradient a single process would get on the concatenated global batch. The
loss value on every rank equals the single-process loss on the global batch.

``rank``/``world_size`` default to ``None``: read from ``torch.distributed`` at call time when it is
initialised, else 0/1.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def dist_info(rank: Optional[int] = None, world_size: Optional[int] = None) -> Tuple[int, int]:
    """``(rank, world_size)``: the given values, else torch.distributed's when initialised, else (0, 1)."""
    initialised = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} out of range for world_size {world_size}")
    return int(rank), int(world_size)


class _AllGather(torch.autograd.Function):
    """All-gather along dim 0 whose backward all-reduces (sums) the gradient and keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        ctx.rank, ctx.world_size, ctx.n = rank, world_size, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous())
        parts[rank] = x  # same values; keeps the local tensor in place
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.n
        return grad[start:start + ctx.n], None, None


def gather_features(x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Concatenate ``x`` [B, D] from all ranks in rank order -> [B × world_size, D], gradients flowing
    back to every rank's local part (see module docstring for the scaling convention).

    Every rank must pass the same B (the trainer drops the last incomplete batch under DDP).
    """
    if world_size == 1:
        return x
    return _AllGather.apply(x, rank, world_size)


def _check_pair(imu: torch.Tensor, video: torch.Tensor) -> None:
    if imu.dim() != 2 or video.dim() != 2 or imu.shape != video.shape:
        raise ValueError(f"expected two [B, D] embeddings of equal shape, got {list(imu.shape)} and {list(video.shape)}")


class SigLipLoss(nn.Module):
    """Sigmoid pairwise loss (Zhai et al., 2023) with learnable log-temperature and bias.

    Args:
        init_logit_scale: initial log-temperature t (logits are scaled by exp(t); paper: log 10).
        init_logit_bias: initial bias b (paper: −10).
        rank, world_size: process group position; ``None`` = read from torch.distributed.
        dist_impl: ``gather`` (all-gather embeddings with gradients; every rank computes the global
            loss). The only implementation: with per-GPU batch 32 the N×N logits are cheap.
    """

    def __init__(
        self,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float = -10.0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        dist_impl: str = "gather",
    ):
        super().__init__()
        if dist_impl != "gather":
            raise ValueError(f"dist_impl must be 'gather', got {dist_impl!r}")
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(init_logit_bias)))
        self.rank, self.world_size, self.dist_impl = rank, world_size, dist_impl

    def logits(self, imu: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        return self.logit_scale.exp() * imu @ video.t() + self.logit_bias

    def forward(self, imu_emb: torch.Tensor, video_emb: torch.Tensor) -> torch.Tensor:
        _check_pair(imu_emb, video_emb)
        rank, world = dist_info(self.rank, self.world_size)
        imu = gather_features(F.normalize(imu_emb, dim=-1), rank, world)
        video = gather_features(F.normalize(video_emb, dim=-1), rank, world)
        logits = self.logits(imu, video)
        n = logits.shape[0]
        signs = 2.0 * torch.eye(n, device=logits.device, dtype=logits.dtype) - 1.0
        return -F.logsigmoid(signs * logits).sum() / n


class ClipLoss(nn.Module):
    """Symmetric InfoNCE (CLIP) with a learnable log-temperature.

    Args:
        init_logit_scale: initial log of the inverse temperature (CLIP: log(1/0.07)).
        rank, world_size: process group position; ``None`` = read from torch.distributed.
        max_scale: cap on exp(logit_scale) (CLIP: 100), enforced on the parameter by
            :meth:`clamp_logit_scale_` after each optimiser step (the forward never clamps, so the
            gradient always reaches the temperature).
    """

    def __init__(
        self,
        init_logit_scale: float = math.log(1 / 0.07),
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        max_scale: float = 100.0,
    ):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.rank, self.world_size = rank, world_size
        self.max_scale = float(max_scale)

    def logits(self, imu: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        return self.logit_scale.exp() * imu @ video.t()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the log-temperature in place to [0, log max_scale] (open_clip: after each step)."""
        self.logit_scale.clamp_(0.0, math.log(self.max_scale))

    def forward(self, imu_emb: torch.Tensor, video_emb: torch.Tensor) -> torch.Tensor:
        _check_pair(imu_emb, video_emb)
        rank, world = dist_info(self.rank, self.world_size)
        imu = gather_features(F.normalize(imu_emb, dim=-1), rank, world)
        video = gather_features(F.normalize(video_emb, dim=-1), rank, world)
        logits = self.logits(imu, video)
        target = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
