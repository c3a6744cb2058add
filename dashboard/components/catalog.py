"""The dashboard's view of the model registry, plus temporary specs (benchmarks, tests).

The registry belongs to attribution_core.models; this module only adapts it, so the dashboard
keeps working (with an explanatory empty list) while the registry is missing or broken.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from types import ModuleType

import torch

from attribution_core.models.spec import LoadedModel, ModelSpec, ModelStatus

_TEMPORARY: dict[str, ModelSpec] = {}


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
    return [CatalogEntry(spec, status_of(spec)) for spec in specs]


def status_of(spec: ModelSpec) -> ModelStatus:
    try:
        return spec.status()
    except Exception as error:  # a status check must never take the page down
        return ModelStatus(False, f"status check failed: {error}")


def get_spec(name: str) -> ModelSpec:
    if name in _TEMPORARY:
        return _TEMPORARY[name]
    registry = _registry()
    if registry is None:
        raise KeyError(f"Unknown model {name!r}: the model registry is not available.")
    return registry.get_spec(name)


def load(name: str, device: torch.device) -> LoadedModel:
    """Load a model (temporary specs through their own loader)."""
    if name in _TEMPORARY:
        return _TEMPORARY[name].loader(device)
    registry = _registry()
    if registry is None:
        raise KeyError(f"Unknown model {name!r}: the model registry is not available.")
    return registry.load_model(name, device=device)
