"""Every session-state and widget key of the image page, in one place.

The values are what the browser and AppTest tests address (``at.slider(key="img_steps")``);
change one only together with them. Keys built from a name are functions here, so two
modules can never spell one key two ways. (The own-model box's keys live in
``dashboard/widgets/keys.py``.)
"""

from __future__ import annotations

from typing import Final

# Session state: runs, the run on screen, the run the inputs ask for, memos.
RUNS: Final = "img_runs"
CURRENT: Final = "img_current"
PENDING: Final = "img_pending"
MEMO: Final = "img_memo"
LAST_GOOD: Final = "img_last_good"
BASELINE_CHECKS: Final = "img_baseline_checks"

# Inputs.
SOURCE: Final = "img_source"
UPLOAD: Final = "img_upload"
METHOD: Final = "img_method"
BASELINE: Final = "img_baseline"
BASELINE_UPLOAD: Final = "img_baseline_upload"
AUTO_STEPS: Final = "img_auto_steps"
TOLERANCE: Final = "img_tolerance"
STEPS: Final = "img_steps"
QUADRATURE: Final = "img_quadrature"
CURVE: Final = "img_curve"
SEED: Final = "img_seed"
IG2_REFS: Final = "img_ig2_refs"
IG2_CHOICE: Final = "img_ig2_choice"
IG2_STEPS: Final = "img_ig2_steps"
IG2_ETA: Final = "img_ig2_eta"
IG2_LAYER: Final = "img_ig2_layer"

# The run and its results.
EXPLAIN: Final = "img_explain"
VIEW: Final = "img_view"
CMAP: Final = "img_cmap"
CLIP: Final = "img_clip"
OPACITY: Final = "img_opacity"
TOPK: Final = "img_topk"
CURVE_FIG: Final = "img_curve_fig"
TRACE_FIG: Final = "img_trace_fig"
REACH_TABLE: Final = "img_reach_table"
IG2_BAND_FIG: Final = "img_ig2_band_fig"
DL_JSON: Final = "img_dl_json"


def sample(model_name: str) -> str:
    """The bundled-sample picker of one model."""
    return f"img_sample_{model_name}"


def target(model_name: str, input_digest: str) -> str:
    """The class picker: one per model and input, so a new input starts at its prediction."""
    return f"img_target_{model_name}_{input_digest}"


def input_name(run_key: str) -> str:
    """The name of the input a stored run explained (for its record)."""
    return f"img_name_{run_key}"


def heatmap(method: str) -> str:
    return f"img_heatmap_{method}"


def overlay(method: str) -> str:
    return f"img_overlay_{method}"


def gauge(method: str) -> str:
    return f"img_gauge_{method}"


def regions(method: str) -> str:
    return f"img_regions_{method}"


def dl_png(method: str) -> str:
    return f"img_dl_png_{method}"


def dl_npy(method: str) -> str:
    return f"img_dl_npy_{method}"


def dl_csv(method: str) -> str:
    return f"img_dl_csv_{method}"
