"""Every session-state and widget key of the tabular page, in one place.

The values are what the browser and AppTest tests address (``at.slider(key="tab_steps")``);
change one only together with them. Keys built from a name are functions here. (The own-model
box's keys live in ``dashboard/widgets/keys.py``.)
"""

from __future__ import annotations

from typing import Final

# Session state: runs, the run on screen, the run the inputs ask for, the CSV batch, memos.
RUNS: Final = "tab_runs"
CURRENT: Final = "tab_current"
PENDING: Final = "tab_pending"
BATCH: Final = "tab_batch"
MEMO: Final = "tab_memo"
MODEL_FALLBACK: Final = "tab_model_fallback"

# Inputs.
INPUT_MODE: Final = "tab_input_mode"
CSV: Final = "tab_csv"
CSV_ROW: Final = "tab_csv_row"
PROBABILITIES: Final = "tab_probabilities"
METHOD: Final = "tab_method"
REFERENCE_ROW: Final = "tab_reference_row"
AUTO_STEPS: Final = "tab_auto_steps"
TOLERANCE: Final = "tab_tolerance"
STEPS: Final = "tab_steps"
CURVE: Final = "tab_curve"
IG2_REFS: Final = "tab_ig2_refs"
IG2_CHOICE: Final = "tab_ig2_choice"
IG2_STEPS: Final = "tab_ig2_steps"
IG2_AUTO_ETA: Final = "tab_ig2_auto_eta"
IG2_ETA: Final = "tab_ig2_eta"
SEED: Final = "tab_seed"

# The run and its results.
EXPLAIN: Final = "tab_explain"
TOP_K: Final = "tab_top_k"
COMPLETENESS: Final = "tab_completeness"
CURVE_FIG: Final = "tab_curve_fig"
TRACE_FIG: Final = "tab_trace_fig"
BATCH_TABLE: Final = "tab_batch_table"
DL_BATCH: Final = "tab_dl_batch"
DL_CSV: Final = "tab_dl_csv"
DL_JSON: Final = "tab_dl_json"


def table(model_name: str) -> str:
    """The row table of one model's bundled rows."""
    return f"tab_table_{model_name}"


def row(model_name: str) -> str:
    return f"tab_row_{model_name}"


def typed(model_name: str) -> str:
    """The typed row of one model."""
    return f"tab_typed_{model_name}"


def editor(model_name: str, index: int) -> str:
    return f"tab_editor_{model_name}_{index}"


def cat_editor(model_name: str, index: int) -> str:
    """One categorical column's picker in the row editor."""
    return f"tab_cat_editor_{model_name}_{index}"


def target(model_name: str, row_digest: str) -> str:
    """The class picker: one per model and row, so a new row starts at its prediction."""
    return f"tab_target_{model_name}_{row_digest}"


def baseline(model_name: str) -> str:
    """The baseline picker (each model offers its own baselines)."""
    return f"tab_baseline_{model_name}"


def typed_baseline(model_name: str) -> str:
    return f"tab_typed_baseline_{model_name}"


def bars(method: str) -> str:
    return f"tab_bars_{method}"


def waterfall(method: str) -> str:
    return f"tab_waterfall_{method}"


def ranked(method: str) -> str:
    return f"tab_ranked_{method}"


def gauge(method: str) -> str:
    return f"tab_gauge_{method}"
