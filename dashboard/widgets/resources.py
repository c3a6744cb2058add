"""Process-wide resources shared by every session: the device, the result cache, loaded models.

Built-in models and the cache are created once per process with ``st.cache_resource``, keyed by
plain strings (a model's name and the device), never by tensors: Streamlit's hasher never sees
weights. Everything a session changes or defines lives in ``st.session_state`` instead, its own
models included (:mod:`dashboard.widgets.session_models`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import streamlit as st
import torch

from attribution_core import ResultCache, describe_device, pick_device
from attribution_core.models.spec import LoadedModel, ModelSpec
from dashboard.widgets import catalog, session_models

LOG = logging.getLogger("dashboard.models")
ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR_VARIABLE = "IG_DASHBOARD_CACHE_DIR"
DEVICE_VARIABLE = "IG_DASHBOARD_DEVICE"


@st.cache_resource(show_spinner=False)
def active_device_name() -> str:
    """The device all sessions compute on: ``IG_DASHBOARD_DEVICE`` or the best available."""
    return str(pick_device(os.environ.get(DEVICE_VARIABLE) or None))


def active_device() -> torch.device:
    return torch.device(active_device_name())


def device_label() -> str:
    return describe_device(active_device())


def default_cache_dir() -> Path:
    """In a checkout: .attribution_cache/dashboard beside the code; installed (site-packages
    is no place to write): the user's cache folder."""
    if (ROOT / "pyproject.toml").is_file():
        return ROOT / ".attribution_cache" / "dashboard"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ig-dashboard"


@st.cache_resource(show_spinner=False)
def shared_result_cache() -> ResultCache:
    """One result cache for all sessions; on disk under .attribution_cache unless set to ""."""
    configured = os.environ.get(CACHE_DIR_VARIABLE)
    if configured == "":
        return ResultCache(memory_items=64)
    directory = Path(configured) if configured else default_cache_dir()
    return ResultCache(memory_items=64, disk_dir=directory, disk_bytes=256 * 1024**2)


@st.cache_resource(show_spinner=False, max_entries=8)
def _load_model(name: str, device_name: str) -> LoadedModel:
    return catalog.load(name, torch.device(device_name))


def loaded_model(name: str) -> LoadedModel:
    """The model ``name`` on the active device: this session's own model from its session,
    a built-in one loaded once per process."""
    own = session_models.get(name)
    if own is not None:
        return session_models.load(own, active_device())
    return _load_model(name, active_device_name())


def load_ready_model(name: str, resolve: Callable[[ModelSpec], str] | None = None
                     ) -> LoadedModel | None:
    """Load a registered model for a page, or say on the page why not (a broken model must not
    take the page down). ``resolve`` may swap in a derived model's name once the spec is known
    to be ready (e.g. a zero-shot model with the user's labels)."""
    try:
        spec = catalog.get_spec(name)
        status = catalog.status_of(spec)
        if not status.ready:  # the reason (paths, set-up hints) is in the server log
            st.error(f"{spec.title} is {catalog.public_status(status)}.")
            return None
        if resolve is not None:
            name = resolve(spec)
        with st.spinner(f"Loading {spec.title}…"):
            return loaded_model(name)
    except Exception as error:
        st.error(f"Could not load the model {name!r}: {error}")
        return None
