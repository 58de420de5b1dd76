"""The paper's projection head into the joint IMU–video space (classifier heads are in
:mod:`crossmodal_har.models.classifier`)."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """Projection into the joint IMU–video space (the paper's, after CLIP-style implementations).

    ``p = W1 x``; ``h = dropout(W2 gelu(p))``; ``out = LayerNorm(h + p)`` — a residual from the first
    linear layer around GELU → linear → dropout, then LayerNorm. Callers L2-normalise the output
    (the losses do it themselves).

    Args:
        in_dim: encoder embedding size (e.g. 6 × 128 = 768 for PatchTST, 768 for VideoMAE-base).
        out_dim: joint embedding size (paper: 512).
        dropout: dropout after the second linear layer (paper: 0.1).
    """

    def __init__(self, in_dim: int, out_dim: int = 512, dropout: float = 0.1):
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.projection = nn.Linear(in_dim, out_dim)
        self.act = nn.GELU()
        self.fc = nn.Linear(out_dim, out_dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.projection(x)
        h = self.dropout(self.fc(self.act(projected)))
        return self.norm(h + projected)



class TemporalHead(nn.Module):
    """A small trainable head over frozen per-frame features: [B, K, D] → [B, hidden].

    ``h_k = W_in LayerNorm(x_k)``; with ``motion``, each frame's projected feature is joined by its
    change from the previous frame (``h_k - h_{k-1}``, zero for the first: consecutive-frame
    differences carry egomotion) and mixed back to ``hidden`` by a linear layer; then ``layers``
    residual temporal convolutions (kernel ``kernel`` over the K frames, GELU) and the mean over
    frames. It learns *which* frame-to-frame changes matter from cached features, at memory speed
    (``ingest --video-mode embeddings --embedding-layout frames``).

    Args:
        in_dim: per-frame feature size D (1280 for efficientnet-lite0).
        hidden: output size.
        kernel: temporal kernel in frames (odd).
        layers: residual temporal convolutions (0 = none: mean of the projected features).
        motion: join consecutive-frame differences.
        dropout: dropout on the projected per-frame features.
    """

    def __init__(self, in_dim: int, hidden: int = 128, kernel: int = 3, layers: int = 1, motion: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        self.in_dim, self.out_dim, self.motion = in_dim, hidden, motion
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, hidden)
        self.mix = nn.Linear(2 * hidden, hidden) if motion else None
        self.dropout = nn.Dropout(dropout)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2) for _ in range(layers))
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"temporal head: expected [B, K, {self.in_dim}] per-frame features, got "
                             f"{list(x.shape)}")
        h = self.proj(self.norm(x.float()))  # [B, K, H]
        if self.mix is not None:
            diff = torch.cat([torch.zeros_like(h[:, :1]), h[:, 1:] - h[:, :-1]], dim=1)
            h = self.mix(torch.cat([h, diff], dim=-1))
        h = self.dropout(h).transpose(1, 2)  # [B, H, K]
        for conv in self.convs:
            h = h + self.act(conv(h))
        return h.mean(dim=-1)
