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
    adaptive_ig,
)
from attribution_core.methods._ig_fixed import fixed_ig
from attribution_core.model_outputs import normalise_target
from attribution_core.quadrature import (
    QUADRATURE_METHODS,
    custom_rule,
    quadrature,
)
from attribution_core.results import Attribution, to_device
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

    Modelled on Captum's ``IntegratedGradients.attribute``; the rows of every path point of
    every explicand are evaluated together, chunked by the engine.

    Parameters
    ----------
    forward : callable
        The model: an ``nn.Module``, a bound method of one, or any callable
        ``forward(points, **forward_kwargs)`` returning a tensor [rows, classes] or [rows] (or a
        tuple whose first item is, or an object with ``.logits``). Its parameters are frozen
        while it runs; the device is that of its first parameter (else the inputs').
    inputs : tensor
        Explicands [N, ...], floating point, N >= 1; the result comes back on their device.
    baselines : tensor, float or None, optional
        The path's start: None (zeros), a number, or a tensor broadcastable to ``inputs``.
    target : int, list of int, tensor or None, optional
        The explained output: one class for all explicands or one per explicand, checked to be
        in 0..C-1. None for a model with one output per row.
    n_steps : int or "auto", optional
        Quadrature nodes per explicand (default 64). "auto" refines a nested trapezoid grid
        until the relative completeness error and the per-feature estimate are at most
        ``tolerance`` or ``max_evaluations`` gradient evaluations per explicand are spent.
    method : str, optional
        The quadrature rule for a fixed ``n_steps``: "gausslegendre" (default),
        "riemann_trapezoid", "riemann_left", "riemann_right" or "riemann_middle".
    batch_size : int or None, optional
        Rows per model call. None (default) plans it from one row's measured activation memory
        (one extra forward pass, memoised per model and row shape); an int is honoured exactly.
        The result does not depend on it.
    progress : callable or None, optional
        ``progress(done, total)`` after every chunk of rows (model calls), from the calling
        thread.
    forward_kwargs : mapping or None, optional
        Extra keyword arguments of ``forward``. The per-row rule: a tensor whose first dimension
        is the number of explicands N belongs to the explicands (an attention mask) and follows
        each explicand through every row made from it; anything else is passed unchanged to
        every call.
    tolerance : float, optional
        "auto"'s target, in (0, 1) (default 0.01).
    max_evaluations : int, optional
        "auto"'s budget of gradient evaluations per explicand (default 1024).
    alphas : array or tensor, optional
        Replay a given grid (e.g. an "auto" run's final one) with trapezoid weights.
    cache : ResultCache or None, optional
        Store and reuse results under a content key (inputs, baselines, settings, model).
    model_key : str or None, optional
        Names the weights of a plain callable for the cache (modules are fingerprinted).

    Returns
    -------
    Attribution
        A frozen result: ``attributions`` [N, ...] (the inputs' shape), ``f_inputs`` and
        ``f_baselines`` [N] (the target output at the explicand and at the baseline),
        ``delta`` [N] (sum of attributions minus ``f_inputs - f_baselines``, Captum's
        convergence delta) and ``relative_delta`` [N] (``|delta| / |f_inputs - f_baselines|``),
        ``n_evaluations`` [N] (gradient evaluations per explicand), ``baselines`` [N, ...],
        ``target``, ``method``, ``quadrature``, ``n_steps``, ``alphas`` (the nodes used),
        ``params`` and ``from_cache``; IG also ``convergence`` [N] (how far the map may still
        move, per feature, relative to its largest attribution; None when unknown).
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
        result = fixed_ig(engine, x, x_base, rule)
    result = to_device(result, inputs.device)
    if cache is not None and key is not None:
        cache.put(key, result)
    return result


def attribution_change(fine: Attribution, coarse: Attribution) -> torch.Tensor:
    """Per explicand: max_i |A_i(fine) - A_i(coarse)| / max_i |A_i(fine)|.

    The per-feature convergence estimate of a fixed step count, from a run at fewer steps: the
    completeness error can be tiny while this is large (errors that cancel in the sum).

    Parameters
    ----------
    fine, coarse : Attribution
        Two results for the same inputs (same attribution shape).

    Returns
    -------
    tensor
        [N], float64 on the CPU.
    """
    check_same_shape("Both results must explain the same inputs.", fine.attributions,
                     coarse.attributions)
    a = fine.attributions.detach().to("cpu", torch.float64).reshape(fine.batch_size, -1)
    b = coarse.attributions.detach().to("cpu", torch.float64).reshape(fine.batch_size, -1)
    scale = a.abs().amax(1).clamp_min(1e-300)
    return (a - b).abs().amax(1) / scale


def with_convergence(result: Attribution, coarse: Attribution) -> Attribution:
    """``result`` carrying the per-feature convergence estimate against ``coarse``.

    Parameters
    ----------
    result : Attribution
        A fixed-step IG result.
    coarse : Attribution
        The same explanation at fewer steps (e.g. half).

    Returns
    -------
    Attribution
        ``result`` with ``convergence`` [N] = :func:`attribution_change` (fine, coarse) and
        ``convergence_reference_steps`` set to the coarse run's ``n_steps``.
    """
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
