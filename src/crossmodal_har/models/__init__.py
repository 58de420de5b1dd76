"""crossmodal_har.models: encoder registry, heads, losses, the window classifier, and every
persisted model format (:mod:`crossmodal_har.models.artefacts`: encoder, pretraining run, bundle).

Importing this package does no work; the names below are loaded on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "create_model": "crossmodal_har.models.registry",
    "list_models": "crossmodal_har.models.registry",
    "model_config": "crossmodal_har.models.registry",
    "register_model": "crossmodal_har.models.registry",
    "save_encoder": "crossmodal_har.models.artefacts",
    "load_encoder": "crossmodal_har.models.artefacts",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
