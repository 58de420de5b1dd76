"""The training loop of one process of a pretraining run: set up, resume, step, checkpoint, finish.

The whole state of a run is visible in two objects: :class:`TrainRun` (what does not change during
the run: data, model, optimiser, loss scaler, sampler) and :class:`Progress` (what a checkpoint
stores to continue exactly: the step counter, of which the learning rate is a pure function; the
epoch and batch position, of which the data order is a pure function with the seed; and the run
length when it was fitted to a time budget). RNG states of every rank go into the checkpoint
beside them (:mod:`crossmodal_har.train.checkpoint`).

Order matters for exact resume and for the deterministic demo: seeding, model construction,
optimiser, resume, per-rank seeding, DDP wrapping and every draw inside a step happen in the same
order as in an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from crossmodal_har.config import to_dict
from crossmodal_har.errors import UserError
from crossmodal_har.train import distributed as dist_utils
from crossmodal_har.train.checkpoint import (CHECKPOINT_NAME, capture_rng_state, load_checkpoint,
                                             restore_rng_state, save_checkpoint, strip_module_prefix)
from crossmodal_har.train.config import PretrainConfig
from crossmodal_har.train.distributed import DistEnv
from crossmodal_har.train.loggers import MetricLogger
from crossmodal_har.train.methods import PretrainMethod, build_method
from crossmodal_har.train.rundir import PretrainResult, data_info, export_run, write_run_files, write_summary
from crossmodal_har.train.schedule import warmup_cosine_lr, warmup_steps_for
from crossmodal_har.train.seeding import seed_everything
from crossmodal_har.train.validation import to_device, validate

log = logging.getLogger(__name__)

#: optimiser steps timed before a run is fitted to its time budget (``fit_schedule_to_budget``)
PROBE_STEPS = 5


class _SkipSampler:
    """Yields a rank's indices for the current epoch, skipping the first ``skip`` (resume mid-epoch)."""

    def __init__(self, base: Any, skip: int):
        self.base = base
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.base)[self.skip:])

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


def autocast_for(precision: str, device_type: str) -> Tuple[Callable[[], Any], bool]:
    """(autocast context factory, use a GradScaler) for the configured precision (``32``, ``16``,
    ``bf16`` or ``auto``: bf16 on CUDA where supported, else fp16; fp32 on CPU)."""
    if precision == "32" or (precision == "auto" and device_type != "cuda"):
        return nullcontext, False
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device_type != "cuda" and dtype == torch.float16:
        raise UserError("precision 16 needs a CUDA device; use 32 or bf16 on CPU")
    return (lambda: torch.autocast(device_type=device_type, dtype=dtype)), dtype == torch.float16


@dataclass
class Progress:
    """Where the run stands: what a checkpoint stores to continue exactly (besides module, optimiser,
    scaler and RNG states). ``fitted``: the run's length was fitted to its time budget."""

    total_steps: int
    n_epochs: int
    warmup: int
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    fitted: bool = False


@dataclass
class TrainRun:
    """The fixed parts of one process's run. ``ddp_model`` is ``model`` wrapped for DDP (or ``model``)."""

    cfg: PretrainConfig
    env: DistEnv
    device: torch.device
    run_dir: Path
    data: Any
    model: PretrainMethod
    trainable: List[torch.nn.Parameter]
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    use_scaler: bool
    autocast: Callable[[], Any]
    sampler: DistributedSampler
    steps_per_epoch: int
    progress: Progress
    ddp_model: Any = None


@dataclass
class LoopStats:
    """What the loop measured (not checkpointed): wall clock from ``t_start``, pairs seen by all
    processes, the last logged training loss and the last validation."""

    t_start: float
    start_step: int
    pairs_seen: int = 0
    last_loss: Optional[float] = None
    val: Dict[str, float] = field(default_factory=dict)
    stopped: str = "completed"  # completed | time_budget | interrupted


def init_env(device_type: str) -> DistEnv:
    """Join the launcher's process group (rank from its environment), or run alone as rank 0."""
    launched = dist_utils.launcher_env()
    if launched:
        return dist_utils.init_process(launched["rank"], launched["world_size"], launched["local_rank"],
                                       device_type, launched["launcher"])
    return dist_utils.init_process(0, 1, 0, device_type, "none")


