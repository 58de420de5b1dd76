"""Paired-retrieval measures on embeddings (pure numpy): cosine ranks, R@k, MRR and their chance levels.

Owned here, at the train level, because both pretraining validation (``val/R@1``) and zero-shot
evaluation (:mod:`crossmodal_har.evaluate.zeroshot`) report them; evaluate imports them from here.

Ties in similarity count against the true match (a collapsed model that maps everything to one
point scores chance-or-worse, never perfect). Bad input raises ``ValueError``.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float64; an all-zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def true_match_ranks(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """1-based rank of ``gallery[i]`` among all gallery items for ``query[i]`` (cosine similarity).

    Ties with the true match are counted as ranked above it (pessimistic).
    """
    q, g = l2_normalize(query), l2_normalize(gallery)
    if len(q) != len(g):
        raise ValueError("query and gallery must be paired (same length)")
    sim = q @ g.T
    true = np.diag(sim)[:, None]
    ge = (sim >= true).sum(axis=1)  # includes the true match itself
    return ge.astype(np.int64)


def retrieval_metrics(query: np.ndarray, gallery: np.ndarray, ks: Sequence[int] = (1, 3, 10)) -> Dict[str, float]:
    """R@k, MRR and their chance levels (R@k chance = k/N, MRR chance = H_N/N) for paired
    ``query[i]`` ↔ ``gallery[i]``; ``n`` is the number of pairs."""
    n = len(query)
    if n == 0:
        raise ValueError("retrieval needs at least one pair")
    ranks = true_match_ranks(query, gallery)
    out: Dict[str, float] = {}
    for k in ks:
        out[f"R@{k}"] = float(np.mean(ranks <= k))
    out["MRR"] = float(np.mean(1.0 / ranks))
    for k in ks:
        out[f"chance_R@{k}"] = float(min(1.0, k / n))
    out["chance_MRR"] = float(np.sum(1.0 / np.arange(1, n + 1)) / n)
    out["n"] = int(n)
    return out
