"""The pretraining engine: plain PyTorch DDP, exact resume, atomic checkpoints.

Why not Lightning: we need resume to be *exact* (mid-epoch data order and every RNG state), and a
small dependency footprint. Here the whole state is visible in one place: the step counter (the
learning rate is a pure function of it), the epoch and batch position (data order is a pure
function of seed and epoch), the model, optimiser and loss-scaler states, and the RNG states of
every rank.

``pretrain(cfg, source, out_dir)`` runs one process, spawns ``devices`` local processes (gloo on CPU,
NCCL on CUDA), or — under torchrun / SLURM — runs as the rank the launcher assigned.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

import numpy as np

from crossmodal_har.errors import UserError
from crossmodal_har.train import distributed as dist_utils
from crossmodal_har.train.checkpoint import (CHECKPOINT_NAME, capture_rng_state, load_checkpoint,
                                             restore_rng_state, save_checkpoint, strip_module_prefix)
from crossmodal_har.train.config import PretrainConfig
from crossmodal_har.train.schedule import warmup_cosine_lr, warmup_steps_for

log = logging.getLogger(__name__)

MODEL_WEIGHTS = "model.safetensors"
MODEL_META = "model.json"
SUMMARY = "summary.json"
PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class PretrainResult:
    """What a finished (or stopped) run reports; also written to ``RUN_DIR/summary.json``."""

    run_dir: Path
    step: int
    total_steps: int
    epoch: int
    stopped: str  # completed | time_budget | interrupted
    val: Dict[str, float]
    train_loss: Optional[float]
    wall_s: float
    pairs_per_s: float


# --------------------------------------------------------------------------- data plumbing

class _SkipSampler:
    """Yields a rank's indices for the current epoch, skipping the first ``skip`` (resume mid-epoch)."""

    def __init__(self, base: Any, skip: int):
        self.base = base
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.base)[self.skip:])

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


def data_info(data: Any) -> Dict[str, Any]:
    """The data facts models are built from (also saved in ``model.json`` for zero-shot)."""
    from crossmodal_har.config import to_dict

    return {"video_kind": data.video_kind, "video_dim": data.video_dim, "num_frames": data.num_frames,
            "window": int(data.preprocess.window_samples), "preprocess": to_dict(data.preprocess)}


def _to_device(batch: Mapping[str, Any], device: Any) -> Dict[str, Any]:
    import torch

    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _amp(precision: str, device_type: str):
    """(autocast context factory, use GradScaler) for the configured precision."""
    import torch

    if precision == "32" or (precision == "auto" and device_type != "cuda"):
        return nullcontext, False
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device_type != "cuda" and dtype == torch.float16:
        raise UserError("precision 16 needs a CUDA device; use 32 or bf16 on CPU")
    return (lambda: torch.autocast(device_type=device_type, dtype=dtype)), dtype == torch.float16


def _param_groups(model: Any, weight_decay: float) -> List[Dict[str, Any]]:
    """Trainable parameters only (frozen towers are never handed to the optimiser); no weight decay
    on biases, norm weights and the loss's temperature/bias (ndim < 2)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- validation

def embed_dataset(model: Any, dataset: Any, batch_size: int, device: Any, max_windows: int = 0,
                  num_workers: int = 0, video_only: bool = False) -> Dict[str, np.ndarray]:
    """Normalised IMU and video embeddings of every window (eval mode, no gradients).

    With ``video_only`` the ``imu`` entry is left out (class prototypes need only video).

    Returns ``{"imu": [N, E], "video": [N, E], "label": [N], "subject": [N], "index": [N]}``.
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    if max_windows and len(dataset) > max_windows:
        keep = np.linspace(0, len(dataset) - 1, max_windows).round().astype(int)
        dataset = Subset(dataset, keep.tolist())
    was_training = model.training
    model.eval()
    out: Dict[str, List[Any]] = {"imu": [], "video": [], "label": [], "subject": [], "index": []}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    with torch.no_grad():
        for batch in loader:
            b = _to_device(batch, device)
            if not video_only:
                out["imu"].append(model.embed_imu(b["imu"]).float().cpu())
            out["video"].append(model.embed_video(b["video"]).float().cpu())
            out["label"].append(torch.as_tensor(batch["label"]))
            out["subject"].extend(list(batch["subject"]))
            out["index"].append(torch.as_tensor(batch["index"]))
    model.train(was_training)
    res = {k: torch.cat(v).numpy() for k, v in out.items() if k != "subject" and v}
    res["subject"] = np.asarray(out["subject"], dtype=object)
    return res


