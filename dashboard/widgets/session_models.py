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

from attribution_core.models.spec import LoadedModel, ModelSpec

SPECS_KEY = "session_model_specs"
LOADED_KEY = "session_loaded_models"
# A session keeps at most this many of its own models in memory (least recently used leave).
MAX_LOADED_PER_SESSION = 2


def specs() -> dict[str, ModelSpec]:
    """This session's own model specs, by name."""
    store: dict[str, ModelSpec] = st.session_state.setdefault(SPECS_KEY, {})
    return store


def define(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) one of this session's models; a replaced one's loaded copy is dropped."""
    specs()[spec.name] = spec
    _loaded().pop(spec.name, None)
    return spec


def get(name: str) -> ModelSpec | None:
    return specs().get(name)


def listed(modality: str | None = None) -> list[ModelSpec]:
    return [spec for spec in specs().values() if modality is None or spec.modality == modality]


def _loaded() -> OrderedDict[str, tuple[str, LoadedModel]]:
    store: OrderedDict[str, tuple[str, LoadedModel]] = st.session_state.setdefault(
        LOADED_KEY, OrderedDict())
    return store


def load(spec: ModelSpec, device: torch.device) -> LoadedModel:
    """``spec``'s model on ``device``, loaded once per session (its own cache, not shared)."""
    store = _loaded()
    held = store.get(spec.name)
    if held is not None and held[0] == str(device) and held[1].spec is spec:
        store.move_to_end(spec.name)
        return held[1]
    loaded = spec.loader(device)
    store[spec.name] = (str(device), loaded)
    while len(store) > MAX_LOADED_PER_SESSION:
        store.popitem(last=False)
    return loaded

