"""The model registry: list specs, look one up, load it once per device (in-process cache).

Built-in specs are collected on first use (building a spec reads only small JSON files; no
weights). ``register_spec`` adds models for a library or command-line user; the registry is
process-wide, so the shared dashboard never registers what one of its users defines (those
models live in that user's session: dashboard/widgets/session_models.py).
Loaded models are cached by (name, device, weights hash or file stamp), so a retrained or
replaced weights file is loaded afresh while repeated requests reuse one module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

from attribution_core.models import loading
from attribution_core.models.loading import load_spec
from attribution_core.models.plugin_discovery import load_plugins
from attribution_core.models.plugin_discovery import plugin_failures as _plugin_failures
from attribution_core.models.spec import LoadedModel, Modality, ModelLoadError, ModelSpec

_SPECS: dict[str, ModelSpec] = {}
_LOCK = threading.RLock()
_BUILTINS_READY = False
_PLUGINS_LOADING = False


def _builtin_spec_factories() -> list[Callable[[], list[ModelSpec]]]:
    from attribution_core.models import builtin_image, builtin_tabular, builtin_text, loaders

    return [builtin_image.specs, builtin_text.specs, builtin_tabular.specs,
            loaders.torchvision_specs]


def _ensure_builtins() -> None:
    global _BUILTINS_READY
    with _LOCK:
        if not _BUILTINS_READY:
            for factory in _builtin_spec_factories():
                for spec in factory():
                    _SPECS.setdefault(spec.name, spec)
            _BUILTINS_READY = True
    _load_plugins()


def _load_plugins() -> None:
    """Import the operator's plugins not imported yet (ATTRIBUTION_MODELS is read on every
    use, so a plugin named after start-up still arrives; nothing new costs a string split).
    A plugin's own register_model call comes back here: the flag stops the recursion."""
    global _PLUGINS_LOADING
    with _LOCK:
        if _PLUGINS_LOADING:
            return
        _PLUGINS_LOADING = True
        try:
            load_plugins()
        finally:
            _PLUGINS_LOADING = False


def plugin_failures() -> list[tuple[str, str]]:
    """(source, error) of every plugin that failed to import (listed as not ready)."""
    _ensure_builtins()
    return [(failure.source, failure.message) for failure in _plugin_failures()]


def unregister_spec(name: str) -> None:
    """Remove a plugin's (or a library user's) model and its loaded copies; built-ins stay."""
    with _LOCK:
        spec = _SPECS.get(name)
        if spec is not None and spec.source in ("plugin", "upload"):
            del _SPECS[name]
            loading.forget(name)


def register_spec(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry (``replace=True`` swaps a same-named one and its cache)."""
    _ensure_builtins()
    with _LOCK:
        if spec.name in _SPECS and not replace:
            raise ModelLoadError(f"A model named {spec.name!r} is already registered.")
        _SPECS[spec.name] = spec
        loading.forget(spec.name)
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
    loading.forget()


def cached_models() -> list[tuple[str, str]]:
    """(name, device) of every model currently held in the loading cache."""
    return loading.loaded_keys()
