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

from attribution_core.cache import ResultCache, fingerprint_model, make_key
from attribution_core.engine import (
    ForwardFn,
    GradientEngine,
    ProgressFn,
    model_device,
    normalise_target,
)
from attribution_core.methods._gradients import expand_baselines
from attribution_core.quadrature import (
    QUADRATURE_METHODS,
    NestedGrid,
    QuadratureRule,
    custom_rule,
    quadrature,
    trapezoid_weights,
)
from attribution_core.results import Attribution, completeness

AUTO_INITIAL_INTERVALS = 4
AUTO_MARKING_FRACTION = 0.5


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
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1:
        raise TypeError("inputs must be a tensor with a leading batch dimension.")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be floating point, got {inputs.dtype}.")
    if inputs.shape[0] == 0:
        raise ValueError("inputs holds no explicand (batch dimension is 0).")
    if n_steps != "auto" and alphas is None and method not in QUADRATURE_METHODS:
        raise ValueError(
            f"Unknown method {method!r}; choose one of {', '.join(QUADRATURE_METHODS)}."
        )
    if n_steps == "auto":
        if not 0 < tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1), got {tolerance}.")
        if max_evaluations < AUTO_INITIAL_INTERVALS + 1:
            raise ValueError(f"max_evaluations must be at least {AUTO_INITIAL_INTERVALS + 1}.")
    elif alphas is None and (not isinstance(n_steps, int) or isinstance(n_steps, bool)):
        raise TypeError(f"n_steps must be an int or 'auto', got {n_steps!r}.")
    expanded = expand_baselines(inputs, baselines)

    key = None
    if cache is not None:
        key = make_key(
            "integrated_gradients",
            model_key if model_key is not None else fingerprint_model(forward),
            tensors={"inputs": inputs, "baselines": expanded,
                     **{f"kw.{k}": v for k, v in (forward_kwargs or {}).items()
                        if isinstance(v, torch.Tensor)}},
            params={"target": _plain(target), "n_steps": n_steps, "method": method,
                    "tolerance": tolerance if n_steps == "auto" else None,
                    "max_evaluations": max_evaluations if n_steps == "auto" else None,
                    "alphas": None if alphas is None else _plain(alphas),
                    "kwargs": {k: repr(v) for k, v in (forward_kwargs or {}).items()
                               if not isinstance(v, torch.Tensor)}},
        )
        hit = cache.get(key)
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
    if n_steps == "auto" and alphas is None:
        result = _adaptive(engine, x, x_base, tolerance, max_evaluations)
    else:
        rule = custom_rule(_as_numpy(alphas)) if alphas is not None else quadrature(method, n_steps)
        result = _fixed(engine, x, x_base, rule)
    result = _to_device(result, inputs.device)
    if cache is not None and key is not None:
        cache.put(key, result)
    return result


def _fixed(engine: GradientEngine, x: torch.Tensor, x_base: torch.Tensor, rule: QuadratureRule
           ) -> Attribution:
    n_explicands = x.shape[0]
    diffs = x - x_base
    feature_shape = (1,) * (x.dim() - 1)
    alphas = torch.tensor(rule.alphas, dtype=x.dtype, device=x.device)
    weights = torch.tensor(rule.step_sizes, dtype=x.dtype, device=x.device)
    # Contiguous whatever the input's strides (a permuted image tensor must not break view()).
    accumulated = torch.zeros(x.shape, dtype=x.dtype, device=x.device)
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
            points = x_base.unsqueeze(0) + alphas[steps[0]:steps[1]].view(
                -1, 1, *feature_shape) * diffs.unsqueeze(0)
            return points.reshape(-1, *x.shape[1:]), owners
        points = x_base.index_select(0, owners) + alphas[rows // n_explicands].view(
            -1, *feature_shape) * diffs.index_select(0, owners)
        return points, owners

    def consume(start: int, stop: int, outputs: torch.Tensor, grads: torch.Tensor) -> None:
        steps = whole_steps(start, stop)
        if steps is not None:
            first, last = steps
            per_step = grads.reshape(last - first, n_explicands * flat_accumulated.shape[1])
            flat_accumulated.add_((weights[first:last] @ per_step).view_as(flat_accumulated))
            for step in endpoint_steps:
                if first <= step < last:
                    offset = (step - first) * n_explicands
                    endpoint_outputs[step] = outputs[offset:offset + n_explicands]
            return
        rows = torch.arange(start, stop, device=x.device)
        step_of_row, owners = rows // n_explicands, rows % n_explicands
        accumulated.index_add_(0, owners, grads * weights[step_of_row].view(-1, *feature_shape))
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
    f_inputs, f_baselines = _endpoint_values(engine, x, x_base, by_alpha)
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


