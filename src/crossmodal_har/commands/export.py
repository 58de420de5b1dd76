"""``crossmodal-har export``: a classifier bundle to ONNX, checked against PyTorch."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

NAME = "export"
HELP = "export a classifier bundle to ONNX, parity-checked"
DESCRIPTION = (
    "Writes an ONNX graph mapping windows [batch, W, 6] in g and rad/s to logits [batch, C]. After "
    "export, one random batch goes through PyTorch and ONNX Runtime; the max absolute difference is "
    "printed and must be <= 1e-4 (else the file is removed and the command fails). Save it as "
    "MODEL_DIR/model.onnx for 'predict --runtime onnx' to find it. Re-exporting replaces "
    "MODEL_DIR/model.onnx; any other existing --out is replaced only with --force, and an --out that "
    "is a bundle file (bundle.json, the weights; also through a symlink or hard link) is refused."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from crossmodal_har.commands._args.flags import add_threads_flag

    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="classifier bundle directory")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", default=None, metavar="FILE.onnx", help="default: MODEL_DIR/model.onnx")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    add_threads_flag(p)
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out other than MODEL_DIR/model.onnx (never a bundle file)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from crossmodal_har.errors import UserError
    from crossmodal_har.infer.export import PARITY_TOLERANCE, export_bundle
    from crossmodal_har.io import guard_outputs, same_file
    from crossmodal_har.models.bundle import BUNDLE_META, BUNDLE_ONNX, BUNDLE_WEIGHTS

    if args.opset < 17:
        raise UserError("--opset must be >= 17 (LayerNormalization)")
    bundle_dir = Path(args.model)
    own = bundle_dir / BUNDLE_ONNX
    out = Path(args.out) if args.out else own
    # the bundle's files are inputs, except its own export, which re-exporting replaces
    inputs = [("--model", bundle_dir / n) for n in (BUNDLE_META, BUNDLE_WEIGHTS)]
    guard_outputs([("--out", out)], inputs, force=args.force or same_file(out, own))
    try:
        out, diff = export_bundle(args.model, out, opset=args.opset)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {out}; parity on a random batch: max |torch - onnxruntime| = {diff:.3g} "
          f"(tolerance {PARITY_TOLERANCE:g})")
    return 0
