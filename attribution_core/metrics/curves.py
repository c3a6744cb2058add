"""Deletion and insertion curves (Petsiuk et al., 2018), in attribution order and in random
orders as their reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from attribution_core.forward import ForwardFn
from attribution_core.methods._gradients import TargetLike, expand_baselines
from attribution_core.metrics.units import (
    _ranks_from_scores,
    _RowEvaluator,
    _unit_map,
    _unit_scores,
)
from attribution_core.validation import (
    check_attributions,
    check_count,
    check_inputs,
    check_int_at_least,
    check_positive_int,
)

CurveKind = Literal["deletion", "insertion"]
DEFAULT_CURVE_POINTS = 21
DEFAULT_RANDOM_ORDERS = 8


@dataclass(frozen=True)
class PerturbationCurve:
    """Model output as units are deleted (replaced by the baseline) or inserted into it.

    ``fractions`` [P] run from 0 to 1 (share of units perturbed); ``outputs`` [B, P] is the target
    output there. ``auc`` is the trapezoid area under ``outputs`` over ``fractions`` (output
    units). ``normalised_auc`` is the same area of ``(outputs - f(baseline)) / (f(x) -
    f(baseline))``, a curve from 1 to 0 (deletion) or 0 to 1 (insertion) whatever the model's
    scale: lower is better for deletion, higher for insertion, and a random order gives about
    0.5 on a model that adds up its features. It is NaN where f(x) and f(baseline) coincide.
    """

    kind: str
    order: str  # "attribution" or "random"
    fractions: torch.Tensor  # [P]
    counts: torch.Tensor  # [P] units perturbed at each point
    outputs: torch.Tensor  # [B, P], the mean over orders for a random curve
    f_inputs: torch.Tensor  # [B]
    f_baselines: torch.Tensor  # [B]
    auc: torch.Tensor  # [B]
    normalised_auc: torch.Tensor  # [B]
    n_units: int
    n_orders: int
    forward_calls: int


def _curve_counts(n_units: int, n_points: int) -> torch.Tensor:
    check_int_at_least("n_points", n_points, 2)
    if n_points >= n_units + 1:
        return torch.arange(n_units + 1)
    return torch.linspace(0, n_units, n_points, dtype=torch.float64).round().long().unique()


def _perturbation_curve(kind: CurveKind, order: str, forward: ForwardFn, inputs: torch.Tensor,
                        baseline: torch.Tensor | float | None, ranks: torch.Tensor,
                        unit_map: torch.Tensor, n_units: int, n_points: int, target: TargetLike,
                        batch_size: int | None, forward_kwargs: Mapping[str, Any] | None
                        ) -> PerturbationCurve:
    """``ranks`` [O, B, K]: O orders of the units of each explicand; outputs averaged over O."""
    evaluator = _RowEvaluator(forward, inputs, target, forward_kwargs, batch_size)
    device = evaluator.device
    n, n_orders = inputs.shape[0], ranks.shape[0]
    x = inputs.detach().to(device).reshape(n, -1)
    base = expand_baselines(inputs, baseline).detach().to(device).reshape(n, -1)
    counts = _curve_counts(n_units, n_points).to(device)
    n_curve = counts.shape[0]
    flat_ranks = ranks.to(device).reshape(n_orders * n, n_units)
    unit_map = unit_map.to(device)

    def build(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Row = (order * B + explicand) * P + point.
        rows = torch.arange(start, stop, device=device)
        instance, point = rows // n_curve, rows % n_curve
        owners = instance % n
        feature_units = unit_map.index_select(0, owners % unit_map.shape[0])
        feature_rank = flat_ranks.index_select(0, instance).gather(1, feature_units)
        switched = feature_rank < counts.index_select(0, point).unsqueeze(1)
        kept, replaced = (x, base) if kind == "deletion" else (base, x)
        points = torch.where(switched, replaced.index_select(0, owners),
                             kept.index_select(0, owners))
        return points.view(-1, *inputs.shape[1:]), owners

    outputs = evaluator.run(n_orders * n * n_curve, build)
    outputs = outputs.view(n_orders, n, n_curve).mean(dim=0)
    fractions = counts.to(outputs.dtype) / n_units
    f_inputs, f_baselines = (outputs[:, 0], outputs[:, -1]) if kind == "deletion" \
        else (outputs[:, -1], outputs[:, 0])
    gap = f_inputs - f_baselines
    scale = torch.maximum(f_inputs.abs(), f_baselines.abs()).clamp_min(1.0)
    degenerate = gap.abs() <= 1e-9 * scale
    normalised = (outputs - f_baselines.unsqueeze(1)) / torch.where(degenerate, 1.0, gap
                                                                     ).unsqueeze(1)
    normalised_auc = torch.trapezoid(normalised, fractions, dim=1)
    home = inputs.device
    return PerturbationCurve(
        kind=kind, order=order, fractions=fractions.to(home), counts=counts.to(home),
        outputs=outputs.to(home), f_inputs=f_inputs.to(home), f_baselines=f_baselines.to(home),
        auc=torch.trapezoid(outputs, fractions, dim=1).to(home),
        normalised_auc=torch.where(degenerate, float("nan"), normalised_auc).to(home),
        n_units=n_units, n_orders=n_orders, forward_calls=evaluator.engine.forward_calls,
    )


# -- public curves --------------------------------------------------------------------------------

def deletion_curve(forward: ForwardFn, x: torch.Tensor, attributions: torch.Tensor,
                   baseline: torch.Tensor | float | None = None, target: TargetLike = None,
                   groups: torch.Tensor | None = None, n_points: int = DEFAULT_CURVE_POINTS,
                   batch_size: int | None = None,
                   forward_kwargs: Mapping[str, Any] | None = None,
                   absolute: bool = False) -> PerturbationCurve:
    """Replace units by the ``baseline`` in attribution order (highest first), ``n_points``
    points from none to all (every count when ``n_points > K``). A faithful map drops f fast.

    ``absolute=True`` ranks units by |score| instead (for maps whose sign is not evidence).
    ``baseline`` None means zeros. Costs ``ceil(B * P / batch_size)`` model calls.

    Parameters
    ----------
    forward : callable
        The model, as for ``integrated_gradients``: a module or callable
        ``forward(points, **forward_kwargs)`` returning [rows, classes] or [rows]; it runs on the
        device of its first parameter (else ``x``'s).
    x : tensor
        Explicands [B, ...], floating point, B >= 1.
    attributions : tensor
        One attribution map per explicand, exactly ``x``'s shape.
    baseline : tensor, float or None, optional
        What a unit is set to when perturbed: None (zeros), a number, or a tensor broadcastable
        to ``x``.
    target : int, list of int, tensor or None, optional
        The explained output: one class for all explicands or one per explicand; None for a
        model with one output per row.
    groups : tensor or None, optional
        Integer unit id ``0..K-1`` per feature (every id used), broadcasting against one input
        row or, at ``x``'s rank, one map per explicand; None: every feature is its own unit.
    n_points : int, optional
        Points on the curve, >= 2 (default 21): unit counts rounded from an even spread over
        0..K, duplicates dropped; every count 0..K when ``n_points > K``.
    batch_size : int or None, optional
        Rows per model call; None (default) plans it from memory.
    forward_kwargs : mapping or None, optional
        Extra keyword arguments of ``forward``; a tensor whose first dimension is B follows its
        explicand into every row made from it, anything else is passed unchanged.
    absolute : bool, optional
        Rank units by |score| rather than by score (default False).

    Returns
    -------
    PerturbationCurve
        ``kind`` "deletion", ``order`` "attribution": ``fractions`` and ``counts`` [P], ``outputs``
        [B, P], ``f_inputs``, ``f_baselines``, ``auc`` and ``normalised_auc`` [B] (on
        ``x``'s device), ``n_units`` K, ``n_orders`` 1 and the model calls made.
    """
    return _attribution_curve("deletion", forward, x, attributions, baseline, target, groups,
                              n_points, batch_size, forward_kwargs, absolute)


def insertion_curve(forward: ForwardFn, x: torch.Tensor, attributions: torch.Tensor,
                    baseline: torch.Tensor | float | None = None, target: TargetLike = None,
                    groups: torch.Tensor | None = None, n_points: int = DEFAULT_CURVE_POINTS,
                    batch_size: int | None = None,
                    forward_kwargs: Mapping[str, Any] | None = None,
                    absolute: bool = False) -> PerturbationCurve:
    """Start from the ``baseline`` and put units of ``x`` back in attribution order (highest
    first). A faithful map raises f fast. Arguments as for :func:`deletion_curve`.

    Parameters
    ----------
    forward : callable
        The model, as for ``integrated_gradients``: a module or callable
        ``forward(points, **forward_kwargs)`` returning [rows, classes] or [rows]; it runs on the
        device of its first parameter (else ``x``'s).
    x : tensor
        Explicands [B, ...], floating point, B >= 1.
    attributions : tensor
        One attribution map per explicand, exactly ``x``'s shape.
    baseline : tensor, float or None, optional
        The starting point: None (zeros), a number, or a tensor broadcastable
        to ``x``.
    target : int, list of int, tensor or None, optional
        The explained output: one class for all explicands or one per explicand; None for a
        model with one output per row.
    groups : tensor or None, optional
        Integer unit id ``0..K-1`` per feature (every id used), broadcasting against one input
        row or, at ``x``'s rank, one map per explicand; None: every feature is its own unit.
    n_points : int, optional
        Points on the curve, >= 2 (default 21): unit counts rounded from an even spread over
        0..K, duplicates dropped; every count 0..K when ``n_points > K``.
    batch_size : int or None, optional
        Rows per model call; None (default) plans it from memory.
    forward_kwargs : mapping or None, optional
        Extra keyword arguments of ``forward``; a tensor whose first dimension is B follows its
        explicand into every row made from it, anything else is passed unchanged.
    absolute : bool, optional
        Rank units by |score| rather than by score (default False).

    Returns
    -------
    PerturbationCurve
        ``kind`` "insertion", ``order`` "attribution": ``fractions`` and ``counts`` [P], ``outputs``
        [B, P], ``f_inputs``, ``f_baselines``, ``auc`` and ``normalised_auc`` [B] (on
        ``x``'s device), ``n_units`` K, ``n_orders`` 1 and the model calls made.
    """
    return _attribution_curve("insertion", forward, x, attributions, baseline, target, groups,
                              n_points, batch_size, forward_kwargs, absolute)


def _attribution_curve(kind: CurveKind, forward: ForwardFn, x: torch.Tensor,
                       attributions: torch.Tensor, baseline: torch.Tensor | float | None,
                       target: TargetLike, groups: torch.Tensor | None, n_points: int,
                       batch_size: int | None, forward_kwargs: Mapping[str, Any] | None,
                       absolute: bool) -> PerturbationCurve:
    check_inputs(x)
    check_attributions(x, attributions)
    unit_map, n_units = _unit_map(x, groups)
    scores = _unit_scores(attributions.detach().to(x.device, x.dtype), unit_map, n_units)
    ranks = _ranks_from_scores(scores.abs() if absolute else scores)
    return _perturbation_curve(kind, "attribution", forward, x, baseline, ranks.unsqueeze(0),
                               unit_map, n_units, n_points, target, batch_size, forward_kwargs)


def random_deletion_curve(forward: ForwardFn, x: torch.Tensor,
                          baseline: torch.Tensor | float | None = None,
                          target: TargetLike = None, groups: torch.Tensor | None = None,
                          n_points: int = DEFAULT_CURVE_POINTS,
                          n_orders: int = DEFAULT_RANDOM_ORDERS,
                          seed: int | Sequence[int] = 0, batch_size: int | None = None,
                          forward_kwargs: Mapping[str, Any] | None = None) -> PerturbationCurve:
    """The deletion curve averaged over ``n_orders`` random unit orders (seeded): the
    reference an attribution map has to beat. Costs ``ceil(O * B * P / batch_size)`` calls.
    ``seed``: one for the batch, or one per explicand (orders independent of the batch).

    Parameters
    ----------
    forward : callable
        The model, as for ``integrated_gradients``: a module or callable
        ``forward(points, **forward_kwargs)`` returning [rows, classes] or [rows]; it runs on the
        device of its first parameter (else ``x``'s).
    x : tensor
        Explicands [B, ...], floating point, B >= 1.
    baseline : tensor, float or None, optional
        What a unit is set to when perturbed: None (zeros), a number, or a tensor broadcastable
        to ``x``.
    target : int, list of int, tensor or None, optional
        The explained output: one class for all explicands or one per explicand; None for a
        model with one output per row.
    groups : tensor or None, optional
        Integer unit id ``0..K-1`` per feature (every id used), broadcasting against one input
        row or, at ``x``'s rank, one map per explicand; None: every feature is its own unit.
    n_points : int, optional
        Points on the curve, >= 2 (default 21): unit counts rounded from an even spread over
        0..K, duplicates dropped; every count 0..K when ``n_points > K``.
    n_orders : int, optional
        Random unit orders averaged, >= 1 (default 8).
    seed : int or sequence of int, optional
        One seed for the whole batch, or one per explicand (B of them), so that a row's orders
        do not depend on its batch mates.
    batch_size : int or None, optional
        Rows per model call; None (default) plans it from memory.
    forward_kwargs : mapping or None, optional
        Extra keyword arguments of ``forward``; a tensor whose first dimension is B follows its
        explicand into every row made from it, anything else is passed unchanged.

    Returns
    -------
    PerturbationCurve
        ``kind`` "deletion", ``order`` "random": ``fractions`` and ``counts`` [P], ``outputs``
        [B, P] (mean over the orders), ``f_inputs``, ``f_baselines``, ``auc`` and
        ``normalised_auc`` [B] (on ``x``'s device), ``n_units`` K, ``n_orders`` O and the
        model calls made.
    """
    return _random_curve("deletion", forward, x, baseline, target, groups, n_points, n_orders,
                         seed, batch_size, forward_kwargs)


def random_insertion_curve(forward: ForwardFn, x: torch.Tensor,
                           baseline: torch.Tensor | float | None = None,
                           target: TargetLike = None, groups: torch.Tensor | None = None,
                           n_points: int = DEFAULT_CURVE_POINTS,
                           n_orders: int = DEFAULT_RANDOM_ORDERS,
                           seed: int | Sequence[int] = 0, batch_size: int | None = None,
                           forward_kwargs: Mapping[str, Any] | None = None) -> PerturbationCurve:
    """The insertion curve averaged over ``n_orders`` random unit orders (seeded).

    Costs ``ceil(O * B * P / batch_size)`` model calls.

    Parameters
    ----------
    forward : callable
        The model, as for ``integrated_gradients``: a module or callable
        ``forward(points, **forward_kwargs)`` returning [rows, classes] or [rows]; it runs on the
        device of its first parameter (else ``x``'s).
    x : tensor
        Explicands [B, ...], floating point, B >= 1.
    baseline : tensor, float or None, optional
        The starting point: None (zeros), a number, or a tensor broadcastable
        to ``x``.
    target : int, list of int, tensor or None, optional
        The explained output: one class for all explicands or one per explicand; None for a
        model with one output per row.
    groups : tensor or None, optional
        Integer unit id ``0..K-1`` per feature (every id used), broadcasting against one input
        row or, at ``x``'s rank, one map per explicand; None: every feature is its own unit.
    n_points : int, optional
        Points on the curve, >= 2 (default 21): unit counts rounded from an even spread over
        0..K, duplicates dropped; every count 0..K when ``n_points > K``.
    n_orders : int, optional
        Random unit orders averaged, >= 1 (default 8).
    seed : int or sequence of int, optional
        One seed for the whole batch, or one per explicand (B of them), so that a row's orders
        do not depend on its batch mates.
    batch_size : int or None, optional
        Rows per model call; None (default) plans it from memory.
    forward_kwargs : mapping or None, optional
        Extra keyword arguments of ``forward``; a tensor whose first dimension is B follows its
        explicand into every row made from it, anything else is passed unchanged.

    Returns
    -------
    PerturbationCurve
        ``kind`` "insertion", ``order`` "random": ``fractions`` and ``counts`` [P], ``outputs``
        [B, P] (mean over the orders), ``f_inputs``, ``f_baselines``, ``auc`` and
        ``normalised_auc`` [B] (on ``x``'s device), ``n_units`` K, ``n_orders`` O and the
        model calls made.
    """
    return _random_curve("insertion", forward, x, baseline, target, groups, n_points, n_orders,
                         seed, batch_size, forward_kwargs)


def _random_curve(kind: CurveKind, forward: ForwardFn, x: torch.Tensor,
                  baseline: torch.Tensor | float | None, target: TargetLike,
                  groups: torch.Tensor | None, n_points: int, n_orders: int,
                  seed: int | Sequence[int], batch_size: int | None,
                  forward_kwargs: Mapping[str, Any] | None) -> PerturbationCurve:
    check_inputs(x)
    check_positive_int("n_orders", n_orders)
    unit_map, n_units = _unit_map(x, groups)
    if isinstance(seed, int):
        generator = torch.Generator().manual_seed(seed)
        ranks = torch.rand(n_orders, x.shape[0], n_units, generator=generator).argsort(dim=-1)
    else:
        seeds = [int(s) for s in seed]
        check_count("seeds", len(seeds), x.shape[0], "explicands")
        # Per-explicand generators: a row's orders do not depend on its batch mates (one seed
        # per row draws exactly what a batch of that row alone would draw).
        ranks = torch.stack([torch.rand(n_orders, n_units,
                                        generator=torch.Generator().manual_seed(s))
                             for s in seeds], dim=1).argsort(dim=-1)
    return _perturbation_curve(kind, "random", forward, x, baseline, ranks, unit_map, n_units,
                               n_points, target, batch_size, forward_kwargs)
