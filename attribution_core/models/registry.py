"""The model registry: list specs, look one up, load it once per device (in-process cache).

Built-in specs are collected on first use (building a spec reads only small JSON files; no
weights). ``register_spec`` adds models for a library or command-line user; the registry is
process-wide, so the shared dashboard never registers what one of its users defines (those
models live in that user's session: dashboard/components/session_models.py).
Loaded models are cached by (name, device, weights hash or file stamp), so a retrained or
replaced weights file is loaded afresh while repeated requests reuse one module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

from attribution_core.models.loading import load_spec
from attribution_core.models.spec import LoadedModel, Modality, ModelLoadError, ModelSpec

_SPECS: dict[str, ModelSpec] = {}
_LOADED: dict[tuple[str, str, str], LoadedModel] = {}
_LOCK = threading.RLock()
_BUILTINS_READY = False


def _builtin_spec_factories() -> list[Callable[[], list[ModelSpec]]]:
    from attribution_core.models import builtin_image, builtin_tabular, builtin_text, loaders

    return [builtin_image.specs, builtin_text.specs, builtin_tabular.specs,
            loaders.torchvision_specs]


def _ensure_builtins() -> None:
    global _BUILTINS_READY
    with _LOCK:
        if _BUILTINS_READY:
            return
        for factory in _builtin_spec_factories():
            for spec in factory():
                _SPECS.setdefault(spec.name, spec)
        _BUILTINS_READY = True


def register_spec(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry (``replace=True`` swaps a same-named one and its cache)."""
    _ensure_builtins()
    with _LOCK:
        if spec.name in _SPECS and not replace:
            raise ModelLoadError(f"A model named {spec.name!r} is already registered.")
        _SPECS[spec.name] = spec
        for key in [key for key in _LOADED if key[0] == spec.name]:
            del _LOADED[key]
    return spec


def list_specs(modality: Modality | None = None) -> list[ModelSpec]:
    """Every registered spec (built-ins first), optionally only one modality's."""
    _ensure_builtins()
    with _LOCK:
        specs = list(_SPECS.values())
    return [spec for spec in specs if modality is None or spec.modality == modality]


def get_spec(name: str) -> ModelSpec:
    _ensure_builtins()
    with _LOCK:
        spec = _SPECS.get(name)
    if spec is None:
        known = ", ".join(sorted(_SPECS))
        raise ModelLoadError(f"Unknown model {name!r}. Known models: {known}.")
    return spec


def load_model(name: str | ModelSpec, device: str | torch.device | None = None) -> LoadedModel:
    """The loaded model for ``name`` on ``device`` (default: the best available), cached."""
    return load_spec(name if isinstance(name, ModelSpec) else get_spec(name), device)


def clear_model_cache() -> None:
    """Drop every loaded model (the specs stay registered)."""
    with _LOCK:
        _LOADED.clear()


def cached_models() -> list[tuple[str, str]]:
    """(name, device) of every model currently held in the cache."""
    with _LOCK:
        return [(name, device) for name, device, _ in _LOADED]
