"""The window classifier, its heads, and the one "normalise then encode" path.

Everything downstream (evaluation protocols, classifier bundles, inference, embeddings) maps
windows in *physical units* [B, W, 6] (g, rad/s) through :func:`encode_windows`:
``encoder(normalize_windows(x[..., :n], normalization))``, where ``n`` is the encoder's
``input_channels`` (6; 3 for an accelerometer-only encoder, which never reads the gyroscope
columns). Keeping the channel selection and the normalisation inside the module means a fitted
classifier can be saved, reloaded and exported to ONNX as is, always taking [B, W, 6].

- :class:`NormalizedEncoder`: physical windows -> embeddings [B, D] (state keys ``encoder.*``).
- :class:`WindowClassifier`: a :class:`NormalizedEncoder` plus ``head`` -> class scores [B, C]
  (state keys ``encoder.*``, ``head.*``: the bundle's weight layout).
- Heads: ``nn.Linear`` (``linear``), :class:`StandardizedLinear` (``standardized-linear``),
  :class:`KnnHead` (``knn``); :func:`head_spec` / :func:`build_head` turn them into the JSON spec a
  bundle stores and back.
- :func:`embed_windows` / :func:`predict_windows`: batched numpy helpers (eval mode, no gradients).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossmodal_har.errors import UserError
from crossmodal_har.models.base import select_input_channels
from crossmodal_har.models.registry import create_model_from_config
from crossmodal_har.signals.types import CHANNEL_SETS
from crossmodal_har.signals.normalize import normalize_windows


def encode_windows(encoder: nn.Module, x: torch.Tensor, normalization: str) -> torch.Tensor:
    """Physical windows [B, W, 6] -> ``encoder(normalize_windows(x[..., :n], normalization))`` [B, D],
    ``n`` = the channels the encoder reads (:func:`~crossmodal_har.models.base.select_input_channels`)."""
    return encoder(normalize_windows(select_input_channels(encoder, x), normalization))


def freeze(module: nn.Module) -> None:
    """No parameter of ``module`` requires gradients, and it is put in eval mode (the module's own
    ``freeze()`` when it has one)."""
    if hasattr(module, "freeze"):
        module.freeze()
    else:
        for p in module.parameters():
            p.requires_grad_(False)
        module.eval()


class NormalizedEncoder(nn.Module):
    """Physical-unit windows [B, W, 6] (g, rad/s) -> the encoder's channels -> normalise -> encoder
    -> embeddings [B, D] (:func:`encode_windows`).

    With ``freeze_encoder`` the encoder's parameters never require gradients and it never leaves
    eval mode, whatever ``train()`` is called with.
    """

    def __init__(self, encoder: nn.Module, normalization: str, freeze_encoder: bool = False):
        super().__init__()
        self.encoder = encoder
        self.normalization = normalization
        self.freeze_encoder = bool(freeze_encoder)
        if self.freeze_encoder:
            freeze(self.encoder)

    @property
    def embed_dim(self) -> int:
        return int(getattr(self.encoder, "embed_dim", 0))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings [B, D] of physical windows ``x`` [B, W, 6]."""
        return encode_windows(self.encoder, x, self.normalization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)

    def train(self, mode: bool = True) -> "NormalizedEncoder":
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.train(False)
        return self


