"""crossmodal_har.models: encoder registry, heads, losses, the window classifier, the smoothing of its
labels over time (:mod:`~crossmodal_har.models.smoothing`), and the persisted model formats
(:mod:`~crossmodal_har.models.encoder_file`, :mod:`~crossmodal_har.models.run_file`,
:mod:`~crossmodal_har.models.bundle`, with :mod:`~crossmodal_har.models.weights` under all three).

Importing this package does no work; the names below are loaded on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "create_model": "crossmodal_har.models.registry",
    "list_models": "crossmodal_har.models.registry",
    "model_config": "crossmodal_har.models.registry",
    "register_model": "crossmodal_har.models.registry",
    "save_encoder": "crossmodal_har.models.encoder_file",
    "load_encoder": "crossmodal_har.models.encoder_file",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