def _adaptive(engine: GradientEngine, x: torch.Tensor, x_base: torch.Tensor, tolerance: float,
              max_evaluations: int) -> Attribution:
    n_explicands = x.shape[0]
    diffs = x - x_base
    feature_shape = (1,) * (x.dim() - 1)
    grids = [NestedGrid.uniform(AUTO_INITIAL_INTERVALS) for _ in range(n_explicands)]
    # One entry per evaluated node: which explicand, where, f there, d f / d alpha there.
    node_owner: list[np.ndarray] = []
    node_alpha: list[np.ndarray] = []
    node_f: list[torch.Tensor] = []
    node_phi: list[torch.Tensor] = []
    node_grads: list[torch.Tensor] = []
    pending = [(b, grid.nodes) for b, grid in enumerate(grids)]
    active = np.ones(n_explicands, dtype=bool)
    history_evals: list[list[int]] = []
    history_relative: list[list[float]] = []
    relative = np.full(n_explicands, np.inf)

    while pending:
        owners_np = np.concatenate([np.full(len(a), b, dtype=np.int64) for b, a in pending])
        alphas_np = np.concatenate([a for _b, a in pending])
        owners_t = torch.as_tensor(owners_np, device=x.device)
        alphas_t = torch.as_tensor(alphas_np, dtype=x.dtype, device=x.device)

        def build(start: int, stop: int, owners_t: torch.Tensor = owners_t,
                  alphas_t: torch.Tensor = alphas_t) -> tuple[torch.Tensor, torch.Tensor]:
            owners = owners_t[start:stop]
            points = x_base.index_select(0, owners) + alphas_t[start:stop].view(
                -1, *feature_shape) * diffs.index_select(0, owners)
            return points, owners

        def consume(start: int, stop: int, outputs: torch.Tensor, grads: torch.Tensor,
                    owners_t: torch.Tensor = owners_t) -> None:
            owners = owners_t[start:stop]
            node_f.append(outputs)
            node_phi.append((grads * diffs.index_select(0, owners)).flatten(1).sum(1))
            node_grads.append(grads)

        engine.sweep(len(owners_np), build, consume)
        node_owner.append(owners_np)
        node_alpha.append(alphas_np)

        all_owner = np.concatenate(node_owner)
        all_alpha = np.concatenate(node_alpha)
        all_f = torch.cat(node_f).double().cpu().numpy()
        all_phi = torch.cat(node_phi).double().cpu().numpy()
        pending = []
        for b in range(n_explicands):
            if not active[b]:
                continue
            mine = np.flatnonzero(all_owner == b)
            order = mine[np.argsort(all_alpha[mine])]
            f_nodes, phi_nodes = all_f[order], all_phi[order]
            widths = np.diff(all_alpha[order])
            errors = 0.5 * widths * (phi_nodes[:-1] + phi_nodes[1:]) - np.diff(f_nodes)
            gap = abs(f_nodes[-1] - f_nodes[0])
            relative[b] = abs(errors.sum()) / max(gap, 1e-12)
            evaluated = len(mine)
            budget_left = max_evaluations - evaluated
            if relative[b] <= tolerance or budget_left <= 0:
                active[b] = False
                continue
            chosen = _mark_intervals(np.abs(errors), budget_left)
            grids[b], new_nodes = grids[b].refine(chosen)
            pending.append((b, new_nodes))
        history_evals.append([int((np.concatenate(node_owner) == b).sum())
                              for b in range(n_explicands)])
        history_relative.append(relative.tolist())

    return _assemble_adaptive(x, x_base, diffs, node_owner, node_alpha, node_f, node_grads,
                              history_evals, history_relative, tolerance, engine)


def _mark_intervals(abs_errors: np.ndarray, budget_left: int) -> np.ndarray:
    """Dörfler marking: the fewest intervals holding half of the total absolute error."""
    order = np.argsort(-abs_errors, kind="stable")
    cumulative = np.cumsum(abs_errors[order])
    total = cumulative[-1]
    count = int(np.searchsorted(cumulative, AUTO_MARKING_FRACTION * total) + 1) if total > 0 \
        else len(order)
    return order[: max(1, min(count, budget_left))]


def _assemble_adaptive(x: torch.Tensor, x_base: torch.Tensor, diffs: torch.Tensor,
                       node_owner: list[np.ndarray], node_alpha: list[np.ndarray],
                       node_f: list[torch.Tensor], node_grads: list[torch.Tensor],
                       history_evals: list[list[int]], history_relative: list[list[float]],
                       tolerance: float, engine: GradientEngine) -> Attribution:
    n_explicands = x.shape[0]
    owners = np.concatenate(node_owner)
    alphas = np.concatenate(node_alpha)
    values = torch.cat(node_f)
    grads = torch.cat(node_grads)
    weights = np.zeros_like(alphas)
    node_grids: list[torch.Tensor] = []
    f_inputs = torch.empty(n_explicands, dtype=values.dtype, device=values.device)
    f_baselines = torch.empty_like(f_inputs)
    for b in range(n_explicands):
        mine = np.flatnonzero(owners == b)
        order = mine[np.argsort(alphas[mine])]
        weights[order] = trapezoid_weights(alphas[order])
        node_grids.append(torch.as_tensor(alphas[order], dtype=torch.float64))
        f_baselines[b], f_inputs[b] = values[order[0]], values[order[-1]]
    feature_shape = (1,) * (x.dim() - 1)
    owners_t = torch.as_tensor(owners, device=x.device)
    weights_t = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    accumulated = torch.zeros_like(x).index_add_(
        0, owners_t, grads * weights_t.view(-1, *feature_shape))
    attributions = accumulated * diffs
    delta, relative = completeness(attributions, f_inputs, f_baselines)
    evaluations = torch.as_tensor(history_evals[-1], dtype=torch.long)
    return Attribution(
        attributions=attributions, f_inputs=f_inputs, f_baselines=f_baselines, delta=delta,
        relative_delta=relative, n_evaluations=evaluations, method="integrated_gradients",
        quadrature="adaptive_trapezoid", n_steps="auto", baselines=x_base, target=engine.target,
        alphas=tuple(node_grids),
        convergence_evaluations=torch.as_tensor(history_evals, dtype=torch.long),
        convergence_relative_delta=torch.as_tensor(history_relative, dtype=torch.float64),
        params={"quadrature": "adaptive_trapezoid", "n_steps": "auto", "tolerance": tolerance},
    )


def _to_device(result: Attribution, device: torch.device) -> Attribution:
    moved = {
        name: getattr(result, name).to(device)
        for name in ("attributions", "f_inputs", "f_baselines", "delta", "relative_delta",
                     "baselines")
    }
    if result.target is not None:
        moved["target"] = result.target.to(device)
    return dataclasses.replace(result, **moved)


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
