"""What a run will cost before it starts: gradient evaluations from its settings, seconds from
the model's measured per-row cost.

A *gradient evaluation* is one row of forward + backward (the unit the engine batches); a
*forward row* is one row of a forward pass without gradients (deletion / insertion curves,
reference selection). Counts are upper bounds where the method decides at run time (IG with
``n_steps="auto"`` may stop early; its evaluation budget is the bound). Seconds are
rows x seconds per row + model calls x seconds per call: small models are dominated by the
fixed cost of a call (IG2 makes one call per path step, whatever the row count), big ones by
the rows. Both come from timing forward + backward at two batch sizes, once per model and
input signature, remembered, so showing an estimate costs nothing after the first time.

A shared server refuses a click above its budget (:func:`evaluation_budget`, set with
``IG_DASHBOARD_MAX_EVALUATIONS``) so that one click cannot hold a device for hours.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from attribution_core.devices import device_lock
from attribution_core.engine import CPU_MAX_ROWS, MEMORY_PROBE_CALLS
from attribution_core.evaluation.types import (
    METHOD_GRAD_X_INPUT,
    METHOD_GRADIENT_SHAP,
    METHOD_IG,
    METHOD_IG2,
    METHOD_IG2_BEST_PATH,
    METHOD_SALIENCY,
    METHOD_SMOOTHGRAD,
    EvaluationSettings,
)
from attribution_core.forward import module_behind
from attribution_core.model_outputs import as_output_tensor

BUDGET_VARIABLE = "IG_DASHBOARD_MAX_EVALUATIONS"
# The default allows the image page's largest run (IG with 1,024 steps and its curve plus IG2
# with 16 references x 257 path points: about 6,000) and the Evaluate page's default of 50
# cases x 6 methods (about 22,000), and refuses Evaluate's maximum (500 cases: about 220,000).
DEFAULT_BUDGET = 50_000
IG_AUTO_MAX_EVALUATIONS = 1024  # integrated_gradients' own default budget for n_steps="auto"
MEASURE_ROWS = 16
MEASURE_REPEATS = 3  # the median of three timings: one stray pause does not set the price
# The engine's own work around each model call (building rows, gathering targets, IG2's
# distances and clipping), which a bare forward + backward does not see: about 0.5-4 ms per
# call on small CPU models in benchmarks.cost_model, so 1 ms is charged per call.
CALL_OVERHEAD_SECONDS = 1e-3

# Rows a run evaluates besides its path points: f(x) and f(baseline) per explicand (folded into
# the gradient call for small rows) and one row per call that measures memory to plan chunks.
IG_EXTRA_ROWS_PER_EXPLICAND = 2
PROBE_ROWS_PER_CALL = 3  # the memory planner's 1-row and 2-row probes
PAGE_FORWARD_CALLS = 2  # predictions and f(baseline) around a run

Ig2Rule = Literal["trapezoid", "middle", "left"]


@dataclass(frozen=True)
class RowCost:
    """Measured seconds on one model, device and input signature: per row and per model call,
    with gradients (forward + backward) and without (forward only)."""

    gradient_seconds: float
    forward_seconds: float
    gradient_call_seconds: float = 0.0
    forward_call_seconds: float = 0.0


@dataclass(frozen=True)
class CostEstimate:
    """Rows a run will evaluate (upper bounds) and, once the row cost is known, its seconds."""

    evaluations: int
    forward_rows: int = 0
    parts: tuple[tuple[str, int], ...] = ()
    seconds: float | None = None
    calls: int = 0  # model calls with gradients (sequential: IG2 makes one per path step)
    forward_calls: int = 0

    def __add__(self, other: CostEstimate) -> CostEstimate:
        seconds = None if self.seconds is None or other.seconds is None else \
            self.seconds + other.seconds
        return CostEstimate(self.evaluations + other.evaluations,
                            self.forward_rows + other.forward_rows,
                            self.parts + other.parts, seconds, self.calls + other.calls,
                            self.forward_calls + other.forward_calls)

    def timed(self, row_cost: RowCost | None) -> CostEstimate:
        """The same counts with seconds from a measured row cost (None leaves them unknown)."""
        if row_cost is None:
            return self
        seconds = (self.evaluations * row_cost.gradient_seconds
                   + self.calls * (row_cost.gradient_call_seconds + CALL_OVERHEAD_SECONDS)
                   + self.forward_rows * row_cost.forward_seconds
                   + self.forward_calls * (row_cost.forward_call_seconds
                                           + CALL_OVERHEAD_SECONDS))
        return replace(self, seconds=seconds)

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


def ig2_evaluations(n_steps: int, n_references: int, rule: Ig2Rule = "trapezoid",
                    halving: bool = False) -> int:
    """Gradient rows of one IG2 explicand: every path point of every reference (the middle
    rule adds a midpoint row between consecutive points); with ``halving`` (the convergence
    estimate's companion paths) as many again at half the steps."""
    def points(steps: int) -> int:
        return 2 * steps + 1 if rule == "middle" else steps + 1

    half = int(n_steps) // 2 if halving and int(n_steps) >= 2 else 0
    return (points(int(n_steps)) + (points(half) if half else 0)) * int(n_references)


def ig_run_rows(n_steps: int | Literal["auto"], explicands: int = 1) -> int:
    """Every row one IG call may evaluate with gradients: path points and extras."""
    return (ig_evaluations(n_steps) + IG_EXTRA_ROWS_PER_EXPLICAND) * explicands + \
        PROBE_ROWS_PER_CALL


def batched_calls(rows: int) -> int:
    """Model calls for ``rows`` rows the engine batches freely: its chunks and the probe."""
    # The CPU's chunk bound (an upper bound on GPU), plus the memory planner's probes.
    return math.ceil(rows / CPU_MAX_ROWS) + MEMORY_PROBE_CALLS


def ig2_calls(n_steps: int) -> int:
    """IG2 walks its path step by step: one call per path point (all references together)."""
    return int(n_steps) + 1 + 1


def ig2_run_rows(n_steps: int, n_references: int, rule: Ig2Rule = "trapezoid",
                 explicands: int = 1, halving: bool = False) -> int:
    """Every row one IG2 call may evaluate with gradients: path points and the probe."""
    return ig2_evaluations(n_steps, n_references, rule, halving) * explicands + \
        PROBE_ROWS_PER_CALL


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
                     rule: Ig2Rule = "trapezoid", ig2_halving: bool = False) -> CostEstimate:
    """One page's Explain: IG (with its convergence-curve ladder), IG2 (with its convergence
    estimate's companion paths when ``ig2_halving``), or both."""
    parts: list[tuple[str, int]] = []
    calls = 0
    if method in ("IG", "both"):
        runs = [n_steps, *curve_ladder(n_steps, convergence_divisors, distinct=distinct_ladder)]
        for index, steps in enumerate(runs):
            name = f"IG, {steps} steps" if index == 0 else \
                f"IG convergence curve, {steps} steps"
            parts.append((name, ig_run_rows(steps, explicands)))
            calls += batched_calls(parts[-1][1])
    if method in ("IG2", "both"):
        parts.append((f"IG2, {ig2_steps} steps x {n_references} references" +
                      (" (+ half-steps paths)" if ig2_halving else ""),
                      ig2_run_rows(ig2_steps, n_references, rule, explicands, ig2_halving)))
        calls += ig2_calls(ig2_steps)
    # Predictions, f(baseline) and reference selection: a few forward calls per run.
    forward_calls = PAGE_FORWARD_CALLS * len(parts)
    return CostEstimate(sum(n for _, n in parts), forward_calls * explicands, tuple(parts),
                        calls=calls, forward_calls=forward_calls)