class WindowClassifier(NormalizedEncoder):
    """Physical-unit windows [B, W, 6] (g, rad/s) -> normalise -> encoder -> head -> scores [B, C]."""

    def __init__(self, encoder: nn.Module, head: nn.Module, normalization: str, freeze_encoder: bool = False):
        super().__init__(encoder, normalization, freeze_encoder)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


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

    Neighbours are chosen on similarities rounded to a grid of ``1 / TIE_GRID`` (about 1.5e-5),
    and among equal rounded similarities the lower bank index wins. Without that, near-ties (an
    untrained encoder's embeddings are almost collinear: every similarity is 1 - O(1e-7)) were
    decided by float rounding noise, which differs between PyTorch and ONNX Runtime (or CPU and
    GPU): the ONNX export of such a bundle picked other neighbours and failed its parity check.
    The selection is an exact integer top-k, identical in every runtime; the vote weights use the
    unrounded similarities.
    """

    TIE_GRID = 65536.0

    def __init__(self, bank: np.ndarray, labels: np.ndarray, n_classes: int, k: int, temperature: float):
        super().__init__()
        bank_t = torch.as_tensor(bank, dtype=torch.float32)
        self.register_buffer("bank", F.normalize(bank_t, dim=1))
        self.register_buffer("onehot", F.one_hot(torch.as_tensor(labels, dtype=torch.long), n_classes).float())
        self.k = int(min(k, len(bank_t)))
        self.temperature = float(temperature)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        sim = F.normalize(z, dim=1) @ self.bank.T  # [B, N]
        n = self.bank.shape[0]
        # unique integer keys: rounded similarity first, then the lower bank index (see the class doc)
        rank = torch.arange(n - 1, -1, -1, device=sim.device, dtype=torch.int64)
        key = torch.round(sim * self.TIE_GRID).to(torch.int64) * n + rank
        idx = key.topk(self.k, dim=1).indices
        top = sim.gather(1, idx)
        w = torch.exp((top - 1.0) / self.temperature)
        votes = (w.unsqueeze(-1) * self.onehot[idx]).sum(dim=1)
        return torch.log(votes / votes.sum(dim=1, keepdim=True) + 1e-8)


# --------------------------------------------------------------------------- head specs (bundle.json)

def build_head(spec: Mapping[str, Any]) -> nn.Module:
    """Build an (untrained) classification head from its JSON spec; weights come from the bundle.

    Types (the heads :func:`crossmodal_har.evaluate.protocols.fit_protocol` makes):
    ``linear`` (``nn.Linear``; finetune, supervised), ``standardized-linear`` (linear on
    standardised embeddings; linear-probe), ``knn`` (cosine vote against ``bank_size`` stored
    training embeddings, ``k``, ``temperature``). All need ``in_features`` and ``num_classes``.
    """
    kind = spec.get("type")
    try:
        d, c = int(spec["in_features"]), int(spec["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"head spec needs in_features and num_classes: {dict(spec)}") from None
    if kind == "linear":
        return nn.Linear(d, c)
    if kind == "standardized-linear":
        return StandardizedLinear(np.zeros(d, np.float32), np.ones(d, np.float32), c)
    if kind == "knn":
        n = int(spec["bank_size"])
        return KnnHead(np.zeros((n, d), np.float32), np.arange(n) % c, c, int(spec["k"]),
                       float(spec["temperature"]))
    raise UserError(f"unknown head type {kind!r} (expected linear | standardized-linear | knn)")


def head_spec(head: nn.Module, n_classes: int) -> Dict[str, Any]:
    """The JSON spec that :func:`build_head` turns back into a head of the same shape."""
    if isinstance(head, StandardizedLinear):
        return {"type": "standardized-linear", "in_features": int(head.linear.in_features),
                "num_classes": int(n_classes)}
    if isinstance(head, KnnHead):
        return {"type": "knn", "in_features": int(head.bank.shape[1]), "num_classes": int(n_classes),
                "bank_size": int(head.bank.shape[0]), "k": int(head.k), "temperature": float(head.temperature)}
    if isinstance(head, nn.Linear):
        return {"type": "linear", "in_features": int(head.in_features), "num_classes": int(n_classes)}
    raise TypeError(f"cannot describe head of type {type(head).__name__} in a bundle")


def build_classifier(encoder_spec: Mapping[str, Any], spec: Mapping[str, Any], normalization: str,
                     channels: Optional[str] = None) -> WindowClassifier:
    """An untrained :class:`WindowClassifier` of the shape a bundle's ``encoder`` and ``head``
    sections describe (the bundle loader fills in the weights).

    ``channels`` (the bundle's ``preprocess.channels``), when given, must be what the encoder's
    architecture reads (``acc`` = 3 input channels, ``acc+gyro`` = 6): a UserError otherwise.
    """
    encoder = create_model_from_config(encoder_spec["model"], dict(encoder_spec.get("config") or {}),
                                       where="encoder.config")
    if channels is not None:
        check_encoder_channels(encoder, channels, "encoder")
    return WindowClassifier(encoder, build_head(spec), normalization)


def check_encoder_channels(encoder: nn.Module, channels: str, what: str) -> None:
    """UserError unless ``encoder`` reads the ``channels`` (``acc`` | ``acc+gyro``) its preprocessing
    declares."""
    n = int(getattr(encoder, "input_channels", 0) or 0)
    want = CHANNEL_SETS.get(channels)
    if want is None:
        raise UserError(f"{what}: channels must be acc or acc+gyro, got {channels!r}")
    if n and n != want:
        raise UserError(f"{what}: preprocess.channels is {channels!r} ({want} channels) but the architecture "
                        f"reads {n} input channels")


# --------------------------------------------------------------------------- batched numpy helpers

def _batched(module: nn.Module, x: np.ndarray, batch_size: int, device: Any, fn: Callable,
             out_dim: int) -> np.ndarray:
    """``fn(batch)`` over ``x`` in eval mode without gradients, as float32 numpy [N, out_dim]."""
    module.eval()
    module.to(device)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(np.ascontiguousarray(x[i:i + batch_size]), dtype=torch.float32, device=device)
            out.append(fn(xb).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, out_dim), np.float32)


def predict_windows(module: nn.Module, x: np.ndarray, batch_size: int = 256, device: Any = "cpu") -> np.ndarray:
    """``module``'s outputs [N, C] (float32) for windows ``x`` [N, W, 6] (eval mode, no gradients)."""
    return _batched(module, x, batch_size, device, module, 0)


def embed_windows(encoder: nn.Module, x: np.ndarray, normalization: str, batch_size: int = 256,
                  device: Any = "cpu") -> np.ndarray:
    """Embeddings [N, D] (float32) of windows ``x`` [N, W, 6] in physical units; encoder in eval mode,
    no gradients."""
    return _batched(encoder, x, batch_size, device, lambda xb: encode_windows(encoder, xb, normalization),
                    int(getattr(encoder, "embed_dim", 0)))