def validate(model: Any, dataset: Any, cfg: PretrainConfig, device: Any) -> Dict[str, float]:
    """``val/loss`` (mean over batches of the local loss) and IMU→video ``val/R@1``, ``val/R@5``,
    ``val/MRR`` among all validation windows (``val/chance_R@1`` beside them)."""
    import torch
    from torch.utils.data import DataLoader

    from crossmodal_har.evaluate.zeroshot import retrieval_metrics

    if cfg.method == "imu-mae":
        was_training = model.training
        model.eval()
        losses = []
        g = torch.random.get_rng_state()
        torch.manual_seed(cfg.seed)  # fixed masks: comparable across epochs
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False):
                loss, _ = model(_to_device(batch, device))
                losses.append(float(loss))
        torch.random.set_rng_state(g)  # validation must not shift the training RNG stream
        model.train(was_training)
        return {"val/loss": float(np.mean(losses)) if losses else float("nan")}
    emb = embed_dataset(model, dataset, cfg.batch_size, device, cfg.val_max_windows)
    with torch.no_grad():
        imu, vid = torch.from_numpy(emb["imu"]), torch.from_numpy(emb["video"])
        losses = [float(model.pair_loss(imu[i:i + cfg.batch_size].to(device), vid[i:i + cfg.batch_size].to(device)))
                  for i in range(0, len(imu), cfg.batch_size) if len(imu[i:i + cfg.batch_size]) > 1]
    m = retrieval_metrics(emb["imu"], emb["video"], ks=(1, 5))
    return {"val/loss": float(np.mean(losses)) if losses else float("nan"), "val/R@1": m["R@1"],
            "val/R@5": m["R@5"], "val/MRR": m["MRR"], "val/chance_R@1": m["chance_R@1"]}


# --------------------------------------------------------------------------- outputs

