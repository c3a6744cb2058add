"""Each page's run, priced before it starts: gradient evaluations from the page's settings and
seconds from the model's measured per-row cost (see attribution_core.cost). No Streamlit here.

The counts follow what each page's run does (IG's step count or its auto budget, the
convergence curve's smaller runs, IG2's path points x references, a tabular CSV's rows); a
model whose row cost cannot be measured still gets its count, without seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import torch

from attribution_core.cost import CostEstimate, evaluation_cost, explanation_cost, row_cost
from attribution_core.evaluation import EvalCase, EvaluationSettings
from attribution_core.models.spec import LoadedModel

IMAGE_REDUCE = "lower the steps, the IG2 path steps or references, or turn the curve off"
TEXT_REDUCE = IMAGE_REDUCE
TABULAR_REDUCE = ("lower the steps, the IG2 path steps or references, or explain fewer CSV "
                  "rows")
EVALUATE_REDUCE = "evaluate fewer cases or methods, or lower the steps and samples"


def _timed(estimate: CostEstimate, loaded: LoadedModel, example: torch.Tensor,
           forward_kwargs: Mapping[str, Any] | None = None, target: int | None = None
           ) -> CostEstimate:
    """The estimate with seconds; without them when the model cannot be timed on this input
    (the run itself will then say what is wrong)."""
    try:
        measured = row_cost(loaded.forward, example.to(loaded.device),
                            forward_kwargs=forward_kwargs, target=target)
    except Exception:  # pricing must never take the page down; the count stands alone
        return estimate
    return estimate.timed(measured)


def _target(loaded: LoadedModel, target: int) -> int | None:
    return target if loaded.spec.output_kind != "regression" else None


class ExplanationSettings(Protocol):
    """What pricing reads of a page's settings (the image, text and tabular settings)."""

    method: Any
    target: int
    n_steps: int | Literal["auto"]
    convergence_curve: bool
    ig2_steps: int
    n_references: int


def image_cost(loaded: LoadedModel, inputs: torch.Tensor, settings: ExplanationSettings,
               curve_divisors: Sequence[int]) -> CostEstimate:
    estimate = explanation_cost(
        settings.method, n_steps=settings.n_steps,
        convergence_divisors=curve_divisors if settings.convergence_curve else (),
        ig2_steps=settings.ig2_steps, n_references=settings.n_references,
        ig2_halving=True)
    return _timed(estimate, loaded, inputs, target=_target(loaded, settings.target))


def text_cost(loaded: LoadedModel, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
              settings: ExplanationSettings, curve_divisors: Sequence[int]) -> CostEstimate:
    estimate = explanation_cost(
        settings.method, n_steps=settings.n_steps,
        convergence_divisors=curve_divisors if settings.convergence_curve else (),
        distinct_ladder=False, ig2_steps=settings.ig2_steps,
        n_references=settings.n_references, ig2_halving=True)
    return _timed(estimate, loaded, inputs_embeds,
                  {"attention_mask": attention_mask.to(loaded.device)},
                  target=_target(loaded, settings.target))


def tabular_cost(loaded: LoadedModel, row: torch.Tensor, settings: ExplanationSettings,
                 curve_divisors: Sequence[int], csv_rows: int = 0) -> CostEstimate:
    """One row's run, plus IG over every CSV row when a CSV of more than one row is loaded."""
    estimate = explanation_cost(
        settings.method, n_steps=settings.n_steps,
        convergence_divisors=curve_divisors if settings.convergence_curve else (),
        distinct_ladder=False, ig2_steps=settings.ig2_steps,
        n_references=settings.n_references, ig2_halving=True)
    if csv_rows > 1:
        estimate = estimate + explanation_cost("IG", n_steps=settings.n_steps,
                                               explicands=csv_rows)
    return _timed(estimate, loaded, row, target=_target(loaded, settings.target))


def evaluate_cost(loaded: LoadedModel, cases: Sequence[EvalCase],
                  settings: EvaluationSettings) -> CostEstimate:
    estimate = evaluation_cost(settings, len(cases))
    if not cases:
        return estimate
    first = cases[0]
    return _timed(estimate, loaded, first.inputs, dict(first.forward_kwargs),
                  target=_target(loaded, first.target))
