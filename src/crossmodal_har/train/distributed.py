"""Process-group setup for plain PyTorch DDP: torchrun, SLURM, or our own ``--devices N`` spawn.

Launch modes, detected from the environment (never at import time):

* **torchrun** (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` set):
  one process per device on every node; multi-node with ``torchrun --nnodes``.
* **SLURM** (``SLURM_PROCID``, ``SLURM_NTASKS`` ... set, ``srun`` one task per device): rank and
  world size come from SLURM; the master is the first host of ``SLURM_JOB_NODELIST`` unless
  ``MASTER_ADDR`` is set.
* **spawn**: a single command with ``--devices N`` starts N local processes with
  ``torch.multiprocessing`` (gloo on CPU, NCCL on CUDA) on a free local port.

BatchNorm under DDP (:func:`sync_batchnorm`, applied by the trainer when world size > 1): statistics
over the **global** batch, as one process would compute them on the concatenated batch — torch's
``SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm` elsewhere (torch's ``SyncBatchNorm`` refuses CPU
tensors, so CPU/gloo runs would otherwise keep per-process statistics).
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import socket
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.multiprocessing as mp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

log = logging.getLogger(__name__)


@dataclass
class DistEnv:
    """Where this process sits. ``world_size == 1`` means no process group."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    launcher: str = "none"  # none | spawn | torchrun | slurm

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _first_slurm_host(nodelist: str) -> str:
    """First hostname of a SLURM node list such as ``gpu[01-04,07],login1`` (no scontrol needed)."""
    m = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if not m:
        return nodelist
    prefix, _, ranges = m.groups()
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def launcher_env() -> Optional[dict]:
    """Rank information set by torchrun or SLURM, or None when launched as a single process."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return {"launcher": "torchrun", "rank": int(env["RANK"]), "world_size": int(env["WORLD_SIZE"]),
                "local_rank": int(env.get("LOCAL_RANK", 0))}
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        env.setdefault("MASTER_ADDR", _first_slurm_host(env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", "127.0.0.1"))))
        env.setdefault("MASTER_PORT", str(29500 + int(env.get("SLURM_JOB_ID", "0")) % 1000))
        return {"launcher": "slurm", "rank": int(env["SLURM_PROCID"]), "world_size": int(env["SLURM_NTASKS"]),
                "local_rank": int(env.get("SLURM_LOCALID", 0))}
    return None


def free_port() -> int:
    """A free local TCP port for the spawn launcher's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_process(rank: int, world_size: int, local_rank: int, device_type: str, launcher: str,
                 timeout_s: float = 1800.0) -> DistEnv:
    """Join the process group (if world_size > 1) and pin this process's device."""
    device = "cpu"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=device, launcher=launcher)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_reduce_mean(value: "Any", env: DistEnv) -> "Any":
    """Mean of a scalar tensor over ranks (for logging; no gradient)."""
    if not env.distributed:
        return value
    t = value.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / env.world_size


def all_gather_object(obj: Any, env: DistEnv) -> List[Any]:
    """Every rank's ``obj`` (list indexed by rank) — used for per-rank RNG states in checkpoints."""
    if not env.distributed:
        return [obj]
    out: List[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, env: DistEnv, src: int = 0) -> Any:
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _spawn_entry(local_rank: int, fn: Callable, nprocs: int, port: int, args: Sequence[Any]) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    os.environ["RANK"] = str(local_rank)
    os.environ["LOCAL_RANK"] = str(local_rank)
    os.environ["WORLD_SIZE"] = str(nprocs)
    fn(local_rank, *args)


def spawn(fn: Callable, nprocs: int, args: Sequence[Any] = ()) -> None:
    """Run ``fn(rank, *args)`` in ``nprocs`` local processes (our ``--devices N`` launcher).

    The children find each other through ``MASTER_ADDR=127.0.0.1`` and a free port; an exception in
    any child is re-raised here, and an interrupt of this process (Ctrl-C, SIGTERM) stops them all.
    """
    port = free_port()
    ctx = mp.start_processes(_spawn_entry, args=(fn, nprocs, port, tuple(args)), nprocs=nprocs,
                             join=False, start_method="spawn")
    try:
        while not ctx.join():
            pass
    except BaseException:
        # Ctrl-C reaches the whole process group, but SIGTERM (kill, a scheduler) only this process:
        # stop the workers too, or the interpreter would wait for them to finish training.
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
        for p in ctx.processes:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
        raise


# --------------------------------------------------------------------------- BatchNorm over the global batch

def _group_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the global batch (every rank's batch), on any
    device and backend (gloo on CPU included): the per-channel sum, count and squared deviations are
    all-reduced with autograd (``torch.distributed.nn.functional.all_reduce``), so the forward value,
    the running statistics and the gradients equal a single process's BatchNorm on the concatenated
    batch (under DDP's gradient averaging, as ``SyncBatchNorm``). Plain BatchNorm in eval mode or
    without a process group. Same parameters, buffers and state-dict keys as the module it replaces.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input [N, C, ...], got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _group_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        shape = [1, c] + [1] * (x.dim() - 2)
        xf = x.float()
        local_n = torch.full((1,), float(x.numel() // max(c, 1)), device=x.device)
        total = dist_nn.all_reduce(torch.cat([xf.sum(dims), local_n]))  # sum, gradients summed back
        n = total[c:].detach()
        mean = total[:c] / n
        centred = xf - mean.view(shape)
        var = dist_nn.all_reduce((centred * centred).sum(dims)) / n  # biased, two-pass as BatchNorm
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var.detach() * n / (n - 1).clamp(min=1)
                self.running_mean.mul_(1 - factor).add_(mean.detach().to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        return out.to(x.dtype)


def _to_global_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, (nn.SyncBatchNorm, GlobalBatchNorm)):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias  # the same Parameter objects
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
        return out
    for name, child in module.named_children():
        module.add_module(name, _to_global_batchnorm(child))
    return module


def sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Every BatchNorm in ``module`` computing its statistics over the global batch under DDP:
    ``torch.nn.SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm` on other devices. Parameters and
    buffers are kept (the same objects), so optimiser and state-dict keys are unchanged."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_global_batchnorm(module)
