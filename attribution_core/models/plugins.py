"""Bring your own model from Python: ``register_model`` and plugin discovery.

``register_model(name, module, modality, ...)`` turns a plain ``nn.Module`` into a full
:class:`ModelSpec` (preprocess and postprocess, baselines, IG2 references from
``reference_data``) and adds it to the process-wide registry. Plugins are the operator's, like
the built-in models: they come from the environment variable ``ATTRIBUTION_MODELS``
(comma-separated importable module names or ``.py`` paths) and from the entry-point group
``attribution_core.models``, imported the first time the registry is used (so when the dashboard
and the command line start). A plugin that fails to import is remembered with its error and
listed as not ready; nothing else breaks.

Models a dashboard *user* uploads are built with :func:`build_spec` too, but never registered
here: they stay in that user's session (dashboard/widgets/session_models.py).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import sys
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from attribution_core.models.plugin_specs import build_spec
from attribution_core.models.spec import Modality, ModelSpec, OutputKind

__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGIN_VARIABLE",
    "PluginFailure",
    "build_spec",
    "load_plugins",
    "plugin_failures",
    "register_model",
]

LOG = logging.getLogger("attribution_core.plugins")
PLUGIN_VARIABLE = "ATTRIBUTION_MODELS"
ENTRY_POINT_GROUP = "attribution_core.models"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be imported: where it came from and why (one line)."""

    source: str
    message: str


_LOCK = threading.RLock()
_IMPORTED: dict[str, PluginFailure | None] = {}  # source -> its failure, None when it worked
_ENTRY_POINTS_READ = False
_CURRENT_SOURCE = threading.local()  # which plugin is importing (recorded in its specs)


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
    from attribution_core.models.registry import get_spec, register_spec
    from attribution_core.models.spec import ModelLoadError

    plugin = getattr(_CURRENT_SOURCE, "value", None)
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


def _sources(value: str | None) -> list[str]:
    text = os.environ.get(PLUGIN_VARIABLE, "") if value is None else value
    return [part.strip() for part in text.split(",") if part.strip()]


def _import_source(source: str) -> None:
    """Import one plugin: a ``.py`` path (run as its own module) or an importable name."""
    if source.endswith(".py") or os.sep in source:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such plugin file: {path}")
        tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        module_name = f"attribution_plugin_{path.stem}_{tag}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path} as Python")
        plugin = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = plugin
        try:
            spec.loader.exec_module(plugin)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
    else:
        importlib.import_module(source)


def _run_plugin(source: str, action: Any) -> PluginFailure | None:
    _CURRENT_SOURCE.value = source
    try:
        action()
    except (Exception, SystemExit) as error:  # a broken plugin must not break anything else
        message = f"{type(error).__name__}: {error}".strip()
        LOG.warning("Model plugin %s failed to import: %s\n%s", source, message,
                    traceback.format_exc())
        return PluginFailure(source, message)
    finally:
        _CURRENT_SOURCE.value = None
    return None


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    try:
        return list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception as error:  # broken package metadata: reported like a broken plugin
        LOG.warning("Reading the %s entry points failed: %s", ENTRY_POINT_GROUP, error)
        return []


def _load_entry_point(entry: Any) -> None:
    loaded = entry.load()
    if callable(loaded) and not isinstance(loaded, type):
        loaded()  # an entry point may name a function that calls register_model


def load_plugins(value: str | None = None) -> tuple[PluginFailure, ...]:
    """Import every plugin not imported yet (``value``: instead of ``ATTRIBUTION_MODELS``) and
    the entry points (once); return every failure so far. Cheap when nothing is new."""
    global _ENTRY_POINTS_READ
    with _LOCK:
        for source in _sources(value):
            if source not in _IMPORTED:
                _IMPORTED[source] = None  # in progress: its own register_model call re-enters
                _IMPORTED[source] = _run_plugin(source, lambda s=source: _import_source(s))
        if not _ENTRY_POINTS_READ:
            _ENTRY_POINTS_READ = True
            for entry in _entry_points():
                label = f"entry point {entry.name} ({entry.value})"
                if label not in _IMPORTED:
                    _IMPORTED[label] = None
                    _IMPORTED[label] = _run_plugin(label, lambda e=entry: _load_entry_point(e))
        return plugin_failures()


def plugin_failures() -> tuple[PluginFailure, ...]:
    with _LOCK:
        return tuple(failure for failure in _IMPORTED.values() if failure is not None)


def forget_plugin(source: str) -> None:
    """Let ``source`` be imported again on the next use (tests; an operator's reload)."""
    with _LOCK:
        _IMPORTED.pop(source, None)
