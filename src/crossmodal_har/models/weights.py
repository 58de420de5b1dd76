"""What fills a saved model: safetensors weights read and written, loaded strictly, and the checks
made before anything is built (the architecture a file names, the size its weights file must have).

Every persisted format (:mod:`~crossmodal_har.models.encoder_file`, :mod:`~crossmodal_har.models.run_file`,
:mod:`~crossmodal_har.models.bundle`) is a directory holding a safetensors file (no pickle) beside its
JSON file; every reader loads weights through :func:`load_state_strict`: a missing, unexpected or
mis-shaped key is an error naming the keys, never a silent partial load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from crossmodal_har.errors import ConfigError, DataError
from crossmodal_har.io import PathLike, atomic_write
from crossmodal_har.models.registry import architecture_config, model_kind
from crossmodal_har.signals.text import short_number


def unwrap(model):
    """Strip DistributedDataParallel (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif type(model).__name__ in ("DistributedDataParallel", "DataParallel") and hasattr(model, "module"):
            model = model.module
        else:
            return model


def cpu_state_dict(model) -> Dict[str, Any]:
    """The model's state dict as contiguous CPU tensors that safetensors can write."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def write_weights(path: Path, state: Mapping[str, Any], metadata: Mapping[str, str]) -> None:
    """Write a state dict as a safetensors file, atomically."""
    from safetensors.torch import save_file

    atomic_write(path, lambda p: save_file(dict(state), str(p), metadata=dict(metadata)))


def read_weights(path: Path, map_location: str = "cpu") -> Dict[str, Any]:
    """A safetensors file as a state dict; a missing or unreadable file is a :class:`DataError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise DataError(path, "weights file missing")
    try:  # the reader's own error for an unreadable file says "No such file"
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise DataError(path, f"cannot read the weights file: {exc.strerror or exc}") from None
    try:
        return load_file(str(path), device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(path, f"unreadable safetensors file: {exc}") from None


def load_state_strict(model, state: Mapping[str, Any], source: Optional[PathLike] = None) -> None:
    """``model.load_state_dict(state)``, but every missing or unexpected key and every shape
    mismatch is a :class:`DataError` naming the keys (``missing 1 [head.bias]``)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shape)):
        if keys:
            shown = ", ".join(keys[:15]) + (" …" if len(keys) > 15 else "")
            problems.append(f"{what} {len(keys)} [{shown}]")
    if problems:
        raise DataError(source, "weights do not match the model: " + "; ".join(problems))
    model.load_state_dict(dict(state), strict=True)


# --------------------------------------------------------------------------- before building
#
# A file's ``{model, config}`` may name a registered architecture and set only the fields of its
# config, in the ranges its ``validate`` enforces; loading keys (``pretrained``, ``allow_download``
# ...) are refused: only the command line decides whether weights are fetched. These checks ask the
# registry (which imports the architecture's module), so readers run them when they build a model,
# not when they only read a file (the ONNX runtime builds no encoder).

def check_architecture(model: str, config: Any, where: str, kind: Optional[str] = None) -> Any:
    """The architecture dataclass of a persisted ``{model, config}`` pair, checked (nothing built):
    a registered name (of ``kind`` when given) and a config with only its fields, in range.

    Raises ConfigError/UserError naming ``where`` (readers add the file's name)."""
    actual = model_kind(model)
    if kind is not None and actual != kind:
        raise ConfigError(f"{where}.model: {model!r} is a {actual} encoder, expected an {kind} encoder")
    return architecture_config(model, config, where=f"{where}.config")


def arch_embed_dim(arch: Any) -> Optional[int]:
    """The embedding size an architecture config declares (``embed_dim``), or None if it has none."""
    value = getattr(arch, "embed_dim", None)
    return None if value is None else int(value)


def arch_params(arch: Any) -> int:
    """An architecture config's lower-bound parameter count (``approx_parameters()``), 0 if unknown."""
    fn = getattr(arch, "approx_parameters", None)
    return int(fn()) if callable(fn) else 0


def check_weights_size(meta_path: Path, weights: Path, what: str, parameters: int, head_bytes: int = 0) -> None:
    """Before building: a file of a few bytes cannot make us allocate gigabytes. The architecture's
    lower-bound parameter count (at 2 bytes each, allowing half precision) plus ``head_bytes`` must
    fit in the weights file that will fill them."""
    if not weights.is_file():
        raise DataError(weights, "weights file missing")
    size = weights.stat().st_size
    need = 2 * int(parameters) + int(head_bytes)
    if need > size:
        raise DataError(meta_path, f"{what} declares about {short_number(need)} bytes of weights but {weights.name} holds "
                                   f"{size}: the architecture does not match the weights")
