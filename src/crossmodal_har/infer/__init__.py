"""crossmodal_har.infer: streaming prediction and embedding over long recordings, ONNX export.

Modules (nothing heavy is imported at package import):
    source     ``InferenceSource``: a recording as a model sees it (the lenient reader of
               ``signals.recording``, the channel rule, autocalibration); used by predict and embed.
    calibration  van Hees 2014 autocalibration: still 10-s epochs from a first pass, sphere fit.
    nonwear    van Hees 2013 / GGIR non-wear detection over 60-min windows, edges refined to the minute.
    clinical_report  daily/hourly summaries and the self-contained report.html.
    stream     ``StreamingWindower``: resample -> median filter -> windows -> quality, gap-aware,
               identical output whatever the chunking.
    runtime    ``TorchRunner``, ``OnnxRunner`` (stale-export check), ``BatchedRunner`` (fixed batches).
    predict    ``PredictConfig`` -> ``run_predict`` (the command's job: settings, bundle, runtime,
               outputs); ``predict_file``: windows -> model -> non-wear -> smoothing -> CSV.
    rows       predict's output rows: model results in order, the non-wear gate, the smoothed CSV writer.
    summary    ``Summary`` / ``format_summary``: what a prediction run saw (``<out>.summary.json``).
    embed      ``EmbedConfig`` -> ``run_embed``: per-window embeddings to Parquet / .npy (predict's
               windows: the same source).
    export     ONNX export with a PyTorch/ONNX Runtime parity check.
    timeline   activity-over-time plot aggregated for days-long recordings.
The bundle format itself (``MODEL_DIR/`` = model.safetensors + bundle.json; ``save_bundle``,
``load_bundle``, torch-free ``read_bundle(with_model=False)``, and the bundle's smoother: a majority
filter or Viterbi with its HMM, :mod:`crossmodal_har.models.smoothing`) is
:mod:`crossmodal_har.models.bundle`'s; ``infer`` imports ``models`` and never ``train`` or
``evaluate``.
See docs/inference.md.
"""
