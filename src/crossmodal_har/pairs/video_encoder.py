"""The frozen video encoder of ``--video-mode embeddings``: built once per process through the model
registry (:func:`crossmodal_har.models.registry.create_model`) and reused for every session.

No model code lives here: this module only caches, freezes and batches.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from crossmodal_har.errors import UserError
from crossmodal_har.models.registry import create_model

log = logging.getLogger(__name__)

# Created once per process (worker), reused for every session.
_ENCODER_CACHE: Dict[Tuple[str, Optional[str], bool], Any] = {}


def create_video_encoder(name: str, weights: Optional[str] = None, allow_download: bool = False) -> Any:
    """A frozen video encoder from the model registry, in eval mode, gradients off (cached)."""
    key = (name, weights, allow_download)
    if key not in _ENCODER_CACHE:
        if weights is None:
            log.warning("video encoder %r has no pretrained weights (--video-encoder-weights): its embeddings "
                        "are random features, useful for tests only", name)
        # Seeded so that randomly initialised parts are the same in every process and every resumed
        # run (a resumed store must equal an uninterrupted one).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_model(name, pretrained=weights, allow_download=allow_download)
        if getattr(model, "kind", "video") != "video":
            raise UserError(f"--video-encoder {name!r} is not a video encoder (kind {model.kind!r})")
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        _ENCODER_CACHE[key] = model
    return _ENCODER_CACHE[key]


def encoder_geometry(name: str, weights: Optional[str] = None, allow_download: bool = False) -> Dict[str, int]:
    """``{"frames": K, "size": H, "embed_dim": D}`` of a registry video encoder."""
    enc = create_video_encoder(name, weights, allow_download)
    return {"frames": int(enc.num_frames), "size": int(enc.input_size), "embed_dim": int(enc.embed_dim)}


def check_per_frame(encoder: Any, name: str) -> None:
    """``--embedding-layout frames`` needs an encoder with per-frame features (``frame_features``)."""
    if not callable(getattr(encoder, "frame_features", None)):
        raise UserError(f"--embedding-layout frames: video encoder {name!r} has no per-frame features "
                        "(it encodes the clip as a whole); use a frame encoder such as efficientnet-lite0, "
                        "or --embedding-layout pooled")


def embed_frames(encoder: Any, frames: np.ndarray, batch_size: int = 16, per_frame: bool = False) -> np.ndarray:
    """[n, K, H, W, 3] uint8 → [n, D] float16 with a frozen encoder, or [n, K, D] per frame
    (``per_frame``: the encoder's ``frame_features``)."""
    fn = encoder.frame_features if per_frame else encoder
    out = []
    with torch.inference_mode():
        for i in range(0, len(frames), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[i:i + batch_size]))
            out.append(fn(x).float().cpu().numpy().astype(np.float16))
    if not out:
        tail = (int(frames.shape[1]),) if per_frame and frames.ndim > 1 else ()
        return np.zeros((0,) + tail + (int(encoder.embed_dim),), np.float16)
    return np.concatenate(out)