def export_run(model: Any, cfg: PretrainConfig, data: Any, run_dir: Path) -> None:
    """Write the IMU encoder alone (``encoder.safetensors`` + ``encoder.json``) and the whole method
    (``model.safetensors`` + ``model.json``: heads, loss temperature, video tower) for zero-shot."""
    from safetensors.torch import save_file

    from crossmodal_har.config import to_dict
    from crossmodal_har.io import atomic_write, atomic_write_json
    from crossmodal_har.models.io import save_encoder
    from crossmodal_har.train.methods import architecture

    save_encoder(model.imu_encoder, run_dir, data.preprocess,
                 extra={"method": cfg.method, "source": "crossmodal-har pretrain", "run_dir": run_dir.name})
    state = {k: v.detach().cpu().contiguous().clone() for k, v in strip_module_prefix(model.state_dict()).items()}
    atomic_write(run_dir / MODEL_WEIGHTS, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    atomic_write_json(run_dir / MODEL_META, {
        "format_version": 1, "method": cfg.method, "config": to_dict(cfg), "data": data_info(data),
        "architecture": architecture(model), "split": data.split, "data_meta": data.meta,
    })


# --------------------------------------------------------------------------- the loop

def _train_process(rank_hint: int, cfg: PretrainConfig, source: Any, out_dir: str, resume: bool,
                   device_type: str, stop_at_step: Optional[int], show_progress: bool) -> Optional[PretrainResult]:
    """One process of a run (rank from the launcher's environment, or 0 when alone)."""
    import torch
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from crossmodal_har.config import to_dict
    from crossmodal_har.io import atomic_write_json, atomic_write_text
    from crossmodal_har.train.loggers import MetricLogger
    from crossmodal_har.train.methods import build_method

    launched = dist_utils.launcher_env()
    if launched:
        env = dist_utils.init_process(launched["rank"], launched["world_size"], launched["local_rank"],
                                      device_type, launched["launcher"])
    else:
        env = dist_utils.init_process(0, 1, 0, device_type, "none")
    run_dir = Path(out_dir)
    try:
        device = torch.device(env.device)
        _seed_all(cfg.seed)  # identical initial weights on every rank
        data = source.load()
        if data.train is None or len(data.train) == 0:
            raise UserError("no training windows")
        model = build_method(cfg, data_info(data), env.rank, env.world_size).to(device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(_param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
        autocast, use_scaler = _amp(cfg.precision, device.type)
        scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

        sampler = DistributedSampler(data.train, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                     seed=cfg.seed, drop_last=True)
        steps_per_epoch = len(sampler) // cfg.batch_size
        if steps_per_epoch < 1:
            raise UserError(f"batch_size {cfg.batch_size} x {env.world_size} process(es) is larger than the "
                            f"{len(data.train)} training windows; lower batch_size")
        total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
        n_epochs = math.ceil(total_steps / steps_per_epoch)
        warmup = warmup_steps_for(total_steps, cfg.optim.warmup_fraction)

        step, epoch, batch_in_epoch = 0, 0, 0
        fitted = False
        ckpt_path = run_dir / CHECKPOINT_NAME
        if resume:
            ckpt = load_checkpoint(ckpt_path)
            model.load_state_dict(ckpt["model"], strict=True)
            opt.load_state_dict(ckpt["optimizer"])
            if use_scaler and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            step, epoch, batch_in_epoch = int(ckpt["step"]), int(ckpt["epoch"]), int(ckpt["batch_in_epoch"])
            fitted = bool(ckpt.get("fitted_to_budget", False))
            if fitted:  # the run's length was fitted to its time budget: keep it
                total_steps = int(ckpt["total_steps"])
                n_epochs = math.ceil(total_steps / steps_per_epoch)
                warmup = warmup_steps_for(total_steps, cfg.optim.warmup_fraction)
            elif int(ckpt["total_steps"]) != total_steps:
                log.warning("resuming with %d total steps instead of %d: the lr schedule changes", total_steps,
                            int(ckpt["total_steps"]))
            rngs = ckpt["rng"]
            if len(rngs) == env.world_size:
                restore_rng_state(rngs[env.rank])
            else:
                log.warning("checkpoint was written by %d process(es), this run has %d: the global batch, the "
                            "rest of this epoch's data order and the dropout/augmentation draws differ from an "
                            "uninterrupted run", len(rngs), env.world_size)
                _seed_all(cfg.seed + 7919 * (step + 1) + env.rank)
            if env.is_main:
                log.info("resumed from %s at step %d (epoch %d, batch %d)", ckpt_path, step, epoch, batch_in_epoch)
        else:
            # Different dropout / augmentation draws per rank, same weights.
            _seed_all(cfg.seed + 1 + env.rank)

        if env.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            import yaml

            resolved = to_dict(cfg)
            atomic_write_json(run_dir / "config.json", resolved)
            atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
            atomic_write_json(run_dir / "split.json", data.split)
            atomic_write_json(run_dir / "data.json", {**data_info(data), "meta": data.meta})
            log.info("%s: %d training windows, %d val, %d test; %d steps/epoch x %d process(es), %d steps, "
                     "%d trainable parameters", cfg.method, len(data.train), len(data.val or []),
                     len(data.test or []), steps_per_epoch, env.world_size, total_steps,
                     sum(p.numel() for p in trainable))
        logger = MetricLogger(run_dir, enabled=env.is_main, resume_step=step if resume else None)

        ddp_model = model
        if env.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ddp_model = DDP(model, device_ids=[env.local_rank] if device.type == "cuda" else None)

        def checkpoint(ep: int, bi: int) -> None:
            rngs = dist_utils.all_gather_object(capture_rng_state(), env)
            if env.is_main:
                save_checkpoint(ckpt_path, {
                    "model": strip_module_prefix(model.state_dict()), "optimizer": opt.state_dict(),
                    "scaler": scaler.state_dict() if use_scaler else {}, "step": step, "epoch": ep,
                    "batch_in_epoch": bi, "total_steps": total_steps, "fitted_to_budget": fitted, "rng": rngs,
                    "world_size": env.world_size, "config": to_dict(cfg),
                })
            dist_utils.barrier(env)

        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, desc=f"pretrain {cfg.method}", unit="step",
                   disable=(None if show_progress else True) if env.is_main else True, dynamic_ncols=True)
        t_start = time.time()
        start_step = step
        probe_steps = 5
        pairs_seen = 0
        last_loss: Optional[float] = None
        val_metrics: Dict[str, float] = {}
        stopped = "completed"
        model.train()
        while epoch < n_epochs and step < total_steps:
            sampler.set_epoch(epoch)
            if hasattr(data.train, "set_epoch"):
                data.train.set_epoch(epoch)
            loader = DataLoader(
                data.train, batch_size=cfg.batch_size, sampler=_SkipSampler(sampler, batch_in_epoch * cfg.batch_size),
                drop_last=True, num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                # own generator: creating the iterator must not consume the global RNG (exact resume)
                generator=torch.Generator().manual_seed(cfg.seed * 1000003 + epoch),
                persistent_workers=False)
            for batch in loader:
                if step >= total_steps:
                    break
                lr = warmup_cosine_lr(step, total_steps, cfg.optim.lr, cfg.optim.final_lr, warmup)
                for group in opt.param_groups:
                    group["lr"] = lr
                b = _to_device(batch, device)
                with autocast():
                    loss, extra = ddp_model(b)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                grad_norm = None
                if cfg.optim.grad_clip > 0:
                    scaler.unscale_(opt)
                    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.optim.grad_clip)
                scaler.step(opt)
                scaler.update()
                step += 1
                batch_in_epoch += 1
                pairs_seen += len(batch["imu"]) * env.world_size
                if step % cfg.log_every_steps == 0 or step == 1 or step == total_steps:
                    mean_loss = float(dist_utils.all_reduce_mean(loss.detach().float(), env))
                    last_loss = mean_loss
                    logs = {"train/loss": mean_loss, "train/lr": lr,
                            "train/pairs_per_s": pairs_seen / max(1e-9, time.time() - t_start)}
                    if grad_norm is not None:
                        logs["train/grad_norm"] = float(grad_norm)
                    logs.update({f"train/{k}": float(v) for k, v in extra.items()})
                    logger.log(logs, step, epoch)
                    bar.set_postfix(loss=f"{mean_loss:.4f}")
                bar.update(1)
                if (cfg.fit_schedule_to_budget and cfg.time_budget_s and not fitted
                        and step - start_step == probe_steps):
                    elapsed = time.time() - t_start
                    fit = step + int((0.85 * cfg.time_budget_s - elapsed) / (elapsed / probe_steps))
                    fit = int(dist_utils.broadcast_object(fit, env))
                    fitted = True
                    if fit < total_steps:
                        total_steps = max(step + 1, fit)
                        n_epochs = math.ceil(total_steps / steps_per_epoch)
                        warmup = min(warmup, warmup_steps_for(total_steps, cfg.optim.warmup_fraction))
                        bar.total = total_steps
                        if env.is_main:
                            log.info("fitted to the %.0f s time budget: %d steps (%.3f s/step)",
                                     cfg.time_budget_s, total_steps, elapsed / probe_steps)
                if step % cfg.checkpoint_every_steps == 0:
                    checkpoint(epoch, batch_in_epoch)
                if stop_at_step is not None and step >= stop_at_step:
                    stopped = "interrupted"
                    break
                if cfg.time_budget_s is not None:
                    over = torch.tensor(float(time.time() - t_start > cfg.time_budget_s))
                    if float(dist_utils.all_reduce_mean(over, env)) > 0:
                        stopped = "time_budget"
                        break
            if stopped != "completed":
                break
            # end of epoch (or of the run mid-epoch when max_steps says so)
            if data.val is not None and cfg.val_every_epochs and (
                    (epoch + 1) % cfg.val_every_epochs == 0 or step >= total_steps):
                if env.is_main:
                    val_metrics = validate(model, data.val, cfg, device)
                    logger.log(val_metrics, step, epoch)
                    log.info("epoch %d step %d: %s", epoch, step,
                             ", ".join(f"{k}={v:.4f}" for k, v in val_metrics.items()))
                dist_utils.barrier(env)
            epoch += 1
            batch_in_epoch = 0
            checkpoint(epoch, 0)
        bar.close()
        wall = time.time() - t_start
        if stopped != "completed" or step % cfg.checkpoint_every_steps:
            checkpoint(epoch, batch_in_epoch)
        if stopped == "time_budget" and env.is_main:
            log.warning("time budget of %.0f s reached at step %d of %d; resume with --resume to continue",
                        cfg.time_budget_s, step, total_steps)
        result = PretrainResult(run_dir=run_dir, step=step, total_steps=total_steps, epoch=epoch, stopped=stopped,
                                val=val_metrics, train_loss=last_loss, wall_s=wall,
                                pairs_per_s=pairs_seen / max(wall, 1e-9))
        if env.is_main:
            if stopped != "interrupted":
                export_run(model, cfg, data, run_dir)
            summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
            summary["run_dir"] = run_dir.name
            atomic_write_json(run_dir / SUMMARY, summary)
        logger.close()
        dist_utils.barrier(env)
        return result if env.is_main else None
    finally:
        if env.distributed:
            dist_utils.cleanup()


def _spawned(local_rank: int, cfg: PretrainConfig, source: Any, out_dir: str, resume: bool, device_type: str,
             stop_at_step: Optional[int], show_progress: bool, log_level: int = logging.INFO) -> None:
    # a spawned child starts with no logging setup: mirror the parent's level on rank 0 only
    logging.basicConfig(level=log_level if local_rank == 0 else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    _train_process(local_rank, cfg, source, out_dir, resume, device_type, stop_at_step, show_progress)


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
        accelerator: ``auto``, ``cpu`` or ``gpu``.
        num_nodes: nodes in the job (torchrun/SLURM only); checked against the launcher's world size.
        stop_at_step: stop after this optimiser step with a checkpoint and no export (tests use it
            to simulate an interruption).
        show_progress: tqdm bar on rank 0.
    """
    out = Path(out_dir)
    if not resume and (out / CHECKPOINT_NAME).exists():
        raise UserError(f"{out} already holds a run (checkpoint.pt); pass --resume to continue it or choose "
                        "another --out")
    if resume and not (out / CHECKPOINT_NAME).exists():
        raise UserError(f"{out}: nothing to resume (no {CHECKPOINT_NAME})")
    if devices < 1 or num_nodes < 1:
        raise UserError("--devices and --num-nodes must be >= 1")
    device_type = dist_utils.resolve_accelerator(accelerator)
    launched = dist_utils.launcher_env()
    if launched:
        expected = devices * num_nodes
        if (devices > 1 or num_nodes > 1) and launched["world_size"] != expected:
            raise UserError(f"the launcher started {launched['world_size']} processes but --devices {devices} x "
                            f"--num-nodes {num_nodes} = {expected}")
        res = _train_process(launched["rank"], cfg, source, os.fspath(out), resume, device_type, stop_at_step,
                             show_progress)
        return res if res is not None else _read_summary(out)
    if num_nodes > 1:
        raise UserError("--num-nodes > 1 needs a multi-node launcher: torchrun --nnodes N ... or srun under SLURM")
    if devices > 1:
        if device_type == "cuda":
            import torch

            if torch.cuda.device_count() < devices:
                raise UserError(f"--devices {devices} but only {torch.cuda.device_count()} CUDA device(s)")
        dist_utils.spawn(_spawned, devices, (cfg, source, os.fspath(out), resume, device_type, stop_at_step,
                                             show_progress, logging.getLogger().getEffectiveLevel()))
        return _read_summary(out)
    return _train_process(0, cfg, source, os.fspath(out), resume, device_type, stop_at_step, show_progress)


def _read_summary(run_dir: Path) -> PretrainResult:
    from crossmodal_har.io import read_json

    s = read_json(run_dir / SUMMARY)
    s["run_dir"] = run_dir
    return PretrainResult(**s)
