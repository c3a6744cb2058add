"""The dashboard's view of the models: the built-in registry plus this session's own models.

The registry belongs to attribution_core.models and holds built-in models only (process-wide);
what a user defines (a zero-shot label set) lives in the user's session
(:mod:`dashboard.components.session_models`), so each session lists built-ins plus its own
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
from types import ModuleType

import torch

from attribution_core.models.spec import LoadedModel, ModelSpec, ModelStatus
from dashboard.components import session_models

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
    return [CatalogEntry(spec, status_of(spec)) for spec in specs]


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
