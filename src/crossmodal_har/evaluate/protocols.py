"""Evaluation protocols as library functions: fit a classifier on labelled windows.

``fit_protocol(protocol, source, train, val, cfg, seed) -> FittedClassifier``; reused by
``crossmodal-har evaluate`` (few-shot harness) and ``crossmodal-har train-classifier`` (bundles).

Protocols:
- ``linear-probe``: the encoder is frozen (``requires_grad`` False, eval mode, not in any optimiser);
  embeddings are computed once, then a linear (multinomial logistic) head is trained on them.
- ``knn``: cosine k-nearest-neighbour vote on frozen embeddings of the training windows.
- ``finetune``: encoder + linear head trained end to end; backbone and head learning rates differ.
- ``supervised``: the same architecture from random initialisation, trained end to end: the
  no-pretraining baseline.

Model selection and early stopping look at the validation windows only (balanced accuracy, ties
broken by lower validation loss). The test split is never seen here.

The result's ``module`` maps windows in physical units [B, W, 6] (g, rad/s) to class scores [B, C];
per-window normalisation is inside it, so it can be saved or exported as is.

This module is the entry point: :data:`PROTOCOLS`, :class:`EncoderSource` (where the starting
encoder comes from) and :func:`fit_protocol`. Hyper-parameters are in
:mod:`~crossmodal_har.evaluate.protocol_config`, the fit loops in :mod:`~crossmodal_har.evaluate.fitting`,
the modules (classifier, heads, embedder) in :mod:`crossmodal_har.models.classifier`.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch
from torch import nn

from crossmodal_har.config import to_dict
from crossmodal_har.device import resolve_device
from crossmodal_har.errors import ConfigError, DataError, UserError
from crossmodal_har.evaluate.fitting import FittedClassifier, fit_end_to_end, fit_frozen
from crossmodal_har.evaluate.protocol_config import FitConfig
from crossmodal_har.models.encoder_file import encoder_preprocess, find_encoder_dir, load_encoder, read_encoder_meta
from crossmodal_har.models.registry import create_model, model_kind, with_input_channels
from crossmodal_har.models.weights import cpu_state_dict
from crossmodal_har.signals.types import PreprocessConfig, WindowSet

log = logging.getLogger(__name__)

PROTOCOLS = ("supervised", "linear-probe", "knn", "finetune")


# ------------------------------------------------------------------------------------------ encoders
class EncoderSource:
    """Where encoders come from: a saved encoder directory or a registry name (random init).

    ``build(pretrained=True)`` returns a fresh copy of the starting encoder (saved weights, or a new
    random init for ``random``); ``build(pretrained=False)`` the same architecture from random
    initialisation (for ``supervised``). Random inits depend on the torch seed set by the caller.
    """

    def __init__(self, name: str, model_name: str, config: Dict[str, Any], preprocess: PreprocessConfig,
                 path: Optional[Path] = None):
        self.name = name  # "random" or the encoder path
        self.model_name = model_name
        self.config = dict(config)
        self.preprocess = preprocess
        self.path = path
        self._state: Optional[Dict[str, Any]] = None
        self.pretrain_seed: Optional[int] = None  # set by from_dir for an encoder from a pretraining run

    @classmethod
    def random(cls, model_name: str, preprocess: PreprocessConfig, **overrides: Any) -> "EncoderSource":
        """A random-init ``model_name`` whose window length is the data's and which reads the
        channels ``preprocess.channels`` names (3 for ``acc``, 6 for ``acc+gyro``)."""
        if model_kind(model_name) != "imu":
            raise ConfigError(f"model {model_name!r} is not an IMU encoder")
        probe = create_model(model_name, **overrides)
        cfg = dict(probe.model_cfg)
        for key in ("context_length", "window"):  # keep the encoder's window = the data's window
            if key in cfg and cfg[key] != preprocess.window_samples:
                cfg[key] = preprocess.window_samples
        cfg = with_input_channels(model_name, cfg, preprocess.n_channels)
        return cls("random", model_name, cfg, preprocess)

    @classmethod
    def from_dir(cls, path: Union[str, Path]) -> "EncoderSource":
        """A saved encoder (encoder or run directory) with the preprocessing it was trained with."""
        model, meta = load_encoder(path)
        if getattr(model, "kind", "imu") != "imu":
            raise DataError(path, f"encoder {meta.get('model')!r} is not an IMU encoder")
        preprocess = encoder_preprocess(meta, path)
        n = int(getattr(model, "input_channels", 0) or 0)
        if n and n != preprocess.n_channels:
            raise DataError(find_encoder_dir(path) / "encoder.json",
                            f"preprocess.channels is {preprocess.channels!r} ({preprocess.n_channels} channels) "
                            f"but the encoder reads {n} input channels")
        src = cls(str(find_encoder_dir(path)), meta["model"], meta["config"], preprocess, Path(path))
        src._state = cpu_state_dict(model)
        # the pretraining seed, recorded with the encoder (report pools seeds of one method by it)
        src.pretrain_seed = (meta.get("extra") or {}).get("seed")
        return src

    @property
    def is_random(self) -> bool:
        return self._state is None

    def build(self, pretrained: bool = True) -> nn.Module:
        model = create_model(self.model_name, **self.config)
        if pretrained and self._state is not None:
            model.load_state_dict(self._state, strict=True)
        return model

    def info(self) -> Dict[str, Any]:
        seed = self.pretrain_seed
        return {"encoder": self.name, "model": self.model_name, "config": self.config,
                "pretrained": not self.is_random, "channels": self.preprocess.channels,
                "preprocess": to_dict(self.preprocess), **({"pretrain_seed": seed} if seed is not None else {})}


def saved_encoder_channels(path: Union[str, Path]) -> str:
    """The channels (``acc`` | ``acc+gyro``) a saved encoder reads: its ``encoder.json``'s
    ``preprocess.channels`` (``acc+gyro`` for an encoder saved before the key existed). Reads no weights."""
    meta = read_encoder_meta(path)
    return encoder_preprocess(meta, find_encoder_dir(path) / "encoder.json").channels


def require_channels(requested: Optional[str], encoder: Union[str, Path], have: Optional[str] = None,
                     flag: str = "--channels") -> None:
    """UserError when ``requested`` (from the command line; None = not given) contradicts the channels
    the saved encoder at ``encoder`` reads (``have``, read from it when not given)."""
    if requested is None:
        return
    have = have or saved_encoder_channels(encoder)
    if requested != have:
        raise UserError(f"{flag} {requested} contradicts the encoder {encoder}, which reads {have}; "
                        f"omit {flag} (a pretrained encoder brings its channels) or pretrain with {flag} {requested}")


# ------------------------------------------------------------------------------------------ protocols
def fit_protocol(protocol: str, source: EncoderSource, train: WindowSet, val: WindowSet, cfg: FitConfig,
                 seed: int, *, progress: Optional[bool] = None, desc: str = "",
                 frozen_embeddings: Optional[tuple] = None, encoder: Optional[nn.Module] = None
                 ) -> FittedClassifier:
    """Fit ``protocol`` on ``train``, selecting the model on ``val``.

    Args:
        protocol: one of :data:`PROTOCOLS`.
        source: where the encoder comes from (pretrained weights or a random-init architecture).
        train: labelled training windows (physical units); may be a few-shot subset.
        val: labelled validation windows (early stopping and model selection only).
        cfg: protocol hyper-parameters.
        seed: seeds the random initialisation, batch order and augmentation.
        progress: tqdm over epochs (``None`` = only on a terminal).
        desc: progress-bar label.
        frozen_embeddings: optional ``(z_train, z_val)`` already computed with the frozen starting
            encoder (``linear-probe``/``knn`` only; the harness computes a pretrained encoder's
            embeddings once for all runs). Must come from ``encoder`` (or ``source.build()``).
        encoder: the starting encoder to use instead of building one from ``source``.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if len(train) == 0:
        raise ConfigError("no training windows")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    np_rng = np.random.default_rng(seed)
    device = resolve_device(cfg.device)
    n_classes = len(train.class_names)
    norm = source.preprocess.normalization
    if encoder is None:
        encoder = source.build(pretrained=protocol != "supervised")
    torch.manual_seed(seed + 7919)  # the head's init does not depend on how the encoder was obtained
    if protocol in ("linear-probe", "knn"):
        fitted = fit_frozen(protocol, encoder, train, val, cfg, n_classes, norm, device, frozen_embeddings)
    else:
        tcfg = cfg.supervised if protocol == "supervised" else cfg.finetune
        head = None
        if protocol == "finetune" and tcfg.init_head_from_probe:
            # LP-FT (Kumar et al., ICLR 2022): start fine-tuning from the linear probe's head on
            # standardised embeddings, so early updates do not wreck the pretrained features
            # through a random head. The probe runs on a frozen copy; ``encoder`` stays trainable.
            probe = fit_frozen("linear-probe", copy.deepcopy(encoder), train, val, cfg, n_classes, norm, device,
                               None)
            head = probe.module.head
            torch.manual_seed(seed + 7919)
        fitted = fit_end_to_end(protocol, encoder, train, val, tcfg, cfg, n_classes, norm, device, np_rng,
                                progress, desc, head=head)
    fitted.preprocess = source.preprocess
    fitted.n_train = len(train)
    fitted.seconds = time.perf_counter() - t0
    fitted.module.to("cpu").eval()
    return fitted
