"""Evaluate explanations over many cases: faithfulness, agreement with expectations, reports."""

from attribution_core.evaluation.types import (
    ALL_METHODS,
    KNOWN_METHODS,
    METHOD_IG2_BEST_PATH,
    OPTIONAL_METHODS,
    CaseOutcome,
    EvalCase,
    EvaluationInputError,
    EvaluationResult,
    EvaluationSettings,
    ImageItem,
    MethodOutcome,
    MethodSummary,
    RowItem,
    TextItem,
)

__all__ = [
    "ALL_METHODS",
    "KNOWN_METHODS",
    "METHOD_IG2_BEST_PATH",
    "OPTIONAL_METHODS",
    "CaseOutcome",
    "EvalCase",
    "EvaluationInputError",
    "EvaluationResult",
    "EvaluationSettings",
    "ImageItem",
    "MethodOutcome",
    "MethodSummary",
    "RowItem",
    "TextItem",
]
