"""Integrated Gradients on the straight path, with a fixed or an adaptive ("auto") step count.

The adaptive rule exploits a fact plain quadrature ignores: every forward pass at a node also
yields f there, so the exact integral of the directional derivative over any interval,
f(b) - f(a), is known. The trapezoid error of each interval is therefore known exactly, and the
completeness error of the whole estimate is the sum of those errors. Intervals carrying the most
error are bisected (nested: no gradient is ever computed twice) until the relative completeness
error reaches the tolerance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch

from attribution_core.cache import ResultCache, lookup
from attribution_core.devices import model_device
from attribution_core.engine import GradientEngine, ProgressFn
from attribution_core.forward import ForwardFn
from attribution_core.methods._gradients import expand_baselines
from attribution_core.methods._ig_adaptive import (
    AUTO_INITIAL_INTERVALS,
    accumulation_dtype,
    adaptive_ig,
)
from attribution_core.model_outputs import normalise_target
from attribution_core.quadrature import (
    QUADRATURE_METHODS,
    QuadratureRule,
    custom_rule,
    quadrature,
)
from attribution_core.results import Attribution, completeness, to_device
from attribution_core.validation import (
    check_choice,
    check_inputs,
    check_int_at_least,
    check_open_unit_interval,
    check_same_shape,
    check_step_count,
)


def integrated_gradients(
    forward: ForwardFn,
    inputs: torch.Tensor,
    baselines: torch.Tensor | float | None = None,
    target: int | list[int] | torch.Tensor | None = None,
    n_steps: int | Literal["auto"] = 64,
    method: str = "gausslegendre",
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    *,
    forward_kwargs: Mapping[str, Any] | None = None,
    tolerance: float = 0.01,
    max_evaluations: int = 1024,
    alphas: np.ndarray | torch.Tensor | None = None,
    cache: ResultCache | None = None,
    model_key: str | None = None,
) -> Attribution:
    """Integrated Gradients of ``forward``'s target output for a batch of explicands.

    ``n_steps="auto"`` refines a nested trapezoid grid until the relative completeness error is
    at most ``tolerance`` (or ``max_evaluations`` gradient evaluations per explicand are spent).
    ``alphas`` replays a given grid (e.g. an adaptive run's final one) with trapezoid weights.
    With ``cache``, results are stored under a content key; ``model_key`` names the model's
    weights for plain callables (modules are fingerprinted from their weights).
    """
    check_inputs(inputs)
    if n_steps != "auto" and alphas is None:
        check_choice("method", method, QUADRATURE_METHODS)
    if n_steps == "auto":
        check_open_unit_interval("tolerance", tolerance)
        check_int_at_least("max_evaluations", max_evaluations, AUTO_INITIAL_INTERVALS + 1)
    elif alphas is None:
        check_step_count(n_steps, auto=True)
    expanded = expand_baselines(inputs, baselines)

    adaptive = n_steps == "auto" and alphas is None
    key, hit = lookup(
        cache, "integrated_gradients.auto" if adaptive else "integrated_gradients", forward,
        model_key,
        tensors={"inputs": inputs, "baselines": expanded},
        params={"target": _plain(target), "n_steps": n_steps, "method": method,
                "tolerance": tolerance if n_steps == "auto" else None,
                "max_evaluations": max_evaluations if n_steps == "auto" else None,
                "alphas": None if alphas is None else _plain(alphas),
                "kwargs": dict(forward_kwargs or {})},
        device=inputs.device)
    if hit is not None:
        return hit

    device = model_device(forward, inputs.device)
    engine = GradientEngine(
        forward, inputs.shape[0], device,
        target=normalise_target(target, inputs.shape[0], device),
        forward_kwargs=forward_kwargs, batch_size=batch_size, progress=progress,
    )
    x = inputs.detach().to(device)
    x_base = expanded.detach().to(device)
    if adaptive:
        result = adaptive_ig(engine, x, x_base, tolerance, max_evaluations)
    else:
        rule = custom_rule(_as_numpy(alphas)) if alphas is not None else quadrature(method, n_steps)
        result = _fixed(engine, x, x_base, rule)
    result = to_device(result, inputs.device)
    if cache is not None and key is not None:
        cache.put(key, result)
    return result


def _fixed(engine: GradientEngine, x: torch.Tensor, x_base: torch.Tensor, rule: QuadratureRule
           ) -> Attribution:
    n_explicands = x.shape[0]
    acc_dtype = accumulation_dtype(x.dtype)
    diffs = x.to(acc_dtype) - x_base.to(acc_dtype)
    base = x_base.to(acc_dtype)
    feature_shape = (1,) * (x.dim() - 1)
    alphas = torch.tensor(rule.alphas, dtype=acc_dtype, device=x.device)
    weights = torch.tensor(rule.step_sizes, dtype=acc_dtype, device=x.device)
    # Contiguous whatever the input's strides (a permuted image tensor must not break view()).
    accumulated = torch.zeros(x.shape, dtype=acc_dtype, device=x.device)
    flat_accumulated = accumulated.view(n_explicands, -1)
    endpoint_steps = [k for k, a in enumerate(rule.alphas) if a in (0.0, 1.0)]
    endpoint_outputs: dict[int, torch.Tensor] = {}

    # Rows are step-major (row = step * B + explicand). A chunk of whole steps is built by
    # broadcasting and reduced by one matmul; other chunks fall back to gather / index_add.
    def whole_steps(start: int, stop: int) -> tuple[int, int] | None:
        if start % n_explicands or stop % n_explicands:
            return None
        return start // n_explicands, stop // n_explicands

    def build(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.arange(start, stop, device=x.device)
        owners = rows % n_explicands
        steps = whole_steps(start, stop)
        if steps is not None:
            points = base.unsqueeze(0) + alphas[steps[0]:steps[1]].view(
                -1, 1, *feature_shape) * diffs.unsqueeze(0)
            return points.reshape(-1, *x.shape[1:]).to(x.dtype), owners
        points = base.index_select(0, owners) + alphas[rows // n_explicands].view(
            -1, *feature_shape) * diffs.index_select(0, owners)
        return points.to(x.dtype), owners

    def consume(start: int, stop: int, outputs: torch.Tensor, grads: torch.Tensor) -> None:
        steps = whole_steps(start, stop)
        if steps is not None:
            first, last = steps
            per_step = grads.reshape(last - first, n_explicands * flat_accumulated.shape[1]
                                     ).to(acc_dtype)
            flat_accumulated.add_((weights[first:last] @ per_step).view_as(flat_accumulated))
            for step in endpoint_steps:
                if first <= step < last:
                    offset = (step - first) * n_explicands
                    endpoint_outputs[step] = outputs[offset:offset + n_explicands]
            return
        rows = torch.arange(start, stop, device=x.device)
        step_of_row, owners = rows // n_explicands, rows % n_explicands
        accumulated.index_add_(0, owners, grads.to(acc_dtype) * weights[step_of_row].view(
            -1, *feature_shape))
        for step in endpoint_steps:
            mask = step_of_row == step
            if bool(mask.any()):
                partial = endpoint_outputs.setdefault(
                    step, torch.full((n_explicands,), float("nan"), dtype=outputs.dtype,
                                     device=outputs.device))
                partial[owners[mask]] = outputs[mask]

    by_alpha: dict[float, torch.Tensor] = {}
    tail = None
    if len(endpoint_steps) < 2:  # f(x) and f(x') are not both path nodes: evaluate them
        owners = torch.arange(n_explicands, device=x.device)
        tail = (torch.cat([x, x_base]), torch.cat([owners, owners]))

    def consume_tail(outputs: torch.Tensor) -> None:
        by_alpha[1.0], by_alpha[0.0] = outputs[:n_explicands], outputs[n_explicands:]

    engine.sweep(rule.n_steps * n_explicands, build, consume, align=n_explicands, tail=tail,
                 consume_tail=consume_tail)
    by_alpha.update({float(rule.alphas[step]): values
                     for step, values in endpoint_outputs.items()})
    f_inputs, f_baselines = (values.to(acc_dtype)
                             for values in _endpoint_values(engine, x, x_base, by_alpha))
    attributions = accumulated * diffs
    delta, relative = completeness(attributions, f_inputs, f_baselines)
    node_alphas = torch.tensor(rule.alphas, dtype=torch.float64)
    evaluations = torch.full((n_explicands,), rule.n_steps, dtype=torch.long)
    return Attribution(
        attributions=attributions, f_inputs=f_inputs, f_baselines=f_baselines, delta=delta,
        relative_delta=relative, n_evaluations=evaluations, method="integrated_gradients",
        quadrature=rule.method, n_steps=rule.n_steps, baselines=x_base,
        target=engine.target, alphas=tuple(node_alphas for _ in range(n_explicands)),
        convergence_evaluations=evaluations.view(1, -1),
        convergence_relative_delta=relative.detach().to("cpu", torch.float64).view(1, -1),
        params={"quadrature": rule.method, "n_steps": rule.n_steps},
    )


def _endpoint_values(engine: GradientEngine, x: torch.Tensor, x_base: torch.Tensor,
                     by_alpha: dict[float, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) and f(x'), reusing path nodes at alpha 1 and 0 when the rule has them."""
    if 1.0 in by_alpha and 0.0 in by_alpha:
        return by_alpha[1.0], by_alpha[0.0]
    n = x.shape[0]
    owners = torch.arange(n, device=x.device)
    both = engine.outputs(torch.cat([x, x_base]), torch.cat([owners, owners]))
    return both[:n], both[n:]


def attribution_change(fine: Attribution, coarse: Attribution) -> torch.Tensor:
    """Per explicand [N] (float64, CPU): max_i |A_i(fine) - A_i(coarse)| / max_i |A_i(fine)|.

    The per-feature convergence estimate of a fixed step count, from a run at fewer steps: the
    completeness error can be tiny while this is large (errors that cancel in the sum).
    """
    check_same_shape("Both results must explain the same inputs.", fine.attributions,
                     coarse.attributions)
    a = fine.attributions.detach().to("cpu", torch.float64).reshape(fine.batch_size, -1)
    b = coarse.attributions.detach().to("cpu", torch.float64).reshape(fine.batch_size, -1)
    scale = a.abs().amax(1).clamp_min(1e-300)
    return (a - b).abs().amax(1) / scale


def with_convergence(result: Attribution, coarse: Attribution) -> Attribution:
    """``result`` carrying the per-feature convergence estimate against ``coarse``."""
    return dataclasses.replace(result, convergence=attribution_change(result, coarse),
                               convergence_reference_steps=coarse.n_steps)


def _as_numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
