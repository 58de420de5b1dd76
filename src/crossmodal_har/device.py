"""The one device resolver: a user's ``--device`` / ``--accelerator`` word -> a torch device.

Pretraining (``--accelerator auto|cpu|gpu``) and evaluation / classifier training
(``--device auto|cpu|cuda|cuda:N``) use the same words here, so that ``auto`` means the same thing
everywhere: CUDA when a device is visible, else CPU.
"""

from __future__ import annotations

import torch

from crossmodal_har.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "gpu")


def resolve_device(name: str = "auto", *, flag: str = "--device") -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``gpu`` is an alias of ``cuda``;
    ``cuda:N`` names one device.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``gpu`` or ``cuda:N`` (case-insensitive).
        flag: the command-line flag the word came from, for the error message.

    Raises:
        UserError: CUDA asked for but not available, or an unknown word.
    """
    word = name.lower()
    if word == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if word == "cpu":
        return torch.device("cpu")
    if word == "gpu" or word == "cuda" or word.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"{flag} {name}: no CUDA device is available (use {flag} cpu)")
        return torch.device("cuda" if word == "gpu" else word)
    raise UserError(f"{flag} must be auto, cpu, cuda, cuda:N or gpu, got {name!r}")


def set_cpu_threads(device: str, threads: int, *, flag: str = "--threads") -> None:
    """torch's CPU threads for a run on ``device`` ``cpu`` (a GPU run is left alone). The small CPU
    models gain little from more than one thread and lose several-fold on a busy machine."""
    if device != "cpu":
        return
    if threads < 1:
        raise UserError(f"{flag} must be >= 1")
    torch.set_num_threads(threads)
