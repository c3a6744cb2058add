"""Plugin discovery: the operator's model plugins, imported once each, failures remembered.

Plugins come from the environment variable ``ATTRIBUTION_MODELS`` (comma-separated importable
module names or ``.py`` paths) and from the entry-point group ``attribution_core.models``. A
plugin that fails to import is remembered with its error and listed as not ready; nothing else
breaks. This module sits below the registry (which calls :func:`load_plugins` on first use) and
imports nothing of it: a plugin's own ``register_model`` call (models/plugins.py) reaches the
registry, and :func:`current_plugin` tells it which plugin is importing.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGIN_VARIABLE",
    "PluginFailure",
    "current_plugin",
    "forget_plugin",
    "load_plugins",
    "plugin_failures",
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


def current_plugin() -> str | None:
    """The plugin whose import is running in this thread, or None."""
    return getattr(_CURRENT_SOURCE, "value", None)


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
