"""What a run will cost before it starts: gradient evaluations from its settings, seconds from
the model's measured per-row cost.

A *gradient evaluation* is one row of forward + backward (the unit the engine batches); a
*forward row* is one row of a forward pass without gradients (deletion / insertion curves,
reference selection). Counts are upper bounds where the method decides at run time (IG with
``n_steps="auto"`` may stop early; its evaluation budget is the bound). Seconds come from one
timed forward + backward of a small batch, measured once per model and input signature and
remembered, so showing an estimate costs nothing after the first time.

A shared server refuses a click above its budget (:func:`evaluation_budget`, set with
``IG_DASHBOARD_MAX_EVALUATIONS``) so that one click cannot hold a device for hours.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from attribution_core.engine import as_output_tensor, device_lock
from attribution_core.evaluation.types import (
    METHOD_GRAD_X_INPUT,
    METHOD_GRADIENT_SHAP,
    METHOD_IG,
    METHOD_IG2,
    METHOD_SALIENCY,
    METHOD_SMOOTHGRAD,
    EvaluationSettings,
)

BUDGET_VARIABLE = "IG_DASHBOARD_MAX_EVALUATIONS"
# The default allows the image page's largest run (IG with 1,024 steps and its curve plus IG2
# with 16 references x 257 path points: about 6,000) and the Evaluate page's default of 50
# cases x 6 methods (about 22,000), and refuses Evaluate's maximum (500 cases: about 220,000).
DEFAULT_BUDGET = 50_000
IG_AUTO_MAX_EVALUATIONS = 1024  # integrated_gradients' own default budget for n_steps="auto"
MEASURE_ROWS = 8
# A forward row is cheaper than a gradient row; until measured, count it as a third of one.
FORWARD_SHARE_GUESS = 1.0 / 3.0

# Rows a run evaluates besides its path points: f(x) and f(baseline) per explicand (folded into
# the gradient call for small rows) and one row per call that measures memory to plan chunks.
IG_EXTRA_ROWS_PER_EXPLICAND = 2
PROBE_ROWS_PER_CALL = 1

Ig2Rule = Literal["trapezoid", "middle", "left"]


@dataclass(frozen=True)
class RowCost:
    """Measured seconds per row on one model, device and input signature."""

    gradient_seconds: float
    forward_seconds: float


@dataclass(frozen=True)
class CostEstimate:
    """Rows a run will evaluate (upper bounds) and, once the row cost is known, its seconds."""

    evaluations: int
    forward_rows: int = 0
    parts: tuple[tuple[str, int], ...] = ()
    seconds: float | None = None

    def __add__(self, other: CostEstimate) -> CostEstimate:
        seconds = None if self.seconds is None or other.seconds is None else \
            self.seconds + other.seconds
        return CostEstimate(self.evaluations + other.evaluations,
                            self.forward_rows + other.forward_rows,
                            self.parts + other.parts, seconds)

    def timed(self, row_cost: RowCost | None) -> CostEstimate:
        """The same counts with seconds from a measured row cost (None leaves them unknown)."""
        if row_cost is None:
            return self
        seconds = (self.evaluations * row_cost.gradient_seconds
                   + self.forward_rows * row_cost.forward_seconds)
        return CostEstimate(self.evaluations, self.forward_rows, self.parts, seconds)

    def describe(self) -> str:
        """``about 1,234 gradient evaluations, about 3 s`` (what the pages show before a run)."""
        text = f"about {self.evaluations:,} gradient evaluations"
        if self.forward_rows:
            text += f" (+ {self.forward_rows:,} forward-only rows)"
        if self.seconds is not None:
            text += f", about {format_seconds(self.seconds)}"
        return text

    def over_budget(self, budget: int) -> bool:
        return self.evaluations > budget


def format_seconds(seconds: float) -> str:
    if seconds < 1.0:
        return "under 1 s"
    if seconds < 120.0:
        return f"{seconds:.0f} s"
    return f"{seconds / 60.0:.0f} min"


def evaluation_budget() -> int:
    """The per-click budget: ``IG_DASHBOARD_MAX_EVALUATIONS`` if a positive integer, else the
    default (read on every call, so a test or an operator can change it without a restart)."""
    raw = os.environ.get(BUDGET_VARIABLE, "").strip().replace("_", "")
    try:
        value = int(raw)
    except ValueError:
        return DEFAULT_BUDGET
    return value if value > 0 else DEFAULT_BUDGET


def budget_message(estimate: CostEstimate, budget: int, what_to_reduce: str) -> str:
    """The one-line refusal a page shows for a run above the budget."""
    return (f"This run needs {estimate.describe()}, more than this server's limit of "
            f"{budget:,} per click; {what_to_reduce}. (The limit is set by the server's "
            f"{BUDGET_VARIABLE}.)")


# -- counts per method ------------------------------------------------------------------------

def ig_evaluations(n_steps: int | Literal["auto"],
                   max_evaluations: int = IG_AUTO_MAX_EVALUATIONS) -> int:
    """Gradient rows of one IG explicand: its step count, or the auto budget as a bound."""
    return max_evaluations if n_steps == "auto" else int(n_steps)


def ig2_evaluations(n_steps: int, n_references: int, rule: Ig2Rule = "trapezoid") -> int:
    """Gradient rows of one IG2 explicand: every path point of every reference (the middle
    rule adds a midpoint row between consecutive points)."""
    points = 2 * int(n_steps) + 1 if rule == "middle" else int(n_steps) + 1
    return points * int(n_references)


def ig_run_rows(n_steps: int | Literal["auto"], explicands: int = 1) -> int:
    """Every row one IG call may evaluate with gradients: path points and extras."""
    return (ig_evaluations(n_steps) + IG_EXTRA_ROWS_PER_EXPLICAND) * explicands + \
        PROBE_ROWS_PER_CALL


def ig2_run_rows(n_steps: int, n_references: int, rule: Ig2Rule = "trapezoid",
                 explicands: int = 1) -> int:
    """Every row one IG2 call may evaluate with gradients: path points and the probe."""
    return ig2_evaluations(n_steps, n_references, rule) * explicands + PROBE_ROWS_PER_CALL


def curve_ladder(n_steps: int | Literal["auto"], divisors: Sequence[int], *,
                 distinct: bool = True) -> list[int]:
    """The smaller step counts a convergence curve re-runs IG with (none for auto, which
    records its own refinement history); ``distinct=False`` keeps repeats, as the text and
    tabular pages run them."""
    if not isinstance(n_steps, int):
        return []
    steps = [max(2, n_steps // d) for d in divisors]
    steps = [s for s in steps if s != n_steps]
    return sorted(set(steps)) if distinct else steps


def explanation_cost(method: str, *, n_steps: int | Literal["auto"],
                     convergence_divisors: Sequence[int] = (), distinct_ladder: bool = True,
                     ig2_steps: int = 0, n_references: int = 0, explicands: int = 1,
                     rule: Ig2Rule = "trapezoid") -> CostEstimate:
    """One page's Explain: IG (with its convergence-curve ladder), IG2, or both."""
    parts: list[tuple[str, int]] = []
    if method in ("IG", "both"):
        parts.append((f"IG, {n_steps} steps", ig_run_rows(n_steps, explicands)))
        for steps in curve_ladder(n_steps, convergence_divisors, distinct=distinct_ladder):
            parts.append((f"IG convergence curve, {steps} steps", ig_run_rows(steps, explicands)))
    if method in ("IG2", "both"):
        parts.append((f"IG2, {ig2_steps} steps x {n_references} references",
                      ig2_run_rows(ig2_steps, n_references, rule, explicands)))
    return CostEstimate(sum(n for _, n in parts), 0, tuple(parts))


