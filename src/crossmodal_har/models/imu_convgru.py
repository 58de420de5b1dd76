"""IMU2CLIP's IMU encoder (Moon et al., 2022), written from its description.

Group-normalise the six raw channels, apply a stack of blocks (dilated 1-D convolution without bias,
then max-pooling), group-normalise the features, and run a GRU over the shortened sequence; the GRU's
final hidden state is the embedding. With the defaults a 250-sample window shrinks
250 → 77 → 23 → 5 time steps before the GRU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from crossmodal_har.config import from_dict, to_dict
from crossmodal_har.errors import ConfigError, UserError
from crossmodal_har.models.base import Encoder, check_budget, check_imu_input, check_sizes
from crossmodal_har.models.registry import register_model

log = logging.getLogger(__name__)


@dataclass
class ConvGRUConfig:
    """Architecture of the conv-GRU IMU encoder.

    Attributes:
        in_channels: IMU channels read: the leading canonical columns (6: acc in g then gyro in
            rad/s; 3: accelerometer only).
        window: input length W in samples; checked so that the conv stack leaves >= 1 step.
        conv_channels: feature channels of every conv block.
        kernel_sizes: one conv block per entry (IMU2CLIP: 10, 5, 5).
        dilation: dilation of every conv (IMU2CLIP: 2).
        pool_size: max-pool kernel and stride after each conv (IMU2CLIP: 3).
        input_groups: GroupNorm groups over the input channels (must divide in_channels).
        feature_groups: GroupNorm groups over the conv features (must divide conv_channels).
        hidden_size: GRU hidden size = embedding dimension (IMU2CLIP: 512).
    """

    in_channels: int = 6
    window: int = 250
    conv_channels: int = 32
    kernel_sizes: List[int] = field(default_factory=lambda: [10, 5, 5])
    dilation: int = 2
    pool_size: int = 3
    input_groups: int = 2
    feature_groups: int = 4
    hidden_size: int = 512

    def out_steps(self) -> int:
        n = self.window
        for k in self.kernel_sizes:
            n = n - self.dilation * (k - 1)
            n = n // self.pool_size if n > 0 else 0
        return n

    @property
    def embed_dim(self) -> int:
        return self.hidden_size

    def validate(self) -> None:
        if not self.kernel_sizes or len(self.kernel_sizes) > 32:
            raise ConfigError("convgru: kernel_sizes must list 1 to 32 conv blocks")
        check_sizes("convgru", self, {
            "in_channels": (1, 64), "window": (1, 100_000), "conv_channels": (1, 4096), "kernel_sizes": (1, 1024),
            "dilation": (1, 1024), "pool_size": (1, 1024), "input_groups": (1, 64), "feature_groups": (1, 4096),
            "hidden_size": (1, 8192)})
        check_budget("convgru", self.approx_parameters(), max(self.window * self.conv_channels, 3 * self.hidden_size))
        if any(k < 1 for k in self.kernel_sizes) or self.dilation < 1 or self.pool_size < 1:
            raise ConfigError("convgru: kernel sizes, dilation and pool_size must be >= 1")
        if self.in_channels % self.input_groups:
            raise ConfigError(f"convgru: input_groups ({self.input_groups}) must divide in_channels ({self.in_channels})")
        if self.conv_channels % self.feature_groups:
            raise ConfigError(
                f"convgru: feature_groups ({self.feature_groups}) must divide conv_channels ({self.conv_channels})"
            )
        if self.out_steps() < 1:
            raise ConfigError(f"convgru: a window of {self.window} samples is too short for this conv stack")

    @property
    def input_channels(self) -> int:
        """Leading canonical columns read (3 = accelerometer only, 6 = with the gyroscope)."""
        return self.in_channels

    def channel_overrides(self, n_channels: int) -> Dict[str, Any]:
        """The fields that make this architecture read ``n_channels`` input channels. ``input_groups``
        is kept when it divides ``n_channels``, else one group per 3-axis sensor (acc, gyro), or 1."""
        n = int(n_channels)
        groups = self.input_groups
        if n % groups:
            groups = n // 3 if n % 3 == 0 else 1
        return {"in_channels": n, "input_groups": groups}

    def approx_parameters(self) -> int:
        """A lower bound of the parameter count (weight matrices only): what a weights file must hold."""
        c, h, k = self.conv_channels, self.hidden_size, self.kernel_sizes
        return c * self.in_channels * k[0] + sum(c * c * ki for ki in k[1:]) + 3 * (c + h) * h


class _ConvPool(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, dilation: int, pool: int):
        super().__init__(nn.Conv1d(cin, cout, kernel_size=kernel, dilation=dilation, bias=False), nn.MaxPool1d(pool))


class ConvGRUEncoder(Encoder):
    """``forward(x [B, W, C]) -> [B, hidden_size]``."""

    kind = "imu"

    def __init__(self, cfg: ConvGRUConfig):
        super().__init__()
        self.cfg = cfg
        self.model_cfg = to_dict(cfg)
        self.embed_dim = cfg.hidden_size
        self.window = cfg.window
        self.input_channels = cfg.in_channels
        layers: List[nn.Module] = [nn.GroupNorm(cfg.input_groups, cfg.in_channels)]
        cin = cfg.in_channels
        for k in cfg.kernel_sizes:
            layers.append(_ConvPool(cin, cfg.conv_channels, k, cfg.dilation, cfg.pool_size))
            cin = cfg.conv_channels
        layers.append(nn.GroupNorm(cfg.feature_groups, cfg.conv_channels))
        self.conv = nn.Sequential(*layers)
        self.gru = nn.GRU(input_size=cfg.conv_channels, hidden_size=cfg.hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_imu_input(x, self.cfg.window, self.cfg.in_channels, "convgru")
        feats = self.conv(x.transpose(1, 2))  # [B, F, T']
        _, h = self.gru(feats.transpose(1, 2))  # h: [1, B, H]
        return h[-1]

    def export_forward(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for the ONNX export, equal within float rounding (the export's parity
        check holds it to 1e-4) and faster in ONNX Runtime: the conv blocks as 2-D convolutions and
        pooling over an image one row high (ONNX Runtime's blocked NCHWc kernels take 2-D, not 1-D,
        convolutions), and the GRU unrolled over its few steps from the zero state, its gates from
        regrouped matrix products (:func:`gru_last_state`). docs/inference.md gives the timings."""
        check_imu_input(x, self.cfg.window, self.cfg.in_channels, "convgru")
        layers = list(self.conv)  # GroupNorm, conv blocks, GroupNorm
        blocks = layers[1:-1]
        if not all(_plain_block(b) for b in blocks):  # not what this rewrite assumes: the 1-D stack
            return gru_last_state(self.gru, self.conv(x.transpose(1, 2)).transpose(1, 2))
        h = layers[0](x.transpose(1, 2)).unsqueeze(2)  # [B, C, 1, W]
        for conv, pool in blocks:
            h = F.conv2d(h, conv.weight.unsqueeze(2), None, 1, 0, (1, conv.dilation[0]))
            h = F.max_pool2d(h, (1, pool.kernel_size), (1, pool.stride))
        feats = layers[-1](h.squeeze(2))  # [B, F, T']
        return gru_last_state(self.gru, feats.transpose(1, 2))


