"""Process-group setup for plain PyTorch DDP: torchrun, SLURM, or our own ``--devices N`` spawn.

Launch modes, detected from the environment (never at import time):

* **torchrun** (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` set):
  one process per device on every node; multi-node with ``torchrun --nnodes``.
* **SLURM** (``SLURM_PROCID``, ``SLURM_NTASKS`` ... set, ``srun`` one task per device): rank and
  world size come from SLURM; the master is the first host of ``SLURM_JOB_NODELIST`` unless
  ``MASTER_ADDR`` is set.
* **spawn**: a single command with ``--devices N`` starts N local processes with
  ``torch.multiprocessing`` (gloo on CPU, NCCL on CUDA) on a free local port.
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
import torch.multiprocessing as mp

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
    any child is re-raised here.
    """
    port = free_port()
    mp.start_processes(_spawn_entry, args=(fn, nprocs, port, tuple(args)), nprocs=nprocs,
                       join=True, start_method="spawn")
