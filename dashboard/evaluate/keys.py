"""Every session-state and widget key of the Evaluate page, in one place.

The values are what the browser and AppTest tests address (``at.slider(key="eval_ig_steps")``);
change one only together with them. Keys built from a name are functions here.
"""

from __future__ import annotations

from typing import Final

# Session state: finished runs, the run on screen, the run in progress, memos, checks, jobs.
RESULTS: Final = "eval_results"
CURRENT: Final = "eval_current"
PARTIAL: Final = "eval_partial"
PENDING: Final = "eval_pending"
STOP_AFTER_CASES: Final = "eval_stop_after_cases"  # a test / demo hook: stop after this many
CASE_MEMO: Final = "eval_case_memo"
SANITY: Final = "eval_sanity"
VALIDITY_ROWS: Final = "eval_validity_rows"
RAY_JOB: Final = "eval_ray_job"

# Inputs.
MODALITY: Final = "eval_modality"
SOURCE: Final = "eval_source"
SOURCE_OWN: Final = "eval_source_own"
N_CASES: Final = "eval_n_cases"
N_OWN_CASES: Final = "eval_n_own_cases"
METHODS: Final = "eval_methods"
IG_STEPS: Final = "eval_ig_steps"
IG2_STEPS: Final = "eval_ig2_steps"
IG2_REFS: Final = "eval_ig2_refs"
SG_SAMPLES: Final = "eval_sg_samples"
CURVE_POINTS: Final = "eval_curve_points"
SEED: Final = "eval_seed"

# The run, its results, the sanity checks, the validity benchmarks and Ray jobs.
RUN: Final = "eval_run"
STOP: Final = "eval_stop"
CONTINUE: Final = "eval_continue"
SUMMARY: Final = "eval_summary"
MEAN_CURVES: Final = "eval_mean_curves"
AUC: Final = "eval_auc"
COMPLETENESS: Final = "eval_completeness"
AGREEMENT: Final = "eval_agreement"
DISAGREEMENT: Final = "eval_disagreement"
CASE: Final = "eval_case"
CASE_CURVES: Final = "eval_case_curves"
DL_HTML: Final = "eval_dl_html"
DL_JSON: Final = "eval_dl_json"
SANITY_RUN: Final = "eval_sanity_run"
SANITY_CHART: Final = "eval_sanity_chart"
VALIDITY_DATASET: Final = "validity_dataset"
VALIDITY_RHO: Final = "validity_rho"
VALIDITY_CASES: Final = "validity_cases"
VALIDITY_METHODS: Final = "validity_methods"
VALIDITY_RUN: Final = "validity_run"
RAY_STOP: Final = "eval_ray_stop"
RAY_CONTINUE: Final = "eval_ray_continue"
RAY_REFRESH: Final = "eval_ray_refresh"


def model(modality: str) -> str:
    """The model picker of one modality."""
    return f"eval_model_{modality}"


def upload(modality: str) -> str:
    """The case upload box of one modality."""
    return f"eval_upload_{modality}"


def baseline(model_name: str) -> str:
    return f"eval_baseline_{model_name}"


def removal(model_name: str) -> str:
    return f"eval_removal_{model_name}"


def method_map(method: str) -> str:
    return f"eval_map_{method}"


def bars(method: str) -> str:
    return f"eval_bars_{method}"
