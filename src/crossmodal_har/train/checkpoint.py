"""Training checkpoints: a dict of tensors and plain Python types, written atomically.

Loaded with ``torch.load(weights_only=True)`` only (no unrestricted pickle), so everything in it
is a tensor, number, string, list or dict: numpy and Python RNG states are converted to tensors /
lists of ints. Model keys never carry the DDP ``module.`` prefix.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import numpy as np
import torch

from crossmodal_har.errors import DataError
from crossmodal_har.io import atomic_write

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


def strip_module_prefix(state: Mapping[str, Any]) -> Dict[str, Any]:
    """Remove the ``module.`` prefix DDP (or ``torch.compile``'s ``_orig_mod.``) adds to keys."""
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def capture_rng_state() -> Dict[str, Any]:
    """RNG states of torch (CPU and CUDA), numpy and ``random``, as checkpoint-safe types."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_state[0]), "state": [int(v) for v in py_state[1]],
                   "gauss_next": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), int(npst["pos"]),
                         int(npst["has_gauss"]), float(npst["cached_gaussian"])))
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"]), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except Exception as exc:  # different number of GPUs: keep going, say so
            log.warning("could not restore CUDA RNG state (%s); resumed run is not bit-exact", exc)


def save_checkpoint(path: Union[str, os.PathLike], state: Dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    state = dict(state)
    state["format_version"] = FORMAT_VERSION
    return atomic_write(path, lambda p: torch.save(state, p))


def load_checkpoint(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(path, f"unreadable checkpoint: {exc}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise DataError(path, "not a crossmodal-har training checkpoint (or an unsupported version)")
    return state
