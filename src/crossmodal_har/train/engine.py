"""The pretraining entry point: plain PyTorch DDP, exact resume, atomic checkpoints.

Why not Lightning: we need resume to be *exact* (mid-epoch data order and every RNG state), and a
small dependency footprint. The whole state of a run is visible in one place
(:mod:`crossmodal_har.train.loop`): the step counter (the learning rate is a pure function of it),
the epoch and batch position (data order is a pure function of seed and epoch), the model,
optimiser and loss-scaler states, and the RNG states of every rank.

``pretrain(cfg, source, out_dir)`` runs one process, spawns ``devices`` local processes (gloo on CPU,
NCCL on CUDA), or — under torchrun / SLURM — runs as the rank the launcher assigned. This module
only decides how processes are launched; the loop is :mod:`~crossmodal_har.train.loop`, validation
:mod:`~crossmodal_har.train.validation`, the run directory's files :mod:`~crossmodal_har.train.rundir`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

from crossmodal_har.device import resolve_device
from crossmodal_har.errors import UserError
from crossmodal_har.train import distributed as dist_utils
from crossmodal_har.train.config import PretrainConfig
from crossmodal_har.train.loop import train_process
from crossmodal_har.train.rundir import PretrainResult, check_run_dir, read_summary

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def _spawned(local_rank: int, cfg: PretrainConfig, source: Any, out_dir: str, resume: bool, device_type: str,
             stop_at_step: Optional[int], show_progress: bool, log_level: int = logging.INFO) -> None:
    # a spawned child starts with no logging setup: mirror the parent's level on rank 0 only
    logging.basicConfig(level=log_level if local_rank == 0 else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    train_process(cfg, source, out_dir, resume, device_type, stop_at_step, show_progress)


def pretrain(cfg: PretrainConfig, source: Any, out_dir: PathLike, *, resume: bool = False, devices: int = 1,
             accelerator: str = "auto", num_nodes: int = 1, stop_at_step: Optional[int] = None,
             show_progress: bool = True) -> PretrainResult:
    """Run (or resume) one pretraining run into ``out_dir``.

    Args:
        cfg: the run configuration.
        source: a data source (``load() -> PairedData``), e.g. ``StoreSource`` or ``SyntheticSource``.
        out_dir: the run directory (created).
        resume: continue from ``out_dir/checkpoint.pt`` exactly where it stopped.
        devices: processes per node. Under torchrun/SLURM the launcher decides and this is checked;
            otherwise ``devices > 1`` spawns that many local processes.
        accelerator: ``auto``, ``cpu`` or ``gpu`` (see :func:`crossmodal_har.device.resolve_device`).
        num_nodes: nodes in the job (torchrun/SLURM only); checked against the launcher's world size.
        stop_at_step: stop after this optimiser step with a checkpoint and no export (tests use it
            to simulate an interruption).
        show_progress: tqdm bar on rank 0.
    """
    out = Path(out_dir)
    check_run_dir(out, resume)
    if devices < 1 or num_nodes < 1:
        raise UserError("--devices and --num-nodes must be >= 1")
    device_type = resolve_device(accelerator, flag="--accelerator").type  # "cuda" | "cpu"
    launched = dist_utils.launcher_env()
    if launched:
        expected = devices * num_nodes
        if (devices > 1 or num_nodes > 1) and launched["world_size"] != expected:
            raise UserError(f"the launcher started {launched['world_size']} processes but --devices {devices} x "
                            f"--num-nodes {num_nodes} = {expected}")
        res = train_process(cfg, source, os.fspath(out), resume, device_type, stop_at_step, show_progress)
        return res if res is not None else read_summary(out)
    if num_nodes > 1:
        raise UserError("--num-nodes > 1 needs a multi-node launcher: torchrun --nnodes N ... or srun under SLURM")
    if devices > 1:
        if device_type == "cuda":
            if torch.cuda.device_count() < devices:
                raise UserError(f"--devices {devices} but only {torch.cuda.device_count()} CUDA device(s)")
        dist_utils.spawn(_spawned, devices, (cfg, source, os.fspath(out), resume, device_type, stop_at_step,
                                             show_progress, logging.getLogger().getEffectiveLevel()))
        return read_summary(out)
    return train_process(cfg, source, os.fspath(out), resume, device_type, stop_at_step, show_progress)
