"""Embedding a paired dataset with a method and validating a run (``val/loss``, ``val/R@k``, ``val/MRR``).

The training loop calls :func:`validate` at the end of an epoch; zero-shot evaluation
(:mod:`crossmodal_har.evaluate.zeroshot`) reuses :func:`embed_dataset`. Both leave the model's
train/eval mode and the global torch RNG stream as they found them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from crossmodal_har.train.config import PretrainConfig
from crossmodal_har.train.retrieval import retrieval_metrics


def to_device(batch: Mapping[str, Any], device: Any) -> Dict[str, Any]:
    """The batch dict with its tensors moved to ``device`` (other entries, e.g. subject ids, as they are)."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def embed_dataset(model: Any, dataset: Any, batch_size: int, device: Any, max_windows: int = 0,
                  num_workers: int = 0, video_only: bool = False) -> Dict[str, np.ndarray]:
    """Normalised IMU and video embeddings of every window (eval mode, no gradients).

    With ``max_windows`` at most that many windows, evenly spaced; with ``video_only`` the ``imu``
    entry is left out (class prototypes need only video).

    Returns ``{"imu": [N, E], "video": [N, E], "label": [N], "subject": [N], "index": [N]}``.
    """
    if max_windows and len(dataset) > max_windows:
        keep = np.linspace(0, len(dataset) - 1, max_windows).round().astype(int)
        dataset = Subset(dataset, keep.tolist())
    was_training = model.training
    model.eval()
    out: Dict[str, List[Any]] = {"imu": [], "video": [], "label": [], "subject": [], "index": []}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    with torch.no_grad():
        for batch in loader:
            b = to_device(batch, device)
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
    ``val/MRR`` among all validation windows (``val/chance_R@1`` beside them); ``imu-mae``: ``val/loss`` only."""
    if cfg.method == "imu-mae":
        was_training = model.training
        model.eval()
        losses = []
        g = torch.random.get_rng_state()
        torch.manual_seed(cfg.seed)  # fixed masks: comparable across epochs
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False):
                loss, _ = model(to_device(batch, device))
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
