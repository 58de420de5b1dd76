"""The two fit loops of the evaluation protocols and their result type.

- :func:`fit_frozen`: ``linear-probe`` (a :class:`~crossmodal_har.models.classifier.StandardizedLinear`
  trained full-batch on frozen embeddings) and ``knn`` (a
  :class:`~crossmodal_har.models.classifier.KnnHead` over them).
- :func:`fit_end_to_end`: ``supervised`` and ``finetune`` (encoder + linear head, mini-batches).

Model selection and early stopping look at the validation windows only (balanced accuracy, ties
broken by lower validation loss). :func:`crossmodal_har.evaluate.protocols.fit_protocol` seeds and
dispatches; these loops draw from the RNGs in a fixed order, so a seed gives the same classifier.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossmodal_har.evaluate.metrics import classification_metrics
from crossmodal_har.evaluate.protocol_config import FinetuneConfig, FitConfig
from crossmodal_har.models.classifier import (KnnHead, StandardizedLinear, WindowClassifier, embed_windows,
                                              freeze, predict_windows)
from crossmodal_har.progress import progress as progress_bar
from crossmodal_har.signals.types import PreprocessConfig, WindowSet


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
        return predict_windows(self.module, x, batch_size, device)

    def predict(self, x: np.ndarray, batch_size: int = 256, device: Any = "cpu") -> np.ndarray:
        """Predicted class indices [N]."""
        return self.predict_scores(x, batch_size, device).argmax(axis=1)



def _class_weights(y: np.ndarray, n_classes: int):
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (max(1, (counts > 0).sum()) * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(w, dtype=torch.float32)


def _score_key(metrics: Dict[str, Any], loss: float) -> tuple:
    ba = metrics["balanced_accuracy"]
    return (-1.0 if ba is None or math.isnan(ba) else ba, -loss)


def build_optimizer(param_groups: List[Dict[str, Any]], weight_decay: float):
    """AdamW over the given parameter groups (a separate function so tests can inspect it)."""
    return torch.optim.AdamW(param_groups, weight_decay=weight_decay)


def fit_frozen(protocol: str, encoder: nn.Module, train: WindowSet, val: WindowSet, cfg: FitConfig, n_classes: int,
               norm: str, device: Any, cached: Optional[tuple]) -> FittedClassifier:
    """``linear-probe`` / ``knn`` on the frozen ``encoder``'s embeddings (``cached``: ``(z_train, z_val)``
    already computed with it). The probe's step with the best validation score is kept."""
    freeze(encoder)
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


def _augment(xb, cfg: FinetuneConfig, gen):
    b = xb.shape[0]
    if cfg.scale_range > 0:
        gain = 1.0 + (torch.rand(b, 1, 2, generator=gen) * 2 - 1) * cfg.scale_range
        xb = xb * gain.repeat_interleave(3, dim=2).to(xb.device)
    if cfg.jitter > 0:
        std = xb.std(dim=1, keepdim=True)
        xb = xb + torch.randn(xb.shape, generator=gen).to(xb.device) * std * cfg.jitter
    return xb



def _lr_scale(step: int, total: int, warm: int) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based): linear warm-up over ``warm`` steps,
    then cosine from 1 towards 0 at ``total``.

    Not ``train.schedule.warmup_cosine_lr``: that one decays over ``total - warm - 1`` steps after the
    warm-up and multiplies in another order, so its numbers differ and the evaluation tables would
    change; this keeps the protocol's own schedule.
    """
    frac = step / max(1, total)
    return (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def _split_decay(groups: List[Dict[str, Any]], weight_decay: float) -> List[Dict[str, Any]]:
    """Each group twice: kernels (ndim >= 2) with ``weight_decay``, biases and norm weights without,
    as in pretraining (``train.methods``' parameter groups). Empty groups are dropped."""
    out: List[Dict[str, Any]] = []
    for g in groups:
        params = list(g["params"])
        for chosen, wd in (([q for q in params if q.ndim >= 2], weight_decay), ([q for q in params if q.ndim < 2], 0.0)):
            if chosen:
                out.append({**{k: v for k, v in g.items() if k != "params"}, "params": chosen, "weight_decay": wd})
    return out


def fit_end_to_end(protocol: str, encoder: nn.Module, train: WindowSet, val: WindowSet, tcfg: FinetuneConfig,
                   cfg: FitConfig, n_classes: int, norm: str, device: Any, np_rng: np.random.Generator,
                   progress: Optional[bool], desc: str, head: Optional[nn.Module] = None) -> FittedClassifier:
    """``supervised`` / ``finetune``: encoder + head trained end to end (AdamW, warm-up then cosine,
    optional augmentation); the epoch with the best validation score is kept."""
    if head is None:
        head = nn.Linear(int(encoder.embed_dim), n_classes)
    module = WindowClassifier(encoder, head, norm).to(device)
    if protocol == "finetune":
        backbone_lr = tcfg.backbone_lr if tcfg.backbone_lr is not None else tcfg.lr / 10.0
        groups = [{"params": [p for p in encoder.parameters() if p.requires_grad], "lr": backbone_lr},
                  {"params": list(head.parameters()), "lr": tcfg.lr}]
    else:
        groups = [{"params": list(module.parameters()), "lr": tcfg.lr}]
    groups = _split_decay(groups, tcfg.weight_decay)
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
    # steps, not epochs: a log (output not a terminal) hears from a long epoch at least every 30 s
    bar = progress_bar(total=total, desc=desc or protocol, unit="step", enabled=progress, leave=False)
    for epoch in range(1, tcfg.epochs + 1):
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
            scale = _lr_scale(step, total, warm)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * scale
            loss = F.cross_entropy(module(xb), yb, weight=weight, label_smoothing=tcfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), tcfg.grad_clip)
            opt.step()
            run_loss += float(loss.item())
            step += 1
            bar.update(1)
        if len(val):
            scores = predict_windows(module, val.x, cfg.eval_batch_size, device)
            vloss = float(F.cross_entropy(torch.as_tensor(scores), y_va).item())
            m = classification_metrics(val.y, scores.argmax(1), n_classes)
        else:  # no validation windows: keep the last epoch
            vloss, m = 0.0, {"balanced_accuracy": float(epoch)}
        history.append({"epoch": epoch, "train_loss": run_loss / steps_per_epoch, "val_loss": vloss,
                        "val_balanced_accuracy": m["balanced_accuracy"]})
        bar.set_postfix(epoch=f"{epoch}/{tcfg.epochs}", loss=f"{run_loss / steps_per_epoch:.3f}",
                        val_bacc=f"{m['balanced_accuracy']:.3f}")
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
