"""The run directory of a pretraining run: its file names, what the run writes there, how readers rebuild it.

``RUN_DIR/`` holds (docs/pretraining.md, "The run directory")::

    config.json, config.yaml   the resolved PretrainConfig             (write_run_files)
    split.json                 subjects per split                      (write_run_files)
    data.json                  data_info + the source's provenance     (write_run_files)
    checkpoint.pt              exact-resume state                      (train.checkpoint)
    metrics.csv, tensorboard/  metrics                                 (train.loggers)
    encoder.*, model.*         the IMU encoder and the whole method    (export_run; formats: models.encoder_file, models.run_file)
    summary.json               the PretrainResult                      (write_summary / read_summary)

The training loop writes a run; zero-shot evaluation reads it back with :func:`load_run` (the
method's code is ``train``'s, the file formats ``models.encoder_file`` and ``models.run_file``').
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import yaml

from crossmodal_har.config import from_dict, to_dict
from crossmodal_har.errors import UserError
from crossmodal_har.io import atomic_write_json, atomic_write_text, read_json
from crossmodal_har.models.encoder_file import save_encoder
from crossmodal_har.models.run_file import RunFile, load_run_model, save_run_model
from crossmodal_har.train.checkpoint import CHECKPOINT_NAME
from crossmodal_har.train.config import PretrainConfig, with_saved_defaults
from crossmodal_har.train.methods import PretrainMethod, build_method, method_architecture

PathLike = Union[str, "os.PathLike[str]"]

CONFIG_JSON = "config.json"
CONFIG_YAML = "config.yaml"
SPLIT_JSON = "split.json"
DATA_JSON = "data.json"
SUMMARY = "summary.json"


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
    wall_s: float  # seconds of the training loop (this process)
    pairs_per_s: float  # training pairs per second over all processes


def data_info(data: Any) -> Dict[str, Any]:
    """The data facts a method is built from (``build_method``'s ``data_info``; saved in ``data.json``
    and in ``model.json`` so that zero-shot rebuilds the method and checks a store against it)."""
    return {"video_kind": data.video_kind, "video_dim": data.video_dim, "num_frames": data.num_frames,
            "window": int(data.preprocess.window_samples), "preprocess": to_dict(data.preprocess)}


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """A new run needs a directory without a checkpoint; a resumed one needs its checkpoint."""
    if not resume and (run_dir / CHECKPOINT_NAME).exists():
        raise UserError(f"{run_dir} already holds a run ({CHECKPOINT_NAME}); pass --resume to continue it or "
                        "choose another --out")
    if resume and not (run_dir / CHECKPOINT_NAME).exists():
        raise UserError(f"{run_dir}: nothing to resume (no {CHECKPOINT_NAME})")


def write_run_files(run_dir: Path, cfg: PretrainConfig, data: Any) -> None:
    """The resolved config (JSON and YAML), the subject split and the data facts (rank 0, at start)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = to_dict(cfg)
    atomic_write_json(run_dir / CONFIG_JSON, resolved)
    atomic_write_text(run_dir / CONFIG_YAML, yaml.safe_dump(resolved, sort_keys=False))
    atomic_write_json(run_dir / SPLIT_JSON, data.split)
    atomic_write_json(run_dir / DATA_JSON, {**data_info(data), "meta": data.meta})


def export_run(model: PretrainMethod, cfg: PretrainConfig, data: Any, run_dir: Path) -> None:
    """Write the IMU encoder alone (``encoder.safetensors`` + ``encoder.json``) and the whole method
    (``model.safetensors`` + ``model.json``: heads, loss temperature, video tower) for zero-shot."""
    save_encoder(model.imu_encoder, run_dir, data.preprocess,
                 extra={"method": cfg.method, "source": "crossmodal-har pretrain", "run_dir": run_dir.name,
                        "seed": int(cfg.seed)})
    save_run_model(model, run_dir, {
        "method": cfg.method, "config": to_dict(cfg), "data": data_info(data),
        "architecture": method_architecture(model), "split": data.split, "data_meta": data.meta,
    })


def rebuild_method(meta: RunFile, meta_path: Path) -> PretrainMethod:
    """The untrained method a run's ``model.json`` describes (``load_run_model`` loads its weights)."""
    cfg = from_dict(PretrainConfig, with_saved_defaults(meta["config"]), where=str(meta_path))
    return build_method(cfg, meta["data"], arch=meta["architecture"])


def load_run(run_dir: PathLike, device: str = "cpu") -> Tuple[PretrainMethod, RunFile]:
    """A finished run's whole method with its trained weights (eval mode, on ``device``) and its
    ``model.json``."""
    return load_run_model(run_dir, rebuild_method, device)


def write_summary(run_dir: Path, result: PretrainResult) -> None:
    """``summary.json``: the result, with the run directory as its name only (the folder may move)."""
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
    summary["run_dir"] = run_dir.name
    atomic_write_json(run_dir / SUMMARY, summary)


def read_summary(run_dir: Path) -> PretrainResult:
    """The result a run (or its rank 0, when this process did not train) wrote to ``summary.json``."""
    s = read_json(run_dir / SUMMARY)
    s["run_dir"] = run_dir
    return PretrainResult(**s)