def evaluation_method_evaluations(method: str, settings: EvaluationSettings) -> int:
    """Gradient rows of one Evaluate method on one case."""
    if method == METHOD_IG:  # and again at half the steps: the map's convergence estimate
        return settings.ig_steps + (settings.ig_steps // 2 if settings.ig_steps >= 2 else 0)
    if method == METHOD_IG2:  # with its companion paths: the map's convergence estimate
        return ig2_evaluations(settings.ig2_steps, settings.ig2_references, halving=True)
    if method == METHOD_IG2_BEST_PATH:  # every path setting tried, each with companions
        from attribution_core.evaluation.ig2_method import best_path_evaluations

        # Evaluate's eta is a number (the model's, or the settings'): the fixed-eta grid.
        return best_path_evaluations(settings.ig2_steps, 1.0) * settings.ig2_references
    if method in (METHOD_SALIENCY, METHOD_GRAD_X_INPUT):
        return 1
    if method == METHOD_SMOOTHGRAD:  # SmoothGrad over IG: every noisy copy is a full IG
        return settings.smoothgrad_samples * settings.ig_steps
    if method == METHOD_GRADIENT_SHAP:
        return settings.gradient_shap_samples
    raise ValueError(f"Unknown method {method!r}.")


def evaluation_method_calls(method: str, settings: EvaluationSettings, batch: int) -> int:
    """Gradient calls of one Evaluate method on one batch of ``batch`` cases (SmoothGrad and
    GradientSHAP run case by case; IG2 step by step)."""
    if method == METHOD_IG2:
        return ig2_calls(settings.ig2_steps)
    if method == METHOD_IG2_BEST_PATH:
        from attribution_core.evaluation.ig2_method import best_path_grid

        return sum(ig2_calls(settings.ig2_steps * s.steps_factor) for s in best_path_grid(1.0))
    if method in (METHOD_SMOOTHGRAD, METHOD_GRADIENT_SHAP):
        return batch * batched_calls(evaluation_method_evaluations(method, settings))
    return batched_calls(evaluation_method_evaluations(method, settings) * batch)


def evaluation_cost(settings: EvaluationSettings, n_cases: int) -> CostEstimate:
    """An Evaluate run over ``n_cases``: every method's gradients (plus a probe row per method
    and case, an upper bound), and the forward rows of the deletion / insertion curves (two per
    method plus the random-order references, each with its end points)."""
    parts = tuple((f"{method} x {n_cases} cases",
                   (evaluation_method_evaluations(method, settings) + PROBE_ROWS_PER_CALL)
                   * n_cases) for method in settings.methods)
    curves = 2 * (len(settings.methods) + 1)  # the random-order pair shares its calls
    curve_rows = 2 * (settings.curve_points + 1) * (len(settings.methods)
                                                    + settings.random_orders)
    batches = math.ceil(n_cases / settings.cases_per_batch)
    batch = min(n_cases, settings.cases_per_batch)
    calls = batches * sum(evaluation_method_calls(m, settings, batch) for m in settings.methods)
    forward_calls = batches * (PAGE_FORWARD_CALLS + 2 * curves)  # each curve: probe + rows
    return CostEstimate(sum(n for _, n in parts), (curve_rows + 1) * n_cases, parts,
                        calls=calls, forward_calls=forward_calls)


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
    module = module_behind(forward)
    # A bound method of some other object: that object, which outlives the method object.
    return module if module is not None else getattr(forward, "__self__", forward)


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


def remember_row_cost(forward: Callable[..., Any], example: torch.Tensor, measured: RowCost, *,
                      forward_kwargs: Mapping[str, Any] | None = None) -> None:
    """Take a row cost measured elsewhere (an uploaded model's trial, in a child process with a
    time budget) as this model's, so :func:`row_cost` answers without timing it here."""
    key = _signature(example, dict(forward_kwargs or {}))
    with _ROW_COSTS_GUARD:
        _ROW_COSTS.setdefault(_owner(forward), {}).setdefault(key, measured)


def _measure(forward: Callable[..., Any], row: torch.Tensor, kwargs: dict[str, Any],
             target: int | None, rows: int) -> RowCost:
    def batch_of(count: int) -> tuple[torch.Tensor, dict[str, Any]]:
        batch_kwargs = {name: (value[:1].expand(count, *value.shape[1:]).clone()
                               if isinstance(value, torch.Tensor) and value.dim() > 0 else value)
                        for name, value in kwargs.items()}
        return row.detach().expand(count, *row.shape[1:]).clone(), batch_kwargs

    def gradient_call(count: int) -> None:
        batch, batch_kwargs = batch_of(count)
        points = batch.requires_grad_(True)
        with torch.enable_grad():
            out = as_output_tensor(forward(points, **batch_kwargs))
            chosen = out[:, target] if target is not None and out.dim() == 2 else out
            torch.autograd.grad(chosen.sum(), points)

    def forward_call(count: int) -> None:
        batch, batch_kwargs = batch_of(count)
        with torch.no_grad():
            forward(batch, **batch_kwargs)

    with device_lock(row.device):
        gradient_call(rows)  # warm-up: lazy initialisation and allocator growth are not the cost
        gradient = (_timed(gradient_call, 1, row.device), _timed(gradient_call, rows, row.device))
        forward_only = (_timed(forward_call, 1, row.device),
                        _timed(forward_call, rows, row.device))
    gradient_row, gradient_fixed = _line(*gradient, rows)
    forward_row, forward_fixed = _line(*forward_only, rows)
    return RowCost(gradient_row, forward_row, gradient_fixed, forward_fixed)


def _line(one: float, many: float, rows: int) -> tuple[float, float]:
    """Seconds per row and per call from the times of 1 and ``rows`` rows (a straight line;
    when noise makes it fall, all of the time is charged to the rows)."""
    per_row = (many - one) / (rows - 1)
    if per_row <= 0.0:
        return many / rows, 0.0
    return per_row, max(one - per_row, 0.0)


def _timed(call: Callable[[int], None], rows: int, device: torch.device) -> float:
    """The median of a few timings of ``call(rows)``."""
    times = []
    for _ in range(MEASURE_REPEATS):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        call(rows)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def forget_row_costs() -> None:
    """Drop every measured row cost (tests; a model reloaded in place)."""
    with _ROW_COSTS_GUARD:
        _ROW_COSTS.clear()
