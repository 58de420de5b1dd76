"""How a command's flags become config keys, one way for every command: :func:`config_flags` gives
``config.build_config`` its ``flags`` (dotted key -> value, None = flag not given). Not a command (the
leading underscore keeps the CLI's discovery away); imports nothing heavy.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, Dict, Mapping, Optional, Sequence, Union

# the end-to-end training flags (--epochs, --batch-size, --lr, --patience) set supervised and finetune alike
FIT_KEYS = {k: (f"fit.supervised.{k}", f"fit.finetune.{k}") for k in ("epochs", "batch_size", "lr", "patience")}


def add_dataset_flags(p: argparse.ArgumentParser, *, dataset_required: bool, skip_bad_help: str) -> None:
    """The labelled dataset and the encoder it is read with (``evaluate``, ``train-classifier``)."""
    p.add_argument("--dataset", required=dataset_required,
                   help="generic dataset directory, 'hapt', 'uestc:<dir>' (32 classes) or 'uestc5:<dir>' (the paper's 5)")
    p.add_argument("--encoder", help="'random' (default) or an encoder/run directory with encoder.json")
    p.add_argument("--arch", dest="model", metavar="ARCH", help="architecture for --encoder random (default convgru: 3x cheaper than "
                   "patchtst-small on CPU; give the pretrained encoder's architecture, e.g. patchtst-tiny, for a matched "
                   "baseline)")
    p.add_argument("--model", dest="model", action=DeprecatedAlias, new="--arch", help=argparse.SUPPRESS)
    p.add_argument("--channels", choices=["acc", "acc+gyro"], help="what the model reads: acc+gyro (default, 6 "
                   "channels) or acc (accelerometer only: 3 channels; needed for recordings without a gyroscope). A "
                   "saved encoder brings its own channels (a contradicting --channels is refused)")
    p.add_argument("--skip-bad", action="store_true", default=None, help=skip_bad_help)
    p.add_argument("--cache-dir",
                   help="dataset/window cache (default $CROSSMODAL_HAR_CACHE or ~/.cache/crossmodal-har)")


def add_fit_flags(p: argparse.ArgumentParser, *, lr_help: str) -> None:
    """The end-to-end training flags (:data:`FIT_KEYS`), the device and progress bars."""
    p.add_argument("--epochs", type=int, help="max epochs for supervised and finetune")
    p.add_argument("--batch-size", type=int, help="batch size for supervised and finetune")
    p.add_argument("--lr", type=float, help=lr_help)
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (supervised, finetune)")
    add_device_flag(p, default=None)
    add_progress_flag(p)


def add_progress_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true",
                   help="no progress: neither bars (terminal) nor progress lines in the log")


class DeprecatedAlias(argparse.Action):
    """An old spelling kept for one release: stores like ``new`` and warns once on stderr (``--model`` where it
    named an architecture is now ``--arch``; ``--model`` means a saved bundle in every command)."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated here and will be removed in the next release; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def device_word(text: str) -> str:
    """``cpu``, ``cuda``, ``auto`` (or ``cuda:N``), lower-cased (an argparse ``type``)."""
    word = str(text).strip().lower()
    if word in ("cpu", "cuda", "auto") or re.fullmatch(r"cuda:[0-9]+", word):
        return word
    raise argparse.ArgumentTypeError(f"must be cpu, cuda or auto (or cuda:N), got {text!r}")


def add_device_flag(p: argparse.ArgumentParser, *, default: Optional[str] = "cpu", dest: str = "device") -> None:
    """The one ``--device cpu|cuda|auto`` of every command that runs a model."""
    shown = default or "cpu"
    p.add_argument("--device", dest=dest, type=device_word, default=default, metavar="cpu|cuda|auto",
                   help=f"where the model runs (default {shown}; auto: cuda when available)")


def add_threads_flag(p: argparse.ArgumentParser) -> None:
    """``--threads N`` of every command that computes: CPU threads per process (default 1, or the environment's
    OMP_NUM_THREADS when set; applied by ``cli.main`` before the command imports torch)."""
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads per process (default 1, or $OMP_NUM_THREADS: the small models gain little from "
                        "more and lose several-fold on a busy machine)")


def add_overrides_flag(p: argparse.ArgumentParser, example: str, what: str = "any setting") -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``: the last word of ``config.build_config``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override {what}, dotted keys, e.g. {example} (repeatable)")


def add_source_flags(p: argparse.ArgumentParser) -> None:
    """Which IMU file of a paired session (``--imu-site``); where an Ego4D download keeps its metadata,
    IMU and videos (``ingest --layout ego4d``)."""
    p.add_argument_group("paired layout").add_argument(
        "--imu-site", metavar="SITE", help="read <session>/imu-SITE.csv (one IMU per body site, e.g. the simulator's "
                                           "--mounting head,waist) instead of imu.csv")
    g = p.add_argument_group("ego4d layout")
    g.add_argument("--ego4d-json", help="Ego4D metadata file (default: SRC/ego4d.json)")
    g.add_argument("--imu-dir", help="directory of <video_uid>.csv IMU files (default: SRC/imu or SRC/v2/imu)")
    g.add_argument("--video-dir", help="directory of <video_uid>.mp4 (default: SRC/full_scale or SRC/v2/full_scale)")
    g.add_argument("--imu-offset-s", type=float, help="seconds added to every IMU timestamp (ego4d)")


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
