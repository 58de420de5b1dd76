"""crossmodal_har.infer: classifier bundles, streaming prediction over long recordings, export.

Modules (nothing heavy is imported at package import):
    bundle     ``MODEL_DIR/`` = model.safetensors + bundle.json; ``save_bundle``, ``load_bundle``
               (strict keys), ``read_bundle(with_model=False)`` for torch-free use.
    reader     chunked CSV/Parquet reading in canonical units; errors name the global line.
    stream     ``StreamingWindower``: resample -> median filter -> windows -> quality, gap-aware,
               identical output whatever the chunking.
    predict    ``predict_file``: windows -> model (torch or ONNX Runtime) -> smoothing -> CSV + summary.
    smoothing  centred majority filter over runs of ok windows (streaming-exact).
    embed      per-window embeddings to Parquet / .npy.
    export     ONNX export with a PyTorch/ONNX Runtime parity check.
    timeline   activity-over-time plot aggregated for days-long recordings.
See docs/inference.md.
"""
