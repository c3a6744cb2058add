"""Every session-state and widget key of the shared widgets, in one place.

The values are what the browser and AppTest tests address; change one only together with
them. The pages' own keys live in each page package's ``keys.py``; the shared widgets import
no page, so keys a widget and a page both read (the own-model source radios) live here, and
so do the own-model boxes' keys.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

# Each page's "Model source" radio (built-in or "Your model"), read by the sidebar.
MODEL_SOURCE: Final = MappingProxyType({"image": "img_model_source",
                                        "tabular": "tab_model_source",
                                        "text": "txt_model_source"})

# The own-model boxes (widgets/own_models.py, own_tabular.py, own_text.py).
OWN_IMAGE_MODEL: Final = "img_own_model_name"  # the name of the image model loaded last
OWN_IMAGE_KIND: Final = "img_own_kind"
OWN_IMAGE_ARCHITECTURE: Final = "img_own_architecture"
OWN_IMAGE_WEIGHTS: Final = "img_own_weights"
OWN_IMAGE_CLASSES: Final = "img_own_classes"
OWN_IMAGE_LOAD: Final = "img_own_load"
OWN_IMAGE_HF_SOURCE: Final = "img_own_hf_source"
OWN_IMAGE_HF_LOAD: Final = "img_own_hf_load"
OWN_IMAGE_ONNX: Final = "img_own_onnx"
OWN_IMAGE_ONNX_NORM: Final = "img_own_onnx_norm"
OWN_IMAGE_ONNX_CLASSES: Final = "img_own_onnx_classes"
OWN_IMAGE_ONNX_LOAD: Final = "img_own_onnx_load"
OWN_TABULAR_MODEL: Final = "tab_own_model_name"
OWN_TABULAR_KIND: Final = "tab_own_kind"
OWN_TABULAR_CONFIG: Final = "tab_own_config"
OWN_TABULAR_CSV: Final = "tab_own_csv"
OWN_TABULAR_LOAD: Final = "tab_own_load"
OWN_TEXT_MODEL: Final = "txt_own_model_name"
OWN_TEXT_NOTES: Final = "txt_own_notes"  # what loading the text model noticed, shown under it
OWN_TEXT_ZIP: Final = "txt_own_zip"
OWN_TEXT_REFS: Final = "txt_own_refs"
OWN_TEXT_LOAD: Final = "txt_own_load"

# This session's own models (widgets/session_models.py).
SESSION_MODEL_SPECS: Final = "session_model_specs"
SESSION_LOADED_MODELS: Final = "session_loaded_models"
SESSION_MODELS_EVICTED: Final = "session_models_evicted"

# The progressive preview (widgets/progressive.py).
PREVIEW_FIRST: Final = "preview_first"
PREVIEW_CHART: Final = "preview_chart"
PREVIEW_CHART_IG2: Final = "preview_chart_ig2"

ACCESS_LOGIN: Final = "access_login"
ACCESS_LOGOUT: Final = "access_logout"
CHART_RENDERER_WARM_UP: Final = "chart_renderer_warm_up"


def selected_model(modality: str) -> str:
    """The model chosen for ``modality`` (written by the sidebar, read by the pages)."""
    return f"selected_model_{modality}"


def sidebar_model(modality: str) -> str:
    """The sidebar's model picker of one modality."""
    return f"sidebar_model_{modality}"


def queue_cancel(label: str) -> str:
    """The Cancel button of a run waiting in the device queue."""
    return f"queue_cancel_{label}"


def cancel_running(runs_key: str) -> str:
    """The Cancel button of a page's running Explain."""
    return f"{runs_key}_cancel_running"


def own_tabular_file(onnx: bool) -> str:
    """The tabular model file box: one per format, so switching format drops the other's file."""
    return f"tab_own_file_{onnx}"
