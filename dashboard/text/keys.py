"""Every session-state and widget key of the text page, in one place.

The values are what the browser and AppTest tests address (``at.text_area(key="txt_text")``);
change one only together with them. Keys built from a name are functions here. (The own-model
box's keys, its source radio ``MODEL_SOURCE["text"]`` included, live in
``dashboard/widgets/keys.py``.)
"""

from __future__ import annotations

from typing import Final

# Session state: runs, the run on screen, the run the inputs ask for, memos, the held model.
RUNS: Final = "txt_runs"
CURRENT: Final = "txt_current"
PENDING: Final = "txt_pending"
MEMO: Final = "txt_memo"
HF_MODEL: Final = "txt_hf_model"  # one Hugging Face model per session: (source, loaded)
MODEL_FALLBACK: Final = "txt_model_fallback"

# Inputs.
HF_SOURCE: Final = "txt_hf_source"
HF_LOAD: Final = "txt_hf_load"
HF_LOADED: Final = "txt_hf_loaded"
INPUT_MODE: Final = "txt_input_mode"
TEXT: Final = "txt_text"
UPLOAD: Final = "txt_upload"
PROBABILITIES: Final = "txt_probabilities"
METHOD: Final = "txt_method"
BASELINE: Final = "txt_baseline"
AUTO_STEPS: Final = "txt_auto_steps"
TOLERANCE: Final = "txt_tolerance"
STEPS: Final = "txt_steps"
CURVE: Final = "txt_curve"
IG2_REFS: Final = "txt_ig2_refs"
IG2_CHOICE: Final = "txt_ig2_choice"
IG2_STEPS: Final = "txt_ig2_steps"
IG2_AUTO_ETA: Final = "txt_ig2_auto_eta"
IG2_ETA: Final = "txt_ig2_eta"
SEED: Final = "txt_seed"

# The run and its results.
EXPLAIN: Final = "txt_explain"
LEVEL: Final = "txt_level"
TOP_K: Final = "txt_top_k"
COMPLETENESS: Final = "txt_completeness"
CURVE_FIG: Final = "txt_curve_fig"
IG2_REFS_TABLE: Final = "txt_ig2_refs_table"
TRACE_FIG: Final = "txt_trace_fig"
DL_CSV: Final = "txt_dl_csv"
DL_JSON: Final = "txt_dl_json"


def zero_shot(model_name: str) -> str:
    """The zero-shot label set typed for one model."""
    return f"txt_zero_shot_{model_name}"


def labels(model_name: str) -> str:
    return f"txt_labels_{model_name}"


def labels_apply(model_name: str) -> str:
    return f"txt_labels_apply_{model_name}"


def labels_reset(model_name: str) -> str:
    return f"txt_labels_reset_{model_name}"


def sample(model_name: str) -> str:
    """The bundled-sample picker of one model."""
    return f"txt_sample_{model_name}"


def sample_view(model_name: str, index: int) -> str:
    return f"txt_sample_view_{model_name}_{index}"


def target(model_name: str, text_digest: str) -> str:
    """The class picker: one per model and text, so a new text starts at its prediction."""
    return f"txt_target_{model_name}_{text_digest}"


def gauge(method: str) -> str:
    return f"txt_gauge_{method}"


def ranked(method: str) -> str:
    return f"txt_ranked_{method}"


def ranked_fig(method: str) -> str:
    return f"txt_ranked_fig_{method}"
