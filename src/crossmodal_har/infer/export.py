"""Export a classifier bundle to ONNX and check it against PyTorch.

The graph takes ``windows`` [batch, W, 6] float32 in physical units (g, rad/s) and returns
``logits`` [batch, C]; the bundle's normalisation is inside the graph, the batch axis is dynamic.
An accelerometer-only bundle (``preprocess.channels: acc``) takes the same [batch, W, 6] input: the
selection of its 3 accelerometer columns (``models.base.select_input_channels``) is in the graph, so
every runner feeds 6 columns and the gyroscope ones are never read.
We use the TorchScript-based exporter (``dynamo=False``, opset 17): it handles the transformers
PatchTST encoder without extra dependencies (onnxscript), and opset 17 has LayerNormalization.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import types
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from crossmodal_har.infer.runtime import DIGEST_KEY, OnnxRunner
from crossmodal_har.io import atomic_write_bytes
from crossmodal_har.outputs import staged
from crossmodal_har.models.bundle import BUNDLE_ONNX, load_bundle, weights_digest

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
OPSET = 17
PARITY_TOLERANCE = 1e-4


@contextlib.contextmanager
def _export_friendly(model):
    """Temporarily rewrite ops the TorchScript exporter gets wrong into equivalent ones.

    ``Tensor.unfold`` with a *negative* dimension (transformers' ``PatchTSTPatchify``) is exported
    with its output axes swapped (torch 2.13, opset 17); the same call with the positive dimension
    exports correctly. The parity check after export guards this.
    A module with an ``export_forward`` method (the conv-GRU encoder: 2-D convolutions, the GRU
    unrolled) is exported through it instead of ``forward``. Every module is put back as it was.
    """
    patched = []  # (module, the forward the instance had of its own, or None)
    try:
        for mod in model.modules():
            if type(mod).__name__ == "PatchTSTPatchify" and hasattr(mod, "sequence_start"):
                patched.append((mod, vars(mod).get("forward")))
                mod.forward = types.MethodType(_patchify_forward, mod)
            elif callable(getattr(mod, "export_forward", None)):
                patched.append((mod, vars(mod).get("forward")))
                mod.forward = mod.export_forward
        yield model
    finally:
        for mod, before in patched:
            if before is None:
                del mod.forward  # back to the class method
            else:
                mod.forward = before  # a forward the instance had of its own


def _patchify_forward(self, past_values):
    """transformers' ``PatchTSTPatchify.forward`` with ``unfold`` on a positive dimension."""
    if past_values.shape[-2] != self.sequence_length:
        raise ValueError(f"input length {past_values.shape[-2]} != {self.sequence_length}")
    out = past_values[:, self.sequence_start:, :]
    out = out.unfold(dimension=out.dim() - 2, size=self.patch_length, step=self.patch_stride)
    return out.transpose(-2, -3).contiguous()


def export_onnx(model, out_path: PathLike, window_samples: int, *, opset: int = OPSET,
                channels: int = 6, metadata: Optional[dict] = None) -> Path:
    """Write ``model`` (physical windows -> logits) to ``out_path`` with a dynamic batch axis.

    ``metadata`` (str -> str) is stored in the ONNX model's ``metadata_props``.
    """
    model = model.eval()
    example = torch.randn(2, int(window_samples), channels)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings(), _export_friendly(model):
        warnings.simplefilter("ignore")  # tracer warnings about python control flow on shapes
        torch.onnx.export(
            model, (example,), buf, dynamo=False, opset_version=int(opset),
            input_names=["windows"], output_names=["logits"],
            dynamic_axes={"windows": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=True,
        )
    data = buf.getvalue()
    if metadata:
        import onnx

        proto = onnx.load_from_string(data)
        for k, v in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = str(k), str(v)
        data = proto.SerializeToString()
    return atomic_write_bytes(out_path, data)


def check_parity(model, onnx_path: PathLike, window_samples: int, *, batch: int = 7, seed: int = 0,
                 channels: int = 6) -> float:
    """Max absolute logit difference between PyTorch and ONNX Runtime on one random batch.

    The batch is a plausible IMU window (gravity on z, noise, a few g of motion) so that a
    normalisation-free bundle is also exercised in its working range; ``batch`` differs from the
    export example's size to exercise the dynamic axis.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.5, size=(batch, int(window_samples), channels)).astype(np.float32)
    x[:, :, 2] += 1.0
    with torch.inference_mode():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    got = OnnxRunner(onnx_path)(x)
    if got.shape != ref.shape:
        raise RuntimeError(f"ONNX output shape {got.shape} != PyTorch {ref.shape}")
    return float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))


def export_bundle(bundle_dir: PathLike, out_path: Optional[PathLike] = None, *, opset: int = OPSET,
                  tolerance: float = PARITY_TOLERANCE) -> tuple:
    """Export a bundle and verify parity. Returns ``(onnx_path, max_abs_diff)``.

    Raises:
        RuntimeError: the difference exceeds ``tolerance`` (the file is removed).
    """
    bundle = load_bundle(bundle_dir)
    out = Path(out_path) if out_path is not None else bundle.path / BUNDLE_ONNX
    W = bundle.preprocess.window_samples
    meta = {DIGEST_KEY: weights_digest(bundle.path), "class_names": ",".join(bundle.class_names),
            "window_samples": str(W), "rate_hz": str(bundle.preprocess.rate_hz)}
    export_onnx(bundle.model, out, W, opset=opset, metadata=meta)
    try:
        diff = check_parity(bundle.model, staged(out), W)  # the file just written (staged until the run ends)
    except BaseException:  # ONNX Runtime cannot load or run it: no file is left behind
        out.unlink(missing_ok=True)
        raise
    if not diff <= tolerance:
        out.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX export of {bundle_dir}: max |torch - onnx| = {diff:.3g} > {tolerance:g}; "
                           "file removed")
    return out, diff


def export_beside(bundle_dir: PathLike) -> str:
    """``MODEL_DIR/model.onnx`` for a bundle just trained (``train-classifier``), so that ``predict
    --runtime auto`` (the default) runs it with ONNX Runtime; one line saying what was done. A model
    that cannot be exported, or whose export fails the parity check, keeps its bundle as it is:
    ``predict`` then runs it with torch (the reason is logged as a warning)."""
    try:
        out, diff = export_bundle(bundle_dir)
    except Exception as exc:  # torch.onnx raises many kinds; the export is optional, the bundle stays usable
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        log.warning("%s: no ONNX export (%s); predict runs this bundle with torch", bundle_dir, reason)
        return f"no {BUNDLE_ONNX} ({reason}): predict runs the bundle with torch"
    return f"wrote {out} (max |torch - onnxruntime| = {diff:.2g}): predict runs it with ONNX Runtime"
