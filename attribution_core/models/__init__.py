"""Model registry, built-in models and loaders for the user's own models."""

from attribution_core.models.plugins import register_model
from attribution_core.models.registry import (
    clear_model_cache,
    get_spec,
    list_specs,
    load_model,
    plugin_failures,
    register_spec,
    unregister_spec,
)
from attribution_core.models.spec import (
    LoadedModel,
    ModelLoadError,
    ModelSpec,
    ModelStatus,
    ReferencePool,
    Sample,
)

__all__ = [
    "LoadedModel",
    "ModelLoadError",
    "ModelSpec",
    "ModelStatus",
    "ReferencePool",
    "Sample",
    "clear_model_cache",
    "get_spec",
    "list_specs",
    "load_model",
    "plugin_failures",
    "register_model",
    "register_spec",
    "unregister_spec",
]
