"""Seeding every RNG a run draws from (``random``, numpy's global RNG, torch CPU and CUDA) at once.

Saving and restoring those states for exact resume is :mod:`crossmodal_har.train.checkpoint`'s job.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed ``random``, ``numpy.random`` (modulo 2**32) and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
