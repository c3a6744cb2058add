"""Models a user defines live in that user's session, never in the process-wide registry.

Every browser session is a thread of one shared process: anything module-global is shared with
strangers. So a label set a user types (a zero-shot model) or a Hugging Face classifier a user
loads is kept in ``st.session_state``: it shows up in that session's model lists only, and goes
away with the session. Only built-in models and content-addressed results are process-wide.
"""

from __future__ import annotations

from collections import OrderedDict

import streamlit as st
import torch

from attribution_core.cost import RowCost, remember_row_cost
from attribution_core.limits import MAX_OWN_MODELS_PER_SESSION
from attribution_core.models.spec import LoadedModel, ModelSpec
from dashboard.widgets import keys

# A session keeps at most this many of its own models in memory (least recently used leave).
MAX_LOADED_PER_SESSION = 2
# Specs of uploaded and Hugging Face models hold their weights (the module is built when the
# files are read), so they are bounded too: beyond this many the least recently used leaves.
WEIGHTED_SOURCES = ("upload", "huggingface")


def specs() -> dict[str, ModelSpec]:
    """This session's own model specs, by name."""
    store: dict[str, ModelSpec] = st.session_state.setdefault(keys.SESSION_MODEL_SPECS, {})
    return store


def define(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) one of this session's models; a replaced one's loaded copy is dropped,
    and beyond :data:`~attribution_core.limits.MAX_OWN_MODELS_PER_SESSION` models with weights
    the least recently used ones leave (their titles: :func:`evicted`)."""
    store = specs()
    store.pop(spec.name, None)
    store[spec.name] = spec  # last: the most recently used
    _loaded().pop(spec.name, None)
    weighted = [name for name, held in store.items() if held.source in WEIGHTED_SOURCES]
    gone = weighted[:max(0, len(weighted) - MAX_OWN_MODELS_PER_SESSION)]
    for name in gone:
        _loaded().pop(name, None)
    st.session_state[keys.SESSION_MODELS_EVICTED] = tuple(store.pop(name).title for name in gone)
    return spec


def evicted() -> tuple[str, ...]:
    """Titles of the models the last :func:`define` let go."""
    return tuple(st.session_state.get(keys.SESSION_MODELS_EVICTED, ()))


def held_modules() -> int:
    """How many distinct model objects this session's own specs and loaded copies hold (the
    specs of uploads keep the module they were built from)."""
    found: set[int] = set()
    for spec in specs().values():
        for cell in getattr(spec.loader, "__closure__", None) or ():
            contents = cell.cell_contents
            if isinstance(contents, torch.nn.Module):
                found.add(id(contents))
    for _device, loaded in _loaded().values():
        found.add(id(loaded.module))
    return len(found)


def get(name: str) -> ModelSpec | None:
    return specs().get(name)


def listed(modality: str | None = None) -> list[ModelSpec]:
    return [spec for spec in specs().values() if modality is None or spec.modality == modality]


def _loaded() -> OrderedDict[str, tuple[str, LoadedModel]]:
    store: OrderedDict[str, tuple[str, LoadedModel]] = st.session_state.setdefault(
        keys.SESSION_LOADED_MODELS, OrderedDict())
    return store


def load(spec: ModelSpec, device: torch.device) -> LoadedModel:
    """``spec``'s model on ``device``, loaded once per session (its own cache, not shared)."""
    store = _loaded()
    held = store.get(spec.name)
    if held is not None and held[0] == str(device) and held[1].spec is spec:
        store.move_to_end(spec.name)
        return held[1]
    loaded = spec.loader(device)
    _seed_price(spec, loaded, device)
    store[spec.name] = (str(device), loaded)
    own = specs()
    if spec.name in own:  # used now: the last to be let go
        own[spec.name] = own.pop(spec.name)
    while len(store) > MAX_LOADED_PER_SESSION:
        store.popitem(last=False)
    return loaded



def _seed_price(spec: ModelSpec, loaded: LoadedModel, device: torch.device) -> None:
    """An uploaded graph's row cost was measured in its trial (a child process with a time
    budget, attribution_core.models.onnx_trial) with this server's CPU threads: remember it, so
    pricing a run never times an unknown model under the device lock. On a GPU it is timed as
    usual (the trial ran on the CPU)."""
    measured, shape = spec.metadata.get("row_cost"), spec.metadata.get("row_cost_input")
    if device.type != "cpu" or not measured or not shape:
        return
    example = torch.zeros(1, *(int(v) for v in shape))
    remember_row_cost(loaded.forward, example, RowCost(**measured))