def evaluation_method_evaluations(method: str, settings: EvaluationSettings) -> int:
    """Gradient rows of one Evaluate method on one case."""
    if method == METHOD_IG:
        return settings.ig_steps
    if method == METHOD_IG2:
        return ig2_evaluations(settings.ig2_steps, settings.ig2_references)
    if method in (METHOD_SALIENCY, METHOD_GRAD_X_INPUT):
        return 1
    if method == METHOD_SMOOTHGRAD:  # SmoothGrad over IG: every noisy copy is a full IG
        return settings.smoothgrad_samples * settings.ig_steps
    if method == METHOD_GRADIENT_SHAP:
        return settings.gradient_shap_samples
    raise ValueError(f"Unknown method {method!r}.")


def evaluation_cost(settings: EvaluationSettings, n_cases: int) -> CostEstimate:
    """An Evaluate run over ``n_cases``: every method's gradients, and the forward rows of the
    deletion / insertion curves (two per method plus the random-order references)."""
    parts = tuple((f"{method} x {n_cases} cases",
                   evaluation_method_evaluations(method, settings) * n_cases)
                  for method in settings.methods)
    curves_per_case = 2 * settings.curve_points * (len(settings.methods)
                                                   + settings.random_orders)
    return CostEstimate(sum(n for _, n in parts), curves_per_case * n_cases, parts)


