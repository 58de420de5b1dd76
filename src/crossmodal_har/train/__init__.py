"""crossmodal_har.train — cross-modal pretraining (the paper's method and its baselines).

Modules, each with one job:

* ``config``: ``PretrainConfig`` (dataclass, unknown keys are errors) and the named configs shipped
  in ``train/configs/`` (``siglip``, ``siglip-tiny``, ``paper/siglip-4gpu`` ...).
* ``data``: what the engine reads — a data source with ``load() -> PairedData`` (train/val/test
  datasets of ``{"imu", "video", "index", "label", "subject"}`` dicts, split by subject);
  ``StoreSource`` reads a window store.
* ``synthetic``: IMU/video pairs sharing a latent, and a writer of such a store (tests, benchmarks).
* ``methods``: ``siglip``, ``clip``, ``imu2clip``, ``imu-mae`` as modules ``forward(batch) -> loss``.
* ``engine``: ``pretrain(cfg, source, out_dir, resume=..., devices=...)`` — DDP, AMP, atomic
  checkpoints, exact resume, validation, export of the encoder and the whole model.
* ``schedule``, ``checkpoint``, ``distributed``, ``loggers``: the engine's parts.

Zero-shot evaluation of a run is in :mod:`crossmodal_har.evaluate.zeroshot`.
"""
