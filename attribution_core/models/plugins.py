"""Bring your own model from Python: ``register_model``.

``register_model(name, module, modality, ...)`` turns a plain ``nn.Module`` into a full
:class:`ModelSpec` (preprocess and postprocess, baselines, IG2 references from
``reference_data``) and adds it to the process-wide registry. Plugins are the operator's, like
the built-in models; how they are found and imported is ``models/plugin_discovery.py``, which
sits below the registry (the registry imports the plugins the first time it is used, so when
the dashboard and the command line start).

Models a dashboard *user* uploads are built with :func:`build_spec` too, but never registered
here: they stay in that user's session (dashboard/widgets/session_models.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from attribution_core.models.plugin_discovery import current_plugin
from attribution_core.models.plugin_specs import build_spec
from attribution_core.models.registry import get_spec, register_spec
from attribution_core.models.spec import Modality, ModelLoadError, ModelSpec, OutputKind

__all__ = ["register_model"]


def register_model(name: str, module: nn.Module, modality: Modality, *,
                   class_names: Sequence[str] | None = None,
                   output_kind: OutputKind = "classification", title: str | None = None,
                   description: str = "", feature_names: Sequence[str] | None = None,
                   feature_units: Sequence[str] | None = None, reference_data: Any = None,
                   input_size: int | tuple[int, int] | None = None,
                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   tokenizer: Any = None, embedding_module: str | nn.Module | None = None,
                   representation_module: str | None = None) -> ModelSpec:
    """Register ``module`` as the model ``name`` for every client (pages, CLI, ``load_model``).

    See the README's "Your own model" section for what each argument means per modality. A
    plugin may register the same name again (its module re-imported); a built-in model's name
    is refused.
    """
    plugin = current_plugin()
    spec = build_spec(
        name, module, modality, class_names=class_names, output_kind=output_kind, title=title,
        description=description, feature_names=feature_names, feature_units=feature_units,
        reference_data=reference_data, input_size=input_size, mean=mean, std=std,
        tokenizer=tokenizer, embedding_module=embedding_module,
        representation_module=representation_module, source="plugin",
        metadata={"plugin": plugin or "register_model"})
    try:
        existing: ModelSpec | None = get_spec(name)
    except ModelLoadError:
        existing = None
    if existing is not None and existing.source != "plugin":
        raise ModelLoadError(f"{name!r} is the name of a {existing.source} model; "
                             "choose another name for your model.")
    return register_spec(spec, replace=existing is not None)