# -- seconds per row ----------------------------------------------------------------------------

_ROW_COSTS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], RowCost]] = (
    weakref.WeakKeyDictionary())
_ROW_COSTS_GUARD = threading.Lock()


def _signature(inputs: torch.Tensor, forward_kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    kwargs = tuple((name, tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else
                    repr(value)) for name, value in sorted(forward_kwargs.items()))
    return (str(inputs.device), str(inputs.dtype), tuple(inputs.shape[1:]), kwargs)


def _owner(forward: Callable[..., Any]) -> Any:
    """What the memo is keyed by: the module (a bound method's owner) or the callable itself."""
    if isinstance(forward, nn.Module):
        return forward
    return getattr(forward, "__self__", forward)


def row_cost(forward: Callable[..., Any], example: torch.Tensor, *,
             forward_kwargs: Mapping[str, Any] | None = None,
             target: int | None = None, rows: int = MEASURE_ROWS) -> RowCost:
    """Seconds per row of forward + backward and of forward alone, for inputs shaped like
    ``example`` ([1, ...] or [N, ...]; its first row is repeated ``rows`` times).

    Measured once per model and input signature (a warm-up call first, so lazy initialisation is
    not counted) and remembered while the model lives.
    """
    kwargs = dict(forward_kwargs or {})
    key = _signature(example, kwargs)
    owner = _owner(forward)
    with _ROW_COSTS_GUARD:
        known = _ROW_COSTS.get(owner, {}).get(key)
    if known is not None:
        return known
    measured = _measure(forward, example[:1], kwargs, target, rows)
    with _ROW_COSTS_GUARD:
        _ROW_COSTS.setdefault(owner, {})[key] = measured
    return measured


def _measure(forward: Callable[..., Any], row: torch.Tensor, kwargs: dict[str, Any],
             target: int | None, rows: int) -> RowCost:
    batch = row.detach().expand(rows, *row.shape[1:]).clone()
    batch_kwargs = {name: (value[:1].expand(rows, *value.shape[1:]).clone()
                           if isinstance(value, torch.Tensor) and value.dim() > 0 else value)
                    for name, value in kwargs.items()}

    def gradient_call() -> None:
        points = batch.clone().requires_grad_(True)
        with torch.enable_grad():
            out = as_output_tensor(forward(points, **batch_kwargs))
            chosen = out[:, target] if target is not None and out.dim() == 2 else out
            torch.autograd.grad(chosen.sum(), points)

    def forward_call() -> None:
        with torch.no_grad():
            forward(batch, **batch_kwargs)

    with device_lock(row.device):
        gradient_call()  # warm-up: lazy initialisation and allocator growth are not the cost
        gradient = _timed(gradient_call, row.device)
        forward_only = _timed(forward_call, row.device)
    return RowCost(gradient / rows, forward_only / rows)


def _timed(call: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def forget_row_costs() -> None:
    """Drop every measured row cost (tests; a model reloaded in place)."""
    with _ROW_COSTS_GUARD:
        _ROW_COSTS.clear()
