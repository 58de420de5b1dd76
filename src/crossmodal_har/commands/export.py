"""``crossmodal-har export``: a classifier bundle to ONNX, checked against PyTorch."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

NAME = "export"
HELP = "export a classifier bundle to ONNX (dynamic batch, normalisation inside) and check parity"
DESCRIPTION = (
    "Writes an ONNX graph mapping windows [batch, W, 6] in g and rad/s to logits [batch, C]. After "
    "export, one random batch goes through PyTorch and ONNX Runtime; the max absolute difference is "
    "printed and must be <= 1e-4 (else the file is removed and the command fails). Save it as "
    "MODEL_DIR/model.onnx for `predict --runtime onnx` to find it."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="classifier bundle directory")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", default=None, metavar="FILE.onnx", help="default: MODEL_DIR/model.onnx")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")


def run(args: argparse.Namespace) -> int:
    from crossmodal_har.errors import UserError
    from crossmodal_har.infer.export import PARITY_TOLERANCE, export_bundle

    if args.opset < 17:
        raise UserError("--opset must be >= 17 (LayerNormalization)")
    try:
        out, diff = export_bundle(args.model, args.out, opset=args.opset)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {out}; parity on a random batch: max |torch - onnxruntime| = {diff:.3g} "
          f"(tolerance {PARITY_TOLERANCE:g})")
    return 0
