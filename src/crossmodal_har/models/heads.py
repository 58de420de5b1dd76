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

