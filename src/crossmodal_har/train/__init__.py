"""crossmodal_har.train — cross-modal pretraining (the paper's method and its baselines).

Modules, each with one job:

* ``config``: ``PretrainConfig`` (dataclass, unknown keys are errors) and the named configs shipped
  in ``train/configs/`` (``siglip``, ``siglip-tiny``, ``paper/siglip-4gpu`` ...).
* ``data``: what the loop reads — a data source with ``load() -> PairedData`` (train/val/test
  datasets of ``{"imu", "video", "index", "label", "subject"}`` dicts, split by subject);
  ``StoreSource`` reads a window store.
* ``synthetic``: IMU/video pairs sharing a latent, and a writer of such a store (tests, benchmarks).
* ``methods``: ``siglip``, ``clip``, ``imu2clip``, ``imu-mae`` as modules ``forward(batch) -> loss``;
  each owns its IMU input path and its optimiser parameter groups.
* ``engine``: ``pretrain(cfg, source, out_dir, resume=..., devices=...)`` — the entry point; how
  processes are launched (one, ``--devices N`` spawned, torchrun / SLURM).
* ``job``: ``run_job(PretrainJob, out_dir)`` — what ``crossmodal-har pretrain`` asks for: the run's
  config (named, a file, or on resume the run's own), its data source and channels, then ``engine``.
* ``loop``: one process's training loop — set-up, exact resume, steps, AMP, checkpoints, time budget.
* ``validation``: embedding a dataset with a method, ``val/loss`` and ``val/R@k`` (also used by zero-shot).
* ``retrieval``: R@k / MRR and their chance levels on paired embeddings (pure numpy).
* ``rundir``: the run directory — file names, run files, export, summary, rebuilding a run's method.
* ``schedule``, ``checkpoint``, ``seeding``, ``distributed``, ``loggers``: the loop's parts.

Zero-shot evaluation of a run is in :mod:`crossmodal_har.evaluate.zeroshot` (which imports from
here, never the other way round).
"""
