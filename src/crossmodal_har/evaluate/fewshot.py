"""Few-shot draws: k labelled windows per class, from the training subjects only."""

from __future__ import annotations

import logging
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from crossmodal_har.errors import UserError

log = logging.getLogger(__name__)

Shots = Union[int, str]  # a positive int, or "all"


def shots_key(shots: Shots) -> float:
    """Sort key of shots settings: integers ascending, then ``all`` (the one rule for every table/plot)."""
    return float("inf") if shots == "all" else float(shots)


def parse_shots(text: Union[str, Sequence[Shots]]) -> List[Shots]:
    """``"1,5,all"`` -> ``[1, 5, "all"]`` (order kept, duplicates removed)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: List[Shots] = []
    for item in items:
        s = str(item).strip().lower()
        if not s:
            continue
        if s == "all":
            v: Shots = "all"
        else:
            try:
                v = int(s)
            except ValueError:
                raise UserError(f"--shots: {item!r} is neither a positive integer nor 'all'") from None
            if v < 1:
                raise UserError(f"--shots: {v} must be >= 1")
        if v not in out:
            out.append(v)
    if not out:
        raise UserError("--shots: give at least one value, e.g. 5,all")
    return out


def sample_shots(y: np.ndarray, pool: np.ndarray, shots: Shots, seed: int, n_classes: int
                 ) -> Tuple[np.ndarray, Dict[str, int]]:
    """Draw ``shots`` windows per class from the indices in ``pool`` (the training split).

    Returns (sorted indices, {class index as str: number drawn}). ``"all"`` returns the whole
    pool. A class with fewer than k windows contributes all it has (logged, and visible in the
    returned counts); the draw depends only on (seed, k) and the pool.
    """
    pool = np.sort(np.asarray(pool, dtype=np.int64))
    y = np.asarray(y)
    if shots == "all":
        counts = np.bincount(y[pool], minlength=n_classes)
        return pool, {str(c): int(counts[c]) for c in range(n_classes)}
    k = int(shots)
    rng = np.random.default_rng([int(seed), k])
    chosen = []
    counts: Dict[str, int] = {}
    for c in range(n_classes):
        cand = pool[y[pool] == c]
        if len(cand) < k:
            if len(cand):
                log.warning("class %d has only %d training windows (< %d shots); using all", c, len(cand), k)
            take = cand
        else:
            take = rng.choice(cand, size=k, replace=False)
        chosen.append(take)
        counts[str(c)] = int(len(take))
    return np.sort(np.concatenate(chosen)), counts