def build_run(cfg: PretrainConfig, source: Any, env: DistEnv, run_dir: Path) -> TrainRun:
    """Load the data, build the method (identical initial weights on every rank), its optimiser,
    AMP settings, the distributed sampler and the step schedule."""
    device = torch.device(env.device)
    seed_everything(cfg.seed)  # identical initial weights on every rank
    data = source.load()
    if data.train is None or len(data.train) == 0:
        raise UserError("no training windows")
    model = build_method(cfg, data_info(data), env.rank, env.world_size).to(device)
    if env.distributed:  # BatchNorm statistics over the global batch, as the single-process run's
        model = dist_utils.sync_batchnorm(model, device.type)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(model.param_groups(cfg.optim.weight_decay), lr=cfg.optim.lr,
                            betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
    autocast, use_scaler = autocast_for(cfg.precision, device.type)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

    sampler = DistributedSampler(data.train, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // cfg.batch_size
    if steps_per_epoch < 1:
        raise UserError(f"batch_size {cfg.batch_size} x {env.world_size} process(es) is larger than the "
                        f"{len(data.train)} training windows; lower batch_size")
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    progress = Progress(total_steps=total_steps, n_epochs=math.ceil(total_steps / steps_per_epoch),
                        warmup=warmup_steps_for(total_steps, cfg.optim.warmup_fraction))
    return TrainRun(cfg=cfg, env=env, device=device, run_dir=run_dir, data=data, model=model,
                    trainable=trainable, opt=opt, scaler=scaler, use_scaler=use_scaler, autocast=autocast,
                    sampler=sampler, steps_per_epoch=steps_per_epoch, progress=progress, ddp_model=model)


def resume_from_checkpoint(run: TrainRun, ckpt_path: Path) -> None:
    """Restore module, optimiser, scaler, progress and this rank's RNG states from ``ckpt_path``."""
    cfg, env, p = run.cfg, run.env, run.progress
    ckpt = load_checkpoint(ckpt_path)
    run.model.load_state_dict(ckpt["model"], strict=True)
    run.opt.load_state_dict(ckpt["optimizer"])
    if run.use_scaler and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    p.step, p.epoch, p.batch_in_epoch = int(ckpt["step"]), int(ckpt["epoch"]), int(ckpt["batch_in_epoch"])
    p.fitted = bool(ckpt.get("fitted_to_budget", False))
    if p.fitted:  # the run's length was fitted to its time budget: keep it
        p.total_steps = int(ckpt["total_steps"])
        p.n_epochs = math.ceil(p.total_steps / run.steps_per_epoch)
        p.warmup = warmup_steps_for(p.total_steps, cfg.optim.warmup_fraction)
    elif int(ckpt["total_steps"]) != p.total_steps:
        log.warning("resuming with %d total steps instead of %d: the lr schedule changes", p.total_steps,
                    int(ckpt["total_steps"]))
    rngs = ckpt["rng"]
    if len(rngs) == env.world_size:
        restore_rng_state(rngs[env.rank])
    else:
        log.warning("checkpoint was written by %d process(es), this run has %d: the global batch, the "
                    "rest of this epoch's data order and the dropout/augmentation draws differ from an "
                    "uninterrupted run", len(rngs), env.world_size)
        seed_everything(cfg.seed + 7919 * (p.step + 1) + env.rank)
    if env.is_main:
        log.info("resumed from %s at step %d (epoch %d, batch %d)", ckpt_path, p.step, p.epoch, p.batch_in_epoch)


def save_training_checkpoint(run: TrainRun, epoch: int, batch_in_epoch: int) -> None:
    """Gather every rank's RNG states and write the checkpoint (rank 0) to continue at
    (``epoch``, ``batch_in_epoch``); all ranks wait for it."""
    env, p = run.env, run.progress
    rngs = dist_utils.all_gather_object(capture_rng_state(), env)
    if env.is_main:
        save_checkpoint(run.run_dir / CHECKPOINT_NAME, {
            "model": strip_module_prefix(run.model.state_dict()), "optimizer": run.opt.state_dict(),
            "scaler": run.scaler.state_dict() if run.use_scaler else {}, "step": p.step, "epoch": epoch,
            "batch_in_epoch": batch_in_epoch, "total_steps": p.total_steps, "fitted_to_budget": p.fitted,
            "rng": rngs, "world_size": env.world_size, "config": to_dict(run.cfg),
        })
    dist_utils.barrier(env)


def epoch_loader(run: TrainRun) -> DataLoader:
    """This rank's batches for the current epoch, from the current batch on (mid-epoch resume)."""
    cfg, p = run.cfg, run.progress
    run.sampler.set_epoch(p.epoch)
    if hasattr(run.data.train, "set_epoch"):
        run.data.train.set_epoch(p.epoch)
    return DataLoader(
        run.data.train, batch_size=cfg.batch_size, sampler=_SkipSampler(run.sampler, p.batch_in_epoch * cfg.batch_size),
        drop_last=True, num_workers=cfg.num_workers, pin_memory=run.device.type == "cuda",
        # own generator: creating the iterator must not consume the global RNG (exact resume)
        generator=torch.Generator().manual_seed(cfg.seed * 1000003 + p.epoch),
        persistent_workers=False)


def train_step(run: TrainRun, batch: Mapping[str, Any]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor],
                                                                   Optional[torch.Tensor], float]:
    """One optimiser step at the scheduled learning rate. Returns (loss, method logs, gradient norm
    before clipping or None, learning rate); advances the step and batch counters."""
    cfg, p, opt = run.cfg, run.progress, run.opt
    lr = warmup_cosine_lr(p.step, p.total_steps, cfg.optim.lr, cfg.optim.final_lr, p.warmup)
    for group in opt.param_groups:
        group["lr"] = lr
    b = to_device(batch, run.device)
    with run.autocast():
        loss, extra = run.ddp_model(b)
    opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    grad_norm = None
    if cfg.optim.grad_clip > 0:
        run.scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(run.trainable, cfg.optim.grad_clip)
    run.scaler.step(opt)
    run.scaler.update()
    run.model.after_optimizer_step()  # parameter constraints (CLIP's temperature cap)
    p.step += 1
    p.batch_in_epoch += 1
    return loss, extra, grad_norm, lr


def log_train_step(run: TrainRun, stats: LoopStats, logger: MetricLogger, bar: Any, loss: torch.Tensor,
                   extra: Mapping[str, torch.Tensor], grad_norm: Optional[torch.Tensor], lr: float) -> None:
    """Every ``log_every_steps`` (and at the first and last step): the loss averaged over ranks,
    learning rate, throughput (pairs/s), gradient norm and the method's own logs."""
    cfg, p = run.cfg, run.progress
    if p.step % cfg.log_every_steps == 0 or p.step == 1 or p.step == p.total_steps:
        mean_loss = float(dist_utils.all_reduce_mean(loss.detach().float(), run.env))
        stats.last_loss = mean_loss
        logs = {"train/loss": mean_loss, "train/lr": lr,
                "train/pairs_per_s": stats.pairs_seen / max(1e-9, time.time() - stats.t_start)}
        if grad_norm is not None:
            logs["train/grad_norm"] = float(grad_norm)
        logs.update({f"train/{k}": float(v) for k, v in extra.items()})
        logger.log(logs, p.step, p.epoch)
        bar.set_postfix(loss=f"{mean_loss:.4f}")
    bar.update(1)


def fit_to_time_budget(run: TrainRun, stats: LoopStats, bar: Any) -> None:
    """After :data:`PROBE_STEPS` timed steps, shorten the run (once) so that its lr schedule completes
    within 85 % of ``time_budget_s``; rank 0's estimate is used by every rank."""
    cfg, p = run.cfg, run.progress
    if not (cfg.fit_schedule_to_budget and cfg.time_budget_s and not p.fitted
            and p.step - stats.start_step == PROBE_STEPS):
        return
    elapsed = time.time() - stats.t_start
    fit = p.step + int((0.85 * cfg.time_budget_s - elapsed) / (elapsed / PROBE_STEPS))
    fit = int(dist_utils.broadcast_object(fit, run.env))
    p.fitted = True
    if fit < p.total_steps:
        p.total_steps = max(p.step + 1, fit)
        p.n_epochs = math.ceil(p.total_steps / run.steps_per_epoch)
        p.warmup = min(p.warmup, warmup_steps_for(p.total_steps, cfg.optim.warmup_fraction))
        bar.total = p.total_steps
        if run.env.is_main:
            log.info("fitted to the %.0f s time budget: %d steps (%.3f s/step)",
                     cfg.time_budget_s, p.total_steps, elapsed / PROBE_STEPS)


def over_time_budget(run: TrainRun, stats: LoopStats) -> bool:
    """Whether any rank has run past ``time_budget_s`` (all ranks agree, so all stop together)."""
    if run.cfg.time_budget_s is None:
        return False
    over = torch.tensor(float(time.time() - stats.t_start > run.cfg.time_budget_s))
    return float(dist_utils.all_reduce_mean(over, run.env)) > 0


def run_epoch(run: TrainRun, stats: LoopStats, logger: MetricLogger, bar: Any,
              stop_at_step: Optional[int]) -> None:
    """The rest of the current epoch (or of the run); sets ``stats.stopped`` when it stops early."""
    cfg, p = run.cfg, run.progress
    for batch in epoch_loader(run):
        if p.step >= p.total_steps:
            break
        loss, extra, grad_norm, lr = train_step(run, batch)
        stats.pairs_seen += len(batch["imu"]) * run.env.world_size
        log_train_step(run, stats, logger, bar, loss, extra, grad_norm, lr)
        fit_to_time_budget(run, stats, bar)
        if p.step % cfg.checkpoint_every_steps == 0:
            save_training_checkpoint(run, p.epoch, p.batch_in_epoch)
        if stop_at_step is not None and p.step >= stop_at_step:
            stats.stopped = "interrupted"
            return
        if over_time_budget(run, stats):
            stats.stopped = "time_budget"
            return


def validate_epoch(run: TrainRun, stats: LoopStats, logger: MetricLogger) -> None:
    """Validation at the end of every ``val_every_epochs``-th epoch and at the end of the run (rank 0)."""
    cfg, p = run.cfg, run.progress
    if run.data.val is not None and cfg.val_every_epochs and (
            (p.epoch + 1) % cfg.val_every_epochs == 0 or p.step >= p.total_steps):
        if run.env.is_main:
            stats.val = validate(run.model, run.data.val, cfg, run.device)
            logger.log(stats.val, p.step, p.epoch)
            log.info("epoch %d step %d: %s", p.epoch, p.step, ", ".join(f"{k}={v:.4f}" for k, v in stats.val.items()))
        dist_utils.barrier(run.env)


def fit(run: TrainRun, logger: MetricLogger, stop_at_step: Optional[int], show_progress: bool) -> LoopStats:
    """Train until the run's last step, the time budget or ``stop_at_step``, checkpointing every
    ``checkpoint_every_steps`` steps and at every epoch end."""
    p = run.progress
    bar = tqdm(total=p.total_steps, initial=p.step, desc=f"pretrain {run.cfg.method}", unit="step",
               disable=(None if show_progress else True) if run.env.is_main else True, dynamic_ncols=True)
    stats = LoopStats(t_start=time.time(), start_step=p.step)
    run.model.train()
    while p.epoch < p.n_epochs and p.step < p.total_steps:
        run_epoch(run, stats, logger, bar, stop_at_step)
        if stats.stopped != "completed":
            break
        # end of epoch (or of the run mid-epoch when max_steps says so)
        validate_epoch(run, stats, logger)
        p.epoch += 1
        p.batch_in_epoch = 0
        save_training_checkpoint(run, p.epoch, 0)
    bar.close()
    return stats


def train_process(cfg: PretrainConfig, source: Any, out_dir: str, resume: bool, device_type: str,
                  stop_at_step: Optional[int], show_progress: bool) -> Optional[PretrainResult]:
    """One process of a run (rank from the launcher's environment, or 0 when alone): set up, resume
    or seed, write the run files, train, checkpoint, export (rank 0). Returns the result on rank 0."""
    env = init_env(device_type)
    run_dir = Path(out_dir)
    try:
        run = build_run(cfg, source, env, run_dir)
        p = run.progress
        if resume:
            resume_from_checkpoint(run, run_dir / CHECKPOINT_NAME)
        else:
            # Different dropout / augmentation draws per rank, same weights.
            seed_everything(cfg.seed + 1 + env.rank)
        if env.is_main:
            write_run_files(run_dir, cfg, run.data)
            log.info("%s: %d training windows, %d val, %d test; %d steps/epoch x %d process(es), %d steps, "
                     "%d trainable parameters", cfg.method, len(run.data.train), len(run.data.val or []),
                     len(run.data.test or []), run.steps_per_epoch, env.world_size, p.total_steps,
                     sum(q.numel() for q in run.trainable))
        logger = MetricLogger(run_dir, enabled=env.is_main, resume_step=p.step if resume else None)
        if env.distributed:
            run.ddp_model = DDP(run.model, device_ids=[env.local_rank] if run.device.type == "cuda" else None)

        stats = fit(run, logger, stop_at_step, show_progress)
        wall = time.time() - stats.t_start
        if stats.stopped != "completed" or p.step % cfg.checkpoint_every_steps:
            save_training_checkpoint(run, p.epoch, p.batch_in_epoch)
        if stats.stopped == "time_budget" and env.is_main:
            log.warning("time budget of %.0f s reached at step %d of %d; resume with --resume to continue",
                        cfg.time_budget_s, p.step, p.total_steps)
        result = PretrainResult(run_dir=run_dir, step=p.step, total_steps=p.total_steps, epoch=p.epoch,
                                stopped=stats.stopped, val=stats.val, train_loss=stats.last_loss, wall_s=wall,
                                pairs_per_s=stats.pairs_seen / max(wall, 1e-9))
        if env.is_main:
            if stats.stopped != "interrupted":
                export_run(run.model, cfg, run.data, run_dir)
            write_summary(run_dir, result)
        logger.close()
        dist_utils.barrier(env)
        return result if env.is_main else None
    finally:
        if env.distributed:
            dist_utils.cleanup()