def _plain_block(block: nn.Module) -> bool:
    """A conv block as :class:`_ConvPool` makes it (what :meth:`ConvGRUEncoder.export_forward`'s 2-D
    rewrite assumes): a convolution without bias, stride 1, padding 0, one group; a max-pool whose
    stride is its kernel, without padding, dilation or ceil mode."""
    conv, pool = block[0], block[1]
    return (isinstance(conv, nn.Conv1d) and conv.bias is None and conv.stride == (1,) and conv.padding == (0,)
            and conv.groups == 1 and conv.padding_mode == "zeros" and isinstance(pool, nn.MaxPool1d)
            and pool.stride == pool.kernel_size and pool.padding == 0 and pool.dilation == 1 and not pool.ceil_mode)


def gru_last_state(gru: nn.GRU, x: torch.Tensor) -> torch.Tensor:
    """The last hidden state of a one-layer, one-direction, batch-first ``gru`` over ``x`` [B, T, F]
    from the zero state, step by step (PyTorch's GRU equations), written for ONNX Runtime:

    - no recurrent product at the first step, where the state is 0 (r, z and n then see only the
      recurrent biases): for the default encoder (5 steps, 512 units) a fifth less arithmetic than
      the GRU operator, which multiplies the zero state too;
    - the reset and update gates each from one matrix product of ``[x_t, h]`` with their input and
      recurrent weights stacked, the two biases summed (ONNX Runtime fuses the product, the bias and
      the sigmoid into one kernel), and the candidate from its own two products: no gate vector is
      split into three (three copies) at each step. 90 -> 82 us a window with the default encoder
      (batch 64, one thread, normalisation included).

    Equal to PyTorch's GRU within float rounding (its sums are grouped differently)."""
    if gru.num_layers != 1 or gru.bidirectional or not gru.batch_first:
        raise ValueError("gru_last_state: one layer, one direction, batch_first only")
    H = gru.hidden_size
    w_i, w_h, b_i, b_h = gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0
    r_, z_, n_ = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)  # PyTorch's gate order: r, z, n
    b_r, b_z = b_i[r_] + b_h[r_], b_i[z_] + b_h[z_]
    x0 = x[:, 0]
    r = torch.sigmoid(torch.addmm(b_r, x0, w_i[r_].t()))
    z = torch.sigmoid(torch.addmm(b_z, x0, w_i[z_].t()))
    n = torch.tanh(torch.addmm(b_i[n_], x0, w_i[n_].t()) + r * b_h[n_])
    h = n - z * n  # (1 - z) * n + z * 0
    if x.shape[1] > 1:
        w_r = torch.cat([w_i[r_], w_h[r_]], dim=1).t()  # [F + H, H]: [x_t, h] -> r's pre-activation
        w_z = torch.cat([w_i[z_], w_h[z_]], dim=1).t()
    for t in range(1, x.shape[1]):
        xt = x[:, t]
        xh = torch.cat([xt, h], dim=1)
        r = torch.sigmoid(torch.addmm(b_r, xh, w_r))
        z = torch.sigmoid(torch.addmm(b_z, xh, w_z))
        n = torch.tanh(torch.addmm(b_i[n_], xt, w_i[n_].t()) + r * torch.addmm(b_h[n_], h, w_h[n_].t()))
        h = n + z * (h - n)  # (1 - z) * n + z * h
    return h


def build_convgru(config: Dict[str, Any], *, pretrained: Optional[str] = None, allow_download: bool = False):
    """Builder for ``convgru*`` names. There are no public pretrained weights in Hugging Face layout."""
    cfg = from_dict(ConvGRUConfig, config, where="model config (convgru)")
    if pretrained is not None:
        raise UserError(
            "convgru has no Hugging Face pretrained weights; load a saved encoder with "
            "crossmodal_har.models.encoder_file.load_encoder (or --encoder RUN_DIR) instead"
        )
    return ConvGRUEncoder(cfg)


for _name in ("convgru", "convgru-tiny"):
    register_model(_name, kind="imu", config=ConvGRUConfig)(build_convgru)
