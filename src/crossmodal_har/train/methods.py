"""Pretraining methods as modules: ``forward(batch) -> (loss, logs)``, one module per run.

* ``siglip`` / ``clip``: IMU encoder → projection head, video tower (or stored embeddings) →
  projection head, both L2-normalised, sigmoid (SigLIP) or softmax (CLIP/InfoNCE) loss over the
  global batch (the losses gather across DDP ranks).
* ``imu2clip``: as ``clip`` with a CLIP image tower on the middle frame (or first/middle/last),
  kept truly frozen: no gradients, eval mode throughout, not in the optimiser.
* ``imu-mae``: IMU-only masked patch reconstruction (no video); masked patches are a learned mask
  token (``mask_fill``), and the encoder pools by mean downstream (its CLS token is not trained).

Every method exposes ``imu_encoder`` (the encoder that is exported for downstream evaluation).
Cross-modal methods also expose ``embed_imu`` / ``embed_video`` (normalised projected embeddings)
and ``pair_loss`` (the loss on already-computed embeddings, local to this process) used by
validation and zero-shot evaluation. Every method owns its IMU augmentation (``augment_imu``) and its
optimiser parameter groups (``param_groups``), from the shared base ``PretrainMethod``; the
normalise-then-encode step is :func:`crossmodal_har.models.classifier.encode_windows`, as everywhere.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from crossmodal_har.errors import ConfigError
from crossmodal_har.models.augment import random_rotation
from crossmodal_har.models.classifier import encode_windows
from crossmodal_har.models.heads import ProjectionHead, TemporalHead
from crossmodal_har.models.losses import ClipLoss, SigLipLoss
from crossmodal_har.models.mae import ImuMaskedAutoencoder
from crossmodal_har.models.registry import (checked_config, create_model, create_model_from_config, model_config,
                                            with_input_channels)
from crossmodal_har.models.video_common import frame_indices
from crossmodal_har.signals.normalize import normalize_windows
from crossmodal_har.signals.types import CHANNEL_SETS
from crossmodal_har.train.config import IMAGE_TOWER_FALLBACKS

log = logging.getLogger(__name__)


def _with_shape_overrides(name: str, overrides: Mapping[str, Any], shape: Mapping[str, Any]) -> Dict[str, Any]:
    """Add data-dependent fields (window length, frame count ...) the named config has and the user
    did not set explicitly, so a tiny model fits the store it trains on."""
    out = dict(overrides)
    named = model_config(name)
    for key, value in shape.items():
        if value is not None and key in named and key not in out:
            out[key] = value
    return out


def video_tower(cfg: Any) -> Tuple[str, Optional[str]]:
    """``(registry name, pretrained)`` of the video tower a run builds on a frames store:
    ``video_encoder`` / ``video_pretrained``, except for imu2clip without CLIP weights
    (``video_pretrained`` null) and an ``image_tower_fallback``: that tower with its offline weights."""
    fallback = getattr(cfg, "image_tower_fallback", None)
    if cfg.method == "imu2clip" and cfg.video_pretrained is None and fallback:
        log.info("imu2clip: no CLIP weights (video_pretrained null): frozen image tower %s with its packaged "
                 "weights instead of a random %s", fallback, cfg.video_encoder)
        return fallback, IMAGE_TOWER_FALLBACKS[fallback]
    return cfg.video_encoder, cfg.video_pretrained


def build_encoder(name: str, overrides: Mapping[str, Any], pretrained: Optional[str], allow_download: bool,
                  arch: Optional[Mapping[str, Any]] = None):
    """An encoder from the registry; with ``arch`` (a saved ``model_cfg``) the architecture is rebuilt
    exactly and no pretrained weights are loaded (they come from the run's saved weights)."""
    if arch is not None:
        return create_model_from_config(name, arch, where=f"architecture ({name})")
    # overrides are architecture only: loading keys come from the config's own fields (checked_config)
    return create_model(name, pretrained=pretrained, allow_download=allow_download,
                        **checked_config(name, overrides, where=f"{name} overrides"))


def _init_imu_side(method: nn.Module, cfg: Any, data_info: Mapping[str, Any],
                   arch: Optional[Mapping[str, Any]], defaults: Optional[Mapping[str, Any]] = None) -> nn.Module:
    """Set the IMU-side attributes every method shares and build its IMU encoder for the store's window.
    ``defaults``: the method's own architecture defaults (named-config fields the user did not set)."""
    method.method = cfg.method
    method.normalization = data_info["preprocess"]["normalization"]
    method.augment_rotation = bool(cfg.augment_rotation)
    window = int(data_info["window"])
    # input channels from the data's preprocess: 3 = accelerometer only (pretrain --channels acc), 6
    channels = with_input_channels(cfg.imu_encoder, {}, CHANNEL_SETS[data_info["preprocess"].get("channels",
                                                                                                 "acc+gyro")])
    return build_encoder(
        cfg.imu_encoder,
        _with_shape_overrides(cfg.imu_encoder, cfg.imu_encoder_overrides,
                              {"context_length": window, "window": window, **channels, **(defaults or {})}),
        cfg.imu_pretrained, cfg.allow_download, None if arch is None else arch["imu_encoder"]["config"])


class PretrainMethod(nn.Module):
    """What every method shares: the IMU augmentation and the optimiser's parameter groups.

    Subclasses set ``normalization`` and ``augment_rotation`` (through :func:`_init_imu_side`).
    """

    normalization: str
    augment_rotation: bool

    def augment_imu(self, imu: torch.Tensor) -> torch.Tensor:
        """Raw windows [B, W, 6] (g, rad/s) as float32, randomly rotated (acc and gyro jointly) when
        training with ``augment_rotation``; still in physical units (normalisation comes next)."""
        imu = imu.float()
        if self.training and self.augment_rotation:
            imu = random_rotation(imu)
        return imu

    def param_groups(self, weight_decay: float) -> List[Dict[str, Any]]:
        """AdamW parameter groups (as nanoGPT's ``configure_optimizers``): trainable parameters only
        (frozen towers are never handed to the optimiser); weight decay on weight matrices and
        kernels (ndim >= 2) only, none on biases, norm weights and the loss's temperature/bias."""
        decay, no_decay = [], []
        for _, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.ndim >= 2 else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def after_optimizer_step(self) -> None:
        """Called by the trainer after every optimiser step: parameter constraints (none by default)."""


class CrossModalMethod(PretrainMethod):
    """IMU tower + video tower (or stored video embeddings) + heads + contrastive loss."""

    def __init__(self, cfg: Any, data_info: Mapping[str, Any], rank: int = 0, world_size: int = 1,
                 arch: Optional[Mapping[str, Any]] = None):
        super().__init__()
        self.imu_encoder = _init_imu_side(self, cfg, data_info, arch)
        self.imu_head = ProjectionHead(self.imu_encoder.embed_dim, cfg.embed_dim, dropout=cfg.head_dropout)

        self.video_kind = data_info["video_kind"]
        if self.video_kind not in ("frames", "embeddings"):
            raise ConfigError(f"{cfg.method} needs paired video: this store is IMU-only (video_mode none); "
                              "ingest with --video-mode frames or embeddings, or use --method imu-mae")
        frozen = cfg.method == "imu2clip" or cfg.video_mode == "frozen" or (
            cfg.video_mode == "auto" and self.video_kind == "embeddings")
        if cfg.video_mode == "trainable" and self.video_kind == "embeddings":
            raise ConfigError("video_mode=trainable needs a frames store (this one holds embeddings); "
                              "use video_mode=frozen or ingest with --video-mode frames")
        self.video_frozen = frozen
        self.video_encoder = None
        self.video_temporal = None
        self.video_frames_picked = None  # imu2clip on per-frame embeddings: the frames it reads
        if self.video_kind == "frames":
            shape = {"num_frames": data_info.get("num_frames")}
            if cfg.method == "imu2clip":
                shape["frame_pooling"] = cfg.clip_frames
            video_name, video_weights = video_tower(cfg)
            self.video_encoder = build_encoder(
                video_name, _with_shape_overrides(video_name, cfg.video_encoder_overrides, shape),
                video_weights, cfg.allow_download, None if arch is None else arch["video_encoder"]["config"])
            if frozen:
                self.video_encoder.freeze()
            video_in = self.video_encoder.embed_dim
        elif data_info.get("num_frames") and cfg.method == "imu2clip":
            # IMU2CLIP on per-frame embeddings: the frozen image tower's embedding of the middle frame
            # (or the mean of first, middle and last), as on frames; nothing trainable on the video side
            self.video_frames_picked = frame_indices(int(data_info["num_frames"]), cfg.clip_frames)
            video_in = int(data_info["video_dim"])
        elif data_info.get("num_frames"):  # per-frame embeddings [K, D]: a trainable temporal head
            th = cfg.temporal_head
            self.video_temporal = TemporalHead(int(data_info["video_dim"]), th.hidden, th.kernel, th.layers,
                                               th.motion, th.dropout)
            video_in = self.video_temporal.out_dim
        else:
            video_in = int(data_info["video_dim"])
        self.video_head = ProjectionHead(video_in, cfg.embed_dim, dropout=cfg.head_dropout)
        self.loss_fn = self._make_loss(cfg, rank, world_size)

    @staticmethod
    def _make_loss(cfg: Any, rank: int, world_size: int) -> nn.Module:
        scale = {} if cfg.init_logit_scale is None else {"init_logit_scale": cfg.init_logit_scale}
        if cfg.method == "siglip":
            return SigLipLoss(rank=rank, world_size=world_size, init_logit_bias=cfg.init_logit_bias, **scale)
        return ClipLoss(rank=rank, world_size=world_size, **scale)

    def after_optimizer_step(self) -> None:
        """CLIP/imu2clip: clamp the log-temperature to [0, log 100] (open_clip's ``clamp_``)."""
        clamp = getattr(self.loss_fn, "clamp_logit_scale_", None)
        if clamp is not None:
            clamp()

    def embed_imu(self, imu: torch.Tensor) -> torch.Tensor:
        """[B, W, 6] raw windows → [B, E] L2-normalised projected embeddings."""
        z = self.imu_head(encode_windows(self.imu_encoder, self.augment_imu(imu), self.normalization))
        return nn.functional.normalize(z.float(), dim=-1)

    def video_features(self, video: torch.Tensor) -> torch.Tensor:
        """The video tower's output (the stored embedding, or the temporal head over stored per-frame
        embeddings) before the projection head."""
        if self.video_temporal is not None:
            return self.video_temporal(video.float())
        if self.video_frames_picked is not None:
            return video[:, self.video_frames_picked].float().mean(dim=1)
        if self.video_encoder is None:
            return video.float()
        if self.video_frozen:
            with torch.no_grad():
                return self.video_encoder(video).float()
        return self.video_encoder(video)

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        z = self.video_head(self.video_features(video))
        return nn.functional.normalize(z.float(), dim=-1)

    def pair_loss(self, imu_emb: torch.Tensor, video_emb: torch.Tensor) -> torch.Tensor:
        """The method's loss on embeddings of this process only (no gathering): validation."""
        saved = self.loss_fn.rank, self.loss_fn.world_size
        self.loss_fn.rank, self.loss_fn.world_size = 0, 1
        try:
            return self.loss_fn(imu_emb, video_emb)
        finally:
            self.loss_fn.rank, self.loss_fn.world_size = saved

    def forward(self, batch: Mapping[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        imu_emb = self.embed_imu(batch["imu"])
        video_emb = self.embed_video(batch["video"])
        # the loss in fp32 even under AMP: exp(t)·cos + b with t≈log 10, b≈−10 is fragile in bf16
        with torch.autocast(device_type=imu_emb.device.type, enabled=False):
            loss = self.loss_fn(imu_emb.float(), video_emb.float())
        logs = {"logit_scale": self.loss_fn.logit_scale.detach().exp()}
        if hasattr(self.loss_fn, "logit_bias"):
            logs["logit_bias"] = self.loss_fn.logit_bias.detach()
        return loss, logs


class MaskedImuMethod(PretrainMethod):
    """IMU-only masked patch reconstruction (``imu-mae``); the video in the batch is ignored."""

    def __init__(self, cfg: Any, data_info: Mapping[str, Any], rank: int = 0, world_size: int = 1,
                 arch: Optional[Mapping[str, Any]] = None):
        super().__init__()
        # the CLS token is never in the reconstruction loss: the encoder pools by mean over patches
        # downstream unless imu_encoder_overrides says otherwise (pooling: cls). Runs made before
        # mask_fill existed (read back as mask_fill: zero) keep their CLS pooling when resumed.
        defaults = {"pooling": "mean"} if cfg.mask_fill == "token" else {}
        encoder = _init_imu_side(self, cfg, data_info, arch, defaults=defaults)
        self.mae = ImuMaskedAutoencoder(encoder, mask_ratio=cfg.mask_ratio, mask_fill=cfg.mask_fill)

    @property
    def imu_encoder(self):
        return self.mae.encoder

    def forward(self, batch: Mapping[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        # the masked autoencoder takes normalised windows itself (it is not a plain encoder call)
        return self.mae(normalize_windows(self.augment_imu(batch["imu"]), self.normalization)), {}


def build_method(cfg: Any, data_info: Mapping[str, Any], rank: int = 0, world_size: int = 1,
                 arch: Optional[Mapping[str, Any]] = None) -> PretrainMethod:
    """The method module for ``cfg.method``.

    Args:
        cfg: a ``PretrainConfig``.
        data_info: ``{"video_kind", "video_dim", "num_frames", "window", "preprocess": {...}}``.
        rank, world_size: for the DDP-aware losses.
        arch: ``model.json``'s architecture section to rebuild a trained run exactly (no pretrained
            weights are loaded; the caller loads the run's weights).
    """
    if cfg.method == "imu-mae":
        return MaskedImuMethod(cfg, data_info, rank, world_size, arch)
    return CrossModalMethod(cfg, data_info, rank, world_size, arch)


def method_architecture(model: nn.Module) -> Dict[str, Any]:
    """Registry name + resolved config of each encoder in a method (what ``arch`` takes back)."""
    out: Dict[str, Any] = {}
    for key in ("imu_encoder", "video_encoder"):
        enc = getattr(model, key, None)
        out[key] = None if enc is None else {"model": enc.model_name, "config": dict(enc.model_cfg)}
    return out
