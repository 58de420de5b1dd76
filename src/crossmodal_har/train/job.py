"""One pretraining job as ``crossmodal-har pretrain`` asks for it: :class:`PretrainJob` ->
:func:`run_job`.

A job decides what :func:`~crossmodal_har.train.engine.pretrain` is given: the run's config (a named
config or a file, or on resume the run's own ``config.json``, whose seed cannot change), the data
(a window store or built-in synthetic pairs) and the IMU channels (the store's unless asked; on
resume the run's own, which its checkpoint's shapes were made for).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Literal, Optional, Union

from crossmodal_har.config import build_config
from crossmodal_har.errors import ConfigError, UserError
from crossmodal_har.io import read_json
from crossmodal_har.train.config import PretrainConfig, load_pretrain_config, with_saved_defaults
from crossmodal_har.train.data import ChannelSource, StoreSource
from crossmodal_har.train.engine import pretrain
from crossmodal_har.train.rundir import PretrainResult
from crossmodal_har.train.synthetic import SyntheticSource

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class PretrainJob:
    """What one ``pretrain`` call trains, beside the run config itself (built by ``config.build_config``).

    Attributes:
        config: a config file or named config (``siglip-tiny``, ``paper/siglip``); None = the named
            config of ``method`` (``siglip`` without one). Not read on resume (the run's own is).
        overrides: ``KEY=VALUE`` strings applied last (dotted keys for nesting).
        method, max_steps, seed, time_budget_s: run config fields set by flags (None = the config's);
            ``time_budget_s`` in seconds.
        allow_download: let pretrained hub ids download. Only this field turns it on: a config file
            that says so is ignored with a warning.
        store: a window store directory (``crossmodal-har ingest``), or
        synthetic: built-in synthetic pairs instead (a smoke test).
        channels: ``acc+gyro`` or ``acc`` for the IMU tower (None = the store's; on resume the run's).
        resume: continue the run in the output directory exactly where it stopped.
        devices, accelerator, num_nodes: how processes are launched (``engine.pretrain``).
    """

    config: Optional[str] = None
    overrides: List[str] = field(default_factory=list)
    method: Optional[Literal["siglip", "clip", "imu2clip", "imu-mae"]] = None
    max_steps: Optional[int] = None
    seed: Optional[int] = None
    time_budget_s: Optional[float] = None
    allow_download: bool = False
    store: Optional[str] = None
    synthetic: bool = False
    channels: Optional[Literal["acc", "acc+gyro"]] = None
    resume: bool = False
    devices: int = 1
    accelerator: str = "auto"
    num_nodes: int = 1

    def validate(self) -> None:
        if not self.store and not self.synthetic:
            raise UserError("pass --store STORE (a window store from `crossmodal-har ingest`) or --synthetic")
        if self.store and self.synthetic:
            raise ConfigError("store and synthetic exclude each other: train on one")


def run_config(job: PretrainJob, out: PathLike) -> PretrainConfig:
    """The run's config: on resume the run's own ``config.json`` (a different ``seed`` is refused),
    else ``job.config`` or the named config of ``job.method``; then the job's fields and overrides."""
    out = Path(out)
    flags = {"method": job.method, "max_steps": job.max_steps, "time_budget_s": job.time_budget_s,
             "seed": job.seed, "allow_download": True if job.allow_download else None}
    if job.resume and (out / "config.json").is_file():
        if job.config:
            log.warning("--resume: using %s/config.json (the run's own config), not --config", out)
        saved = with_saved_defaults(read_json(out / "config.json"))
        if job.seed is not None and int(saved.get("seed", 0)) != job.seed:
            raise UserError(f"--resume: {out} was started with seed {saved.get('seed', 0)}, not --seed {job.seed}; "
                            "a resumed run keeps its seed")
        cfg = build_config(PretrainConfig, saved, flags=flags, overrides=job.overrides, where=str(out / "config.json"))
    else:
        cfg = load_pretrain_config(job.config or (job.method or "siglip"), job.overrides, **flags)
    if cfg.allow_download and not job.allow_download:  # said by a file (--config, the run's config.json)
        log.warning("allow_download in the config ignored: only --allow-download on the command line fetches weights")
        cfg = dataclasses.replace(cfg, allow_download=False)
    return cfg


def job_source(job: PretrainJob, cfg: PretrainConfig, out: PathLike) -> Any:
    """The data source (``load() -> PairedData``): the store or synthetic pairs, read with the job's
    channels (on resume the run's own, from its ``data.json``; a different one is refused)."""
    out = Path(out)
    if job.synthetic:
        if cfg.split.shuffle_train_pairs:
            raise UserError("split.shuffle_train_pairs applies to stores; with --synthetic use a store made by "
                            "train.synthetic.write_synthetic_store instead")
        explicit = cfg.split.val_subjects or cfg.split.test_subjects
        source: Any = SyntheticSource(video_kind="embeddings", split=cfg.split if explicit else None)
    else:
        if not Path(job.store).is_dir():
            raise UserError(f"{job.store}: no such store directory")
        source = StoreSource(str(job.store), cfg.split)
    channels = job.channels
    if job.resume and (out / "data.json").is_file():  # the run's own channels (its checkpoint's shapes)
        saved_pre = read_json(out / "data.json").get("preprocess") or {}
        saved_channels = saved_pre.get("channels", "acc+gyro") if isinstance(saved_pre, dict) else "acc+gyro"
        if channels is not None and channels != saved_channels:
            raise UserError(f"--resume: {out} was started with --channels {saved_channels}, not {channels}; "
                            "a resumed run keeps its channels")
        channels = saved_channels
    return source if channels is None else ChannelSource(source, channels)


@dataclass
class FinishedJob:
    """A job's run config and what the run reported (``RUN_DIR/summary.json``)."""

    config: PretrainConfig
    result: PretrainResult

    def summary_line(self) -> str:
        """One line for the terminal: method, how and where it stopped, speed, validation metrics."""
        res = self.result
        val = "  ".join(f"{k}={v:.4f}" for k, v in (res.val or {}).items())
        return (f"{self.config.method}: {res.stopped} at step {res.step}/{res.total_steps} in {res.wall_s:.1f} s "
                f"({res.pairs_per_s:.0f} pairs/s); {val}")


def run_job(job: PretrainJob, out: PathLike, *, show_progress: bool = True) -> FinishedJob:
    """Run (or resume) ``job`` into the run directory ``out``."""
    job.validate()
    cfg = run_config(job, out)
    source = job_source(job, cfg, out)
    res = pretrain(cfg, source, out, resume=job.resume, devices=job.devices, accelerator=job.accelerator,
                   num_nodes=job.num_nodes, show_progress=show_progress)
    return FinishedJob(cfg, res)
