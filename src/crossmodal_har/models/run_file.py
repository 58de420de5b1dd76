"""A pretraining run's whole method: ``model.json`` (:class:`RunFile`) + ``model.safetensors`` in
the run directory, beside the encoder; the towers, heads and loss temperature zero-shot needs::

    {"format_version": 1, "method": "siglip", "config": {...PretrainConfig...}, "data": {...},
     "architecture": {"imu_encoder": {"model", "config"}, "video_encoder": {...} | null},
     "split": {...}, "data_meta": {...}}

The method's code lives in ``train/`` (which builds on ``models/``), so the caller hands
:func:`load_run_model` the function that rebuilds the untrained method from ``model.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from crossmodal_har.errors import ConfigError, DataError, UserError
from crossmodal_har.io import PathLike
from crossmodal_har.models.weights import (arch_params, check_architecture, check_weights_size, cpu_state_dict,
                                           load_state_strict, read_weights, unwrap, write_weights)
from crossmodal_har.saved import SavedFile, build_saved, errors_naming, read_saved, write_saved

RUN_META = "model.json"
RUN_WEIGHTS = "model.safetensors"


@dataclass
class ArchSpec:
    """One encoder of a run: its registry name and resolved config (checked on load)."""

    model: str
    config: Dict[str, Any]


@dataclass
class RunArchitecture:
    """The encoders a run's method holds (``video_encoder`` is null for imu-mae)."""

    imu_encoder: ArchSpec
    video_encoder: Optional[ArchSpec] = None


@dataclass
class RunFile(SavedFile):
    """``model.json``: what rebuilds a pretraining run's whole method.

    Attributes:
        method: ``siglip`` | ``clip`` | ``imu2clip`` | ``imu-mae`` ...
        config: the resolved ``PretrainConfig`` (checked by the method's own build function).
        data: facts of the training data (``video_kind``, ``video_dim``, ``num_frames``, ``window``,
            ``preprocess``).
        architecture: the encoders' names and configs.
        split: the subject split (caller-defined).
        data_meta: the data source's description (caller-defined).
    """

    VERSION = 1
    WHAT = RUN_META

    method: str
    config: Optional[Dict[str, Any]] = None
    data: Optional[Dict[str, Any]] = None
    architecture: Optional[RunArchitecture] = None
    split: Any = None
    data_meta: Any = None

    def validate(self) -> None:
        if not self.method:
            raise ConfigError("method: expected a non-empty string")

    def check_architectures(self) -> int:
        """Check every encoder the file names against the registry (nothing built); returns their
        lower-bound parameter count."""
        if self.architecture is None:
            return 0
        total = 0
        for key, kind in (("imu_encoder", "imu"), ("video_encoder", "video")):
            sec = getattr(self.architecture, key)
            if sec is not None:
                total += arch_params(check_architecture(sec.model, sec.config, f"architecture.{key}", kind=kind))
        return total

    def without_loading_options(self) -> "RunFile":
        """A copy whose method config cannot load or download weights: a rebuilt run takes its
        architecture from ``architecture`` and its weights from ``model.safetensors``."""
        cfg = dict(self.config or {})
        for key in list(cfg):
            if key == "allow_download":
                cfg[key] = False
            elif key == "pretrained" or key.endswith("_pretrained"):
                cfg[key] = None
        return dataclasses.replace(self, config=cfg)


def save_run_model(model, run_dir: PathLike, meta: Mapping[str, Any]) -> Path:
    """Write a run's whole method: ``run_dir/model.safetensors`` then ``run_dir/model.json``.

    Args:
        model: the method module (DDP/compiled wrappers are unwrapped).
        meta: the fields of :class:`RunFile` (``method``, ``config``, ``data``, ``architecture``,
            ``split``, ``data_meta``) as JSON data; ``format_version`` is added here.

    Returns:
        Path of ``model.json``.
    """
    run_dir = Path(run_dir)
    run = build_saved(RunFile, meta, run_dir / RUN_META)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_weights(run_dir / RUN_WEIGHTS, cpu_state_dict(unwrap(model)), {"format": "pt"})
    return write_saved(run, run_dir / RUN_META)


def read_run_meta(run_dir: PathLike) -> RunFile:
    """A finished run's ``model.json``, checked, its encoders against the registry too (a
    :class:`UserError` when the run has none yet)."""
    run_dir = Path(run_dir)
    meta_path = run_dir / RUN_META
    if not meta_path.is_file():
        raise UserError(f"{run_dir}: not a finished pretraining run (no {RUN_META}); "
                        "run `crossmodal-har pretrain` (or --resume it) first")
    run = read_saved(RunFile, meta_path)
    with errors_naming(meta_path):
        run.check_architectures()
    return run


def load_run_model(run_dir: PathLike, build: Callable[[RunFile, Path], Any],
                   device: str = "cpu") -> Tuple[Any, RunFile]:
    """Rebuild a pretraining run's full method from ``model.json`` + ``model.safetensors``.

    Args:
        build: ``build(meta, meta_path)`` returns the untrained method ``model.json`` describes
            (the method's code is ``train``'s; this module reads the files and loads the weights,
            strictly); ``meta`` never asks for pretrained weights; ``meta_path`` is for its errors.
        device: where the loaded model is moved.

    Returns:
        ``(model, meta)``, the model in eval mode.
    """
    run_dir = Path(run_dir)
    meta_path, weights = run_dir / RUN_META, run_dir / RUN_WEIGHTS
    meta = read_run_meta(run_dir)
    if meta.architecture is not None:
        check_weights_size(meta_path, weights, RUN_META, meta.check_architectures())
    try:
        model = build(meta.without_loading_options(), meta_path)
    except DataError:
        raise
    except (UserError, KeyError, TypeError, ValueError) as exc:  # the method's config section
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DataError(meta_path, f"cannot rebuild the run's method: {what}") from None
    load_state_strict(model, read_weights(weights), weights)
    model.to(device).eval()
    return model, meta
