"""How a command's flags become config keys, one way for every command: :func:`config_flags` gives
``config.build_config`` its ``flags`` (dotted key -> value, None = flag not given). Not a command (the
leading underscore keeps the CLI's discovery away); imports nothing heavy.
"""

from __future__ import annotations

import argparse
import re
from typing import Any, Dict, Mapping, Optional, Sequence, Union

# the end-to-end training flags (--epochs, --batch-size, --lr, --patience) set supervised and finetune alike
FIT_KEYS = {k: (f"fit.supervised.{k}", f"fit.finetune.{k}") for k in ("epochs", "batch_size", "lr", "patience")}


def config_flags(args: argparse.Namespace, keys: Mapping[str, Union[str, Sequence[str]]]) -> Dict[str, Any]:
    """``{config key: value}`` for each parsed flag (argparse dest) in ``keys``; a dest may set several keys."""
    out: Dict[str, Any] = {}
    for dest, targets in keys.items():
        for key in ([targets] if isinstance(targets, str) else targets):
            out[key] = getattr(args, dest)
    return out


def guard_training_out(out: str, dataset: str, *, encoder: Optional[str] = None, match: Optional[str] = None,
                       cache_dir: Optional[str] = None, files: Sequence[str] = (), force: Optional[bool] = None) -> None:
    """``--out`` of ``evaluate`` / ``train-classifier`` is never an input: the dataset's files, the saved
    encoder (``encoder``; None for ``random``), the ``--match`` encoder or the cache (``io.guard_output_dir``)."""
    from crossmodal_har.io import guard_output_dir
    from crossmodal_har.signals.datasets import dataset_location

    guard_output_dir(("--out", out), [("--dataset", dataset_location(dataset)), ("--encoder", encoder),
                                      ("--match", match), ("--cache-dir", cache_dir)], files=files, force=force)


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``2h``, ``1.5h`` (an argparse ``type``)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 600, 600s, 10m, 2h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
