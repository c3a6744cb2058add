"""The dashboard's view of the models: the built-in registry plus this session's own models.

The registry belongs to attribution_core.models and holds built-in models only (process-wide);
what a user defines (a zero-shot label set) lives in the user's session
(:mod:`dashboard.widgets.session_models`), so each session lists built-ins plus its own
definitions and never a stranger's. This module only adapts the registry, so the dashboard keeps
working (with an explanatory empty list) while the registry is missing or broken.

Operator details stay with the operator: a model's status message (file paths, set-up hints)
goes to the server log; users see :func:`public_status`, ready or not.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from attribution_core.models.spec import LoadedModel, ModelSpec, ModelStatus
from dashboard.widgets import session_models

LOG = logging.getLogger("dashboard.models")
NOT_AVAILABLE = "not available on this server"
# Process-wide on purpose: benchmarks and tests offer specs outside the registry. Never used for
# anything a user defines (that is session_models).
_TEMPORARY: dict[str, ModelSpec] = {}
_LOGGED: set[tuple[str, str]] = set()
_LOGGED_LOCK = threading.Lock()


@dataclass(frozen=True)
class CatalogEntry:
    spec: ModelSpec
    status: ModelStatus


def register_temporary(spec: ModelSpec) -> None:
    """Offer a spec that is not in the registry (e.g. a random-weights ResNet for benchmarks)."""
    _TEMPORARY[spec.name] = spec


def unregister_temporary(name: str) -> None:
    _TEMPORARY.pop(name, None)


def _registry() -> ModuleType | None:
    try:
        return importlib.import_module("attribution_core.models.registry")
    except Exception:  # reported by registry_problem()
        return None


def registry_problem() -> str | None:
    """Why registered models cannot be listed, or None when the registry works."""
    try:
        importlib.import_module("attribution_core.models.registry").list_specs(None)
    except Exception as error:  # a half-installed registry must not break the dashboard
        return f"The model registry is not available ({type(error).__name__}: {error})."
    return None


def list_entries(modality: str | None = None) -> list[CatalogEntry]:
    """Every spec of ``modality`` (all when None) with its status; broken statuses are reported."""
    specs: list[ModelSpec] = []
    registry = _registry()
    if registry is not None:
        # A failure is reported by registry_problem() where the list is shown.
        with contextlib.suppress(Exception):
            specs.extend(registry.list_specs(modality))
    specs.extend(s for s in _TEMPORARY.values() if modality is None or s.modality == modality)
    specs.extend(session_models.listed(modality))
    entries = [CatalogEntry(spec, status_of(spec)) for spec in specs]
    return entries + _broken_plugins(registry, modality)


def _broken_plugins(registry: ModuleType | None, modality: str | None) -> list[CatalogEntry]:
    """A plugin that failed to import, listed as not ready in every model list (its modality
    is unknown: it never ran). The error itself goes to the server log, as for any status."""
    if registry is None:
        return []
    try:
        failures = registry.plugin_failures()
    except Exception:  # the registry's own failure is reported by registry_problem()
        return []
    entries = []
    for source, message in failures:
        status = ModelStatus(False, f"plugin {source} failed to import: {message}")
        spec = ModelSpec(
            name=f"plugin:{source}", title=f"Plugin {Path(source).name}",
            modality=modality or "image",  # type: ignore[arg-type]
            output_kind="classification", class_names=(), loader=_not_loadable,
            status=lambda status=status: status, source="plugin")
        entries.append(CatalogEntry(spec, status_of(spec)))
    return entries


def _not_loadable(device: torch.device) -> LoadedModel:
    raise ValueError("This plugin failed to import, so it has no model to load.")


def status_of(spec: ModelSpec) -> ModelStatus:
    """The full status (for the operator: may name server paths); logged once when not ready."""
    try:
        status = spec.status()
    except Exception as error:  # a status check must never take the page down
        status = ModelStatus(False, f"status check failed: {error}")
    if not status.ready:
        _log_once(spec.name, status.message)
    return status


def public_status(status: ModelStatus) -> str:
    """What a user may see of a status: ready or not, never where the files are."""
    return "ready" if status.ready else NOT_AVAILABLE


def _log_once(name: str, message: str) -> None:
    with _LOGGED_LOCK:
        if (name, message) in _LOGGED:
            return
        _LOGGED.add((name, message))
    LOG.warning("Model %s is not ready: %s (see `python -m attribution_core.models`)",
                name, message)


def get_spec(name: str) -> ModelSpec:
    own = session_models.get(name)
    if own is not None:
        return own
    broken = next((entry.spec for entry in _broken_plugins(_registry(), None)
                   if entry.spec.name == name), None)
    if broken is not None:
        return broken
    if name in _TEMPORARY:
        return _TEMPORARY[name]
    registry = _registry()
    if registry is None:
        raise KeyError(f"Unknown model {name!r}: the model registry is not available.")
    return registry.get_spec(name)


def load(name: str, device: torch.device) -> LoadedModel:
    """Load a model (temporary specs through their own loader). The session's own models are
    loaded by :func:`session_models.load` (see resources.loaded_model), never here."""
    if name in _TEMPORARY:
        return _TEMPORARY[name].loader(device)
    registry = _registry()
    if registry is None:
        raise KeyError(f"Unknown model {name!r}: the model registry is not available.")
    return registry.load_model(name, device=device)
