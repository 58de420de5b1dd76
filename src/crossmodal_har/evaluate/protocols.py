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
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossmodal_har.errors import ConfigError
from crossmodal_har.evaluate.metrics import classification_metrics
from crossmodal_har.signals.normalize import normalize_windows
from crossmodal_har.signals.types import PreprocessConfig, WindowSet

log = logging.getLogger(__name__)

PROTOCOLS = ("supervised", "linear-probe", "knn", "finetune")


# --------------------------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    """End-to-end training (``supervised`` and ``finetune``).

    Attributes:
        epochs: maximum epochs; an epoch is one pass over the training windows, but at least
            ``min_steps_per_epoch`` optimiser steps (few-shot sets are tiny).
        batch_size: windows per step (capped at the training-set size).
        lr: learning rate of the head (and of the whole model for ``supervised``).
        backbone_lr: encoder learning rate for ``finetune`` (``None`` = lr / 10).
        weight_decay: AdamW weight decay.
        patience: stop after this many epochs without a better validation score.
        warmup_epochs: linear learning-rate warm-up, then cosine decay to 0 at ``epochs``.
        class_weighted: weight the loss by inverse class frequency (balanced accuracy is the target).
        augment: light augmentation in physical units: per-window gain per sensor (1 ± scale_range)
            and Gaussian jitter of ``jitter`` × the window's per-channel std.
        label_smoothing: cross-entropy label smoothing.
        grad_clip: max gradient norm (0 = off).
        init_head_from_probe: ``finetune`` only: initialise the head from a linear probe on the
            frozen starting encoder (LP-FT) instead of at random.
    """

    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    backbone_lr: Optional[float] = None
    weight_decay: float = 1e-2
    patience: int = 5
    warmup_epochs: int = 1
    min_steps_per_epoch: int = 10
    class_weighted: bool = True
    augment: bool = True
    scale_range: float = 0.1
    jitter: float = 0.05
    label_smoothing: float = 0.0
    grad_clip: float = 1.0
    init_head_from_probe: bool = True

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1 or self.min_steps_per_epoch < 1:
            raise ConfigError("epochs, batch_size, patience and min_steps_per_epoch must be >= 1")
        if not self.lr > 0 or (self.backbone_lr is not None and not self.backbone_lr >= 0):
            raise ConfigError("learning rates must be > 0")
        if self.warmup_epochs < 0 or self.weight_decay < 0 or self.scale_range < 0 or self.jitter < 0:
            raise ConfigError("warmup_epochs, weight_decay, scale_range and jitter must be >= 0")


@dataclass
class ProbeConfig:
    """Linear head on frozen, standardised embeddings (multinomial logistic regression by AdamW).

    Attributes:
        steps: maximum full-batch optimiser steps.
        lr: learning rate.
        weight_decay: L2 penalty (AdamW decoupled weight decay).
        eval_every: steps between validation checks.
        patience: checks without improvement before stopping.
        class_weighted: inverse-frequency class weights in the loss.
    """

    steps: int = 500
    lr: float = 1e-2
    weight_decay: float = 1e-3
    eval_every: int = 10
    patience: int = 10
    class_weighted: bool = True

    def validate(self) -> None:
        if self.steps < 1 or self.eval_every < 1 or self.patience < 1 or not self.lr > 0:
            raise ConfigError("linear_probe: steps, eval_every, patience >= 1 and lr > 0 required")


@dataclass
class KnnConfig:
    """Cosine kNN: ``k`` neighbours (capped at the training-set size), votes weighted by
    ``exp(similarity / temperature)``."""

    k: int = 10
    temperature: float = 0.1

    def validate(self) -> None:
        if self.k < 1 or not self.temperature > 0:
            raise ConfigError("knn: k >= 1 and temperature > 0 required")


@dataclass
class FitConfig:
    """Everything :func:`fit_protocol` needs besides data. ``device``: ``cpu``, ``cuda`` or ``auto``."""

    supervised: TrainConfig = field(default_factory=TrainConfig)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-3, backbone_lr=1e-4))
    linear_probe: ProbeConfig = field(default_factory=ProbeConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    device: str = "cpu"
    eval_batch_size: int = 256

    def validate(self) -> None:
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")
        if self.eval_batch_size < 1:
            raise ConfigError("eval_batch_size must be >= 1")


def resolve_device(name: str):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from crossmodal_har.errors import UserError

        raise UserError("--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device(name)


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

    @classmethod
    def random(cls, model_name: str, preprocess: PreprocessConfig, **overrides: Any) -> "EncoderSource":
        from crossmodal_har.models.registry import create_model, model_kind

        if model_kind(model_name) != "imu":
            raise ConfigError(f"model {model_name!r} is not an IMU encoder")
        probe = create_model(model_name, **overrides)
        cfg = dict(probe.model_cfg)
        for key in ("context_length", "window"):  # keep the encoder's window = the data's window
            if key in cfg and cfg[key] != preprocess.window_samples:
                cfg[key] = preprocess.window_samples
        return cls("random", model_name, cfg, preprocess)

    @classmethod
    def from_dir(cls, path: Union[str, Path]) -> "EncoderSource":
        from crossmodal_har.config import from_dict
        from crossmodal_har.errors import DataError
        from crossmodal_har.models.io import encoder_state_dict, find_encoder_dir, load_encoder

        model, meta = load_encoder(path)
        if getattr(model, "kind", "imu") != "imu":
            raise DataError(path, f"encoder {meta.get('model')!r} is not an IMU encoder")
        if not isinstance(meta.get("preprocess"), dict):
            raise DataError(path, "encoder.json has no 'preprocess' section: cannot preprocess like training did")
        preprocess = from_dict(PreprocessConfig, meta["preprocess"], where=f"{path}: preprocess")
        src = cls(str(find_encoder_dir(path)), meta["model"], meta["config"], preprocess, Path(path))
        src._state = encoder_state_dict(model)
        return src

    @property
    def is_random(self) -> bool:
        return self._state is None

    def build(self, pretrained: bool = True):
        from crossmodal_har.models.registry import create_model

        model = create_model(self.model_name, **self.config)
        if pretrained and self._state is not None:
            model.load_state_dict(self._state, strict=True)
        return model

    def info(self) -> Dict[str, Any]:
        from crossmodal_har.config import to_dict

        return {"encoder": self.name, "model": self.model_name, "config": self.config,
                "pretrained": not self.is_random, "preprocess": to_dict(self.preprocess)}


# ------------------------------------------------------------------------------------------- modules
class WindowClassifier(nn.Module):
    """Physical-unit windows [B, W, 6] (g, rad/s) -> normalise -> encoder -> head -> scores [B, C].

    With ``freeze_encoder`` the encoder's parameters never require gradients and it never leaves
    eval mode, whatever ``train()`` is called with.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, normalization: str, freeze_encoder: bool = False):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.normalization = normalization
        self.freeze_encoder = bool(freeze_encoder)
        if self.freeze_encoder:
            _freeze(self.encoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(normalize_windows(x, self.normalization)))

    def train(self, mode: bool = True) -> "WindowClassifier":
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.train(False)
        return self


class StandardizedLinear(nn.Module):
    """Linear layer on standardised embeddings: ((z - mean) / std) @ W.T + b."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, n_classes: int):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.linear = nn.Linear(len(mean), n_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear((z - self.mean) / self.std)


class KnnHead(nn.Module):
    """Cosine kNN vote against a stored bank of L2-normalised training embeddings.

    Returns log vote shares [B, C]; votes are weighted by exp((similarity - 1) / temperature).
    """

    def __init__(self, bank: np.ndarray, labels: np.ndarray, n_classes: int, k: int, temperature: float):
        super().__init__()
        bank_t = torch.as_tensor(bank, dtype=torch.float32)
        self.register_buffer("bank", F.normalize(bank_t, dim=1))
        self.register_buffer("onehot", F.one_hot(torch.as_tensor(labels, dtype=torch.long), n_classes).float())
        self.k = int(min(k, len(bank_t)))
        self.temperature = float(temperature)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        sim = F.normalize(z, dim=1) @ self.bank.T
        top, idx = sim.topk(self.k, dim=1)
        w = torch.exp((top - 1.0) / self.temperature)
        votes = (w.unsqueeze(-1) * self.onehot[idx]).sum(dim=1)
        return torch.log(votes / votes.sum(dim=1, keepdim=True) + 1e-8)


def _freeze(module) -> None:
    if hasattr(module, "freeze"):
        module.freeze()
    else:
        for p in module.parameters():
            p.requires_grad_(False)
        module.eval()


# -------------------------------------------------------------------------------------------- result
@dataclass
class FittedClassifier:
    """A trained classifier and how it was chosen.

    Attributes:
        module: nn.Module, windows [B, W, 6] in g and rad/s -> class scores [B, C] (eval mode).
        protocol: which protocol made it.
        class_names: names of the C classes, in score order.
        preprocess: how windows must be made for it.
        val_metrics: validation metrics of the selected model (see ``metrics.classification_metrics``).
        best_epoch: selected epoch (or probe step; 0 for knn).
        history: per-check validation scores.
        n_train: training windows used.
        seconds: wall time of the fit.
    """

    module: Any
    protocol: str
    class_names: List[str]
    preprocess: PreprocessConfig
    val_metrics: Dict[str, Any]
    best_epoch: int = 0
    history: List[Dict[str, float]] = field(default_factory=list)
    n_train: int = 0
    seconds: float = 0.0

    def predict_scores(self, x: np.ndarray, batch_size: int = 256, device: Any = "cpu") -> np.ndarray:
        """Class scores [N, C] (float32) for windows ``x`` [N, W, 6] in physical units."""
        return _predict(self.module, x, batch_size, device)

    def predict(self, x: np.ndarray, batch_size: int = 256, device: Any = "cpu") -> np.ndarray:
        """Predicted class indices [N]."""
        return self.predict_scores(x, batch_size, device).argmax(axis=1)


def _batched(module, x: np.ndarray, batch_size: int, device: Any, fn: Callable, out_dim: int) -> np.ndarray:
    """``fn(batch)`` over ``x`` in eval mode without gradients, as float32 numpy [N, out_dim]."""
    module.eval()
    module.to(device)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(np.ascontiguousarray(x[i:i + batch_size]), dtype=torch.float32, device=device)
            out.append(fn(xb).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, out_dim), np.float32)


def _predict(module, x: np.ndarray, batch_size: int, device: Any) -> np.ndarray:
    return _batched(module, x, batch_size, device, module, 0)


def embed_windows(encoder, x: np.ndarray, normalization: str, batch_size: int = 256, device: Any = "cpu") -> np.ndarray:
    """Embeddings [N, D] (float32) of windows ``x`` [N, W, 6] in physical units; encoder in eval mode,
    no gradients."""
    from crossmodal_har.signals.normalize import normalize_windows

    return _batched(encoder, x, batch_size, device, lambda xb: encoder(normalize_windows(xb, normalization)),
                    int(getattr(encoder, "embed_dim", 0)))


def _class_weights(y: np.ndarray, n_classes: int):
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (max(1, (counts > 0).sum()) * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(w, dtype=torch.float32)


def _score_key(metrics: Dict[str, Any], loss: float) -> tuple:
    ba = metrics["balanced_accuracy"]
    return (-1.0 if ba is None or math.isnan(ba) else ba, -loss)


# ------------------------------------------------------------------------------------------ protocols
def build_optimizer(param_groups: List[Dict[str, Any]], weight_decay: float):
    """AdamW over the given parameter groups (a separate function so tests can inspect it)."""
    return torch.optim.AdamW(param_groups, weight_decay=weight_decay)


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
    import time

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
        fitted = _fit_frozen(protocol, encoder, train, val, cfg, n_classes, norm, device, frozen_embeddings)
    else:
        tcfg = cfg.supervised if protocol == "supervised" else cfg.finetune
        head = None
        if protocol == "finetune" and tcfg.init_head_from_probe:
            # LP-FT (Kumar et al., ICLR 2022): start fine-tuning from the linear probe's head on
            # standardised embeddings, so early updates do not wreck the pretrained features
            # through a random head. The probe runs on a frozen copy; ``encoder`` stays trainable.
            probe = _fit_frozen("linear-probe", copy.deepcopy(encoder), train, val, cfg, n_classes, norm, device,
                                None)
            head = probe.module.head
            torch.manual_seed(seed + 7919)
        fitted = _fit_end_to_end(protocol, encoder, train, val, tcfg, cfg, n_classes, norm, device, np_rng,
                                 progress, desc, head=head)
    fitted.preprocess = source.preprocess
    fitted.n_train = len(train)
    fitted.seconds = time.perf_counter() - t0
    fitted.module.to("cpu").eval()
    return fitted


def _fit_frozen(protocol, encoder, train, val, cfg, n_classes, norm, device, cached) -> FittedClassifier:
    _freeze(encoder)
    if cached is not None:
        z_tr, z_va = (np.asarray(z, dtype=np.float32) for z in cached)
        if len(z_tr) != len(train) or len(z_va) != len(val):
            raise ValueError("frozen_embeddings do not match the train/val windows")
    else:
        z_tr = embed_windows(encoder, train.x, norm, cfg.eval_batch_size, device)
        z_va = embed_windows(encoder, val.x, norm, cfg.eval_batch_size, device)
    history: List[Dict[str, float]] = []
    best_step = 0
    if protocol == "knn":
        head = KnnHead(z_tr, train.y, n_classes, cfg.knn.k, cfg.knn.temperature)
    else:
        p = cfg.linear_probe
        mean = z_tr.mean(axis=0)
        std = z_tr.std(axis=0) + 1e-6
        head = StandardizedLinear(mean, std, n_classes).to(device)
        opt = build_optimizer([{"params": list(head.parameters()), "lr": p.lr}], p.weight_decay)
        zt = torch.as_tensor(z_tr, device=device)
        yt = torch.as_tensor(train.y, dtype=torch.long, device=device)
        zv = torch.as_tensor(z_va, device=device)
        weight = _class_weights(train.y, n_classes).to(device) if p.class_weighted else None
        best_key, best_state, bad = None, None, 0
        for step in range(1, p.steps + 1):
            head.train()
            loss = F.cross_entropy(head(zt), yt, weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % p.eval_every == 0 or step == p.steps:
                head.eval()
                with torch.no_grad():
                    logits = head(zv)
                    vloss = float(F.cross_entropy(
                        logits, torch.as_tensor(val.y, dtype=torch.long, device=device)).item()) if len(val) else 0.0
                m = classification_metrics(val.y, logits.argmax(1).cpu().numpy(), n_classes) if len(val) else \
                    {"balanced_accuracy": float("nan")}
                history.append({"step": step, "val_loss": vloss, "val_balanced_accuracy": m["balanced_accuracy"]})
                key = _score_key(m, vloss)
                if best_key is None or key > best_key:
                    best_key, best_state, best_step, bad = key, copy.deepcopy(head.state_dict()), step, 0
                else:
                    bad += 1
                    if bad >= p.patience:
                        break
        head.load_state_dict(best_state)
    head.eval()
    module = WindowClassifier(encoder, head.to("cpu"), norm, freeze_encoder=True)
    scores = module.head(torch.as_tensor(z_va)).detach().numpy() if len(val) else np.zeros((0, n_classes))
    val_metrics = classification_metrics(val.y, scores.argmax(1), n_classes) if len(val) else {}
    return FittedClassifier(module=module, protocol=protocol, class_names=list(train.class_names),
                            preprocess=train.preprocess, val_metrics=val_metrics, best_epoch=best_step,
                            history=history)


def _augment(xb, cfg: TrainConfig, gen):
    b = xb.shape[0]
    if cfg.scale_range > 0:
        gain = 1.0 + (torch.rand(b, 1, 2, generator=gen) * 2 - 1) * cfg.scale_range
        xb = xb * gain.repeat_interleave(3, dim=2).to(xb.device)
    if cfg.jitter > 0:
        std = xb.std(dim=1, keepdim=True)
        xb = xb + torch.randn(xb.shape, generator=gen).to(xb.device) * std * cfg.jitter
    return xb


def _fit_end_to_end(protocol, encoder, train, val, tcfg: TrainConfig, cfg: FitConfig, n_classes, norm, device,
                    np_rng, progress, desc, head: Optional[nn.Module] = None) -> FittedClassifier:
    from tqdm.auto import tqdm

    if head is None:
        head = nn.Linear(int(encoder.embed_dim), n_classes)
    module = WindowClassifier(encoder, head, norm).to(device)
    if protocol == "finetune":
        backbone_lr = tcfg.backbone_lr if tcfg.backbone_lr is not None else tcfg.lr / 10.0
        groups = [{"params": [p for p in encoder.parameters() if p.requires_grad], "lr": backbone_lr},
                  {"params": list(head.parameters()), "lr": tcfg.lr}]
    else:
        groups = [{"params": list(module.parameters()), "lr": tcfg.lr}]
    for g in groups:
        g["base_lr"] = g["lr"]
    opt = build_optimizer(groups, tcfg.weight_decay)
    n = len(train)
    bs = min(tcfg.batch_size, n)
    steps_per_epoch = max(math.ceil(n / bs), tcfg.min_steps_per_epoch)
    total = steps_per_epoch * tcfg.epochs
    warm = steps_per_epoch * tcfg.warmup_epochs
    weight = _class_weights(train.y, n_classes).to(device) if tcfg.class_weighted else None
    x_tr = torch.as_tensor(train.x, dtype=torch.float32)
    y_tr = torch.as_tensor(train.y, dtype=torch.long)
    y_va = torch.as_tensor(val.y, dtype=torch.long)
    gen = torch.Generator().manual_seed(int(np_rng.integers(2**31)))
    order = np.empty(0, dtype=np.int64)
    best_key, best_state, best_epoch, bad = None, None, 0, 0
    history: List[Dict[str, float]] = []
    val_metrics: Dict[str, Any] = {}
    step = 0
    bar = tqdm(range(1, tcfg.epochs + 1), desc=desc or protocol, unit="epoch", leave=False, disable=None if progress is None else not progress)
    for epoch in bar:
        module.train()
        run_loss = 0.0
        for _ in range(steps_per_epoch):
            if len(order) < bs:
                order = np.concatenate([order, np_rng.permutation(n)])
            idx, order = order[:bs], order[bs:]
            xb = x_tr[idx]
            if tcfg.augment:
                xb = _augment(xb, tcfg, gen)
            xb, yb = xb.to(device), y_tr[idx].to(device)
            frac = step / max(1, total)
            scale = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * scale
            loss = F.cross_entropy(module(xb), yb, weight=weight,
                                                     label_smoothing=tcfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), tcfg.grad_clip)
            opt.step()
            run_loss += float(loss.item())
            step += 1
        if len(val):
            scores = _predict(module, val.x, cfg.eval_batch_size, device)
            vloss = float(F.cross_entropy(torch.as_tensor(scores), y_va).item())
            m = classification_metrics(val.y, scores.argmax(1), n_classes)
        else:  # no validation windows: keep the last epoch
            vloss, m = 0.0, {"balanced_accuracy": float(epoch)}
        history.append({"epoch": epoch, "train_loss": run_loss / steps_per_epoch, "val_loss": vloss,
                        "val_balanced_accuracy": m["balanced_accuracy"]})
        bar.set_postfix(loss=f"{run_loss / steps_per_epoch:.3f}", val_bacc=f"{m['balanced_accuracy']:.3f}")
        key = _score_key(m, vloss)
        if best_key is None or key > best_key:
            best_key, best_epoch, bad = key, epoch, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            val_metrics = m if len(val) else {}
        else:
            bad += 1
            if bad >= tcfg.patience:
                break
    bar.close()
    module.load_state_dict(best_state)
    module.eval()
    return FittedClassifier(module=module, protocol=protocol, class_names=list(train.class_names),
                            preprocess=train.preprocess, val_metrics=val_metrics, best_epoch=best_epoch,
                            history=history)
