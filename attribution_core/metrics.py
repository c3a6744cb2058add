"""Faithfulness metrics: how well an attribution map tells what the model actually uses.

* deletion / insertion curves (Petsiuk et al., 2018) and their random-order reference;
* sensitivity-n (Ancona et al., 2018), infidelity and max-sensitivity (Yeh et al., 2019);
* completeness error of any result; the model-randomisation sanity check (Adebayo et al., 2018);
* agreement with expected features (precision@k, rank correlation, mask share, pointing game).

Every perturbation metric evaluates many perturbed inputs per model call: rows are built lazily
chunk by chunk (an image curve never sits in memory whole) and run through
:meth:`GradientEngine.outputs` with ``batch_size`` rows per call (None: planned from memory),
so ``R`` perturbed rows cost exactly ``ceil(R / batch_size)`` model calls.

Features are grouped into *units* by ``groups``: an integer id per feature, ``0..K-1``, every id
used. It broadcasts against one input row (e.g. ``patch_groups`` [H, W] over [C, H, W] images,
``token_groups`` [L, 1] over [L, E] embeddings) or, with the inputs' full rank, gives one map per
explicand. None makes each feature its own unit (tabular). A unit's score is the sum of its
features' attributions; units are ranked by score, descending, ties by unit id.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from attribution_core.devices import device_lock, model_device
from attribution_core.engine import GradientEngine, evaluate_in_chunks
from attribution_core.forward import ForwardFn
from attribution_core.methods._gradients import expand_baselines, seeded_normal
from attribution_core.metrics_checks import (
    Agreement,
    CompletenessError,
    RandomisationCheck,
    agreement,
    completeness_error,
    randomisation_check,
    rank_correlation,
    sensitivity_max,
)
from attribution_core.model_outputs import normalise_target
from attribution_core.validation import (
    check_attributions,
    check_batch_size,
    check_count,
    check_groups,
    check_inputs,
    check_int_at_least,
    check_positive_int,
    check_positive_number,
    check_subset_sizes,
    check_unit_ids,
)

TargetLike = int | list[int] | torch.Tensor | None
CurveKind = Literal["deletion", "insertion"]
DEFAULT_CURVE_POINTS = 21
DEFAULT_RANDOM_ORDERS = 8

__all__ = [
    "DEFAULT_CURVE_POINTS",
    "Agreement",
    "CompletenessError",
    "PerturbationCurve",
    "RandomisationCheck",
    "SensitivityN",
    "agreement",
    "completeness_error",
    "deletion_curve",
    "infidelity",
    "insertion_curve",
    "patch_groups",
    "random_deletion_curve",
    "random_insertion_curve",
    "randomisation_check",
    "rank_correlation",
    "sensitivity_max",
    "sensitivity_n",
    "token_groups",
]


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


@dataclass(frozen=True)
class SensitivityN:
    """Pearson correlation, over random subsets of n units, of the attributions' sum on the
    subset with the output drop when the subset is set to the baseline: [B, len(ns)]."""

    ns: tuple[int, ...]
    correlation: torch.Tensor
    n_subsets: int
    forward_calls: int


# -- unit maps ----------------------------------------------------------------------------------

def patch_groups(height: int, width: int, patch: int) -> torch.Tensor:
    """Unit ids [height, width] of ``patch`` x ``patch`` squares, row-major (edges may be cut).

    Parameters
    ----------
    height, width : int
        The image's size in pixels, each >= 1.
    patch : int
        The side of a square unit in pixels, >= 1; the last row and column of squares are cut
        short where ``patch`` does not divide the size.

    Returns
    -------
    tensor
        Long [height, width]: every pixel's unit id, numbered row by row from 0, to pass as
        ``groups`` (it broadcasts over the channels of a [C, H, W] row).
    """
    for name, value in (("height", height), ("width", width), ("patch", patch)):
        check_positive_int(name, value)
    per_row = math.ceil(width / patch)
    rows = torch.arange(height).div(patch, rounding_mode="floor")
    cols = torch.arange(width).div(patch, rounding_mode="floor")
    return rows.view(-1, 1) * per_row + cols.view(1, -1)


def token_groups(n_tokens: int) -> torch.Tensor:
    """Unit ids [n_tokens, 1]: one unit per token, shared by its whole embedding vector.

    Parameters
    ----------
    n_tokens : int
        The sequence length L, >= 1.

    Returns
    -------
    tensor
        Long [n_tokens, 1]: token i is unit i; it broadcasts over an [L, E] embedding row.
    """
    check_positive_int("n_tokens", n_tokens)
    return torch.arange(n_tokens).view(-1, 1)


def _unit_map(inputs: torch.Tensor, groups: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """Per-explicand unit id of every flattened feature [B or 1, F], and the unit count K."""
    feature_shape = tuple(inputs.shape[1:])
    n_features = math.prod(feature_shape)
    if groups is None:
        return torch.arange(n_features, device=inputs.device).view(1, -1), n_features
    check_groups(groups)
    try:
        if groups.dim() == inputs.dim():
            expanded = torch.broadcast_to(groups, (groups.shape[0], *feature_shape))
            if groups.shape[0] not in (1, inputs.shape[0]):
                raise RuntimeError("leading dimension")
        else:
            expanded = torch.broadcast_to(groups, feature_shape).unsqueeze(0)
    except RuntimeError as error:
        raise ValueError(
            f"groups of shape {tuple(groups.shape)} do not broadcast to input rows of shape "
            f"{feature_shape} (nor to the inputs {tuple(inputs.shape)})."
        ) from error
    flat = expanded.reshape(expanded.shape[0], -1).to(inputs.device, torch.long)
    return flat, check_unit_ids(flat)


def _unit_scores(attributions: torch.Tensor, unit_map: torch.Tensor, n_units: int
                 ) -> torch.Tensor:
    flat = attributions.reshape(attributions.shape[0], -1)
    index = unit_map.expand(flat.shape[0], -1)
    return torch.zeros(flat.shape[0], n_units, dtype=flat.dtype, device=flat.device
                       ).scatter_add_(1, index, flat)


def _ranks_from_scores(scores: torch.Tensor) -> torch.Tensor:
    """rank[b, u] = position of unit u when sorted by score descending (stable: ties by id)."""
    order = torch.argsort(-scores, dim=1, stable=True)
    return torch.argsort(order, dim=1)


# -- evaluation -----------------------------------------------------------------------------------

class _RowEvaluator:
    """Target outputs of lazily built perturbed rows, ``batch_size`` rows per model call."""

    def __init__(self, forward: ForwardFn, inputs: torch.Tensor, target: TargetLike,
                 forward_kwargs: Mapping[str, Any] | None, batch_size: int | None) -> None:
        check_batch_size(batch_size)
        self.device = model_device(forward, inputs.device)
        n = inputs.shape[0]
        self.engine = GradientEngine(forward, n, self.device,
                                     target=normalise_target(target, n, self.device),
                                     forward_kwargs=forward_kwargs)
        self.batch_size = batch_size

    def run(self, n_rows: int,
            build: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        values: list[torch.Tensor] = []
        rows = self.batch_size
        if rows is None:
            rows = self.engine.plan_batch(*build(0, 1)).rows

        def evaluate(start: int, stop: int) -> torch.Tensor:
            return self.engine.outputs(*build(start, stop))

        def consume(_start: int, _stop: int, chunk: torch.Tensor) -> None:
            values.append(chunk)

        with device_lock(self.device):
            evaluate_in_chunks(n_rows, rows, self.device, evaluate, consume)
        return torch.cat(values)


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


# -- sensitivity-n and infidelity -----------------------------------------------------------------

def sensitivity_n(forward: ForwardFn, x: torch.Tensor, attributions: torch.Tensor,
                  baseline: torch.Tensor | float | None = None, target: TargetLike = None,
                  ns: Sequence[int] = (1, 2, 4), n_subsets: int = 32,
                  groups: torch.Tensor | None = None, seed: int = 0,
                  batch_size: int | None = None,
                  forward_kwargs: Mapping[str, Any] | None = None) -> SensitivityN:
    """Sensitivity-n: corr(sum of attributions on S, f(x) - f(x with S at the baseline)) over
    ``n_subsets`` random unit subsets S of each size n. 1 for every n only when the attribution
    is exactly additive (e.g. a linear model with IG). Costs
    ``ceil(B * (1 + len(ns) * n_subsets) / batch_size)`` model calls.

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
        What the units of a subset are set to: None (zeros), a number, or a tensor
        broadcastable to ``x``.
    target : int, list of int, tensor or None, optional
        The explained output: one class for all explicands or one per explicand; None for a
        model with one output per row.
    ns : sequence of int, optional
        Subset sizes n, each in 1..K (default (1, 2, 4)).
    n_subsets : int, optional
        Random subsets drawn per size and explicand, >= 2 (default 32).
    groups : tensor or None, optional
        Integer unit id ``0..K-1`` per feature, as for :func:`deletion_curve`; None: every
        feature is its own unit.
    seed : int, optional
        Seed of the generator that draws the subsets of the whole batch (default 0).
    batch_size : int or None, optional
        Rows per model call; None (default) plans it from memory.
    forward_kwargs : mapping or None, optional
        Extra keyword arguments of ``forward``; a tensor whose first dimension is B follows its
        explicand into every row made from it, anything else is passed unchanged.

    Returns
    -------
    SensitivityN
        ``ns`` as ints, ``correlation`` [B, len(ns)] (NaN where either side is constant),
        ``n_subsets`` and the model calls made.
    """
    check_inputs(x)
    check_attributions(x, attributions)
    unit_map, n_units = _unit_map(x, groups)
    sizes = check_subset_sizes(ns, n_units)
    check_int_at_least("n_subsets", n_subsets, 2)
    n = x.shape[0]
    scores = _unit_scores(attributions.detach().to(x.device, x.dtype), unit_map, n_units)
    generator = torch.Generator().manual_seed(seed)
    # subset[b, j, s, u]: unit u is in the s-th subset of size ns[j] for explicand b.
    random_rank = torch.rand(n, len(sizes), n_subsets, n_units, generator=generator).argsort(-1)
    sizes_t = torch.tensor(sizes).view(1, -1, 1, 1)
    subsets = (random_rank < sizes_t).to(x.device)
    attribution_sums = (subsets * scores.view(n, 1, 1, n_units)).sum(-1)
    # Row 0 of every explicand is the clean input (empty subset).
    masks = torch.cat([torch.zeros(n, 1, n_units, dtype=torch.bool, device=x.device),
                       subsets.reshape(n, -1, n_units)], dim=1)
    per_explicand = masks.shape[1]
    evaluator = _RowEvaluator(forward, x, target, forward_kwargs, batch_size)
    device = evaluator.device
    flat_x = x.detach().to(device).reshape(n, -1)
    flat_base = expand_baselines(x, baseline).detach().to(device).reshape(n, -1)
    masks, unit_map = masks.to(device), unit_map.to(device)

    def build(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.arange(start, stop, device=device)
        owners = rows // per_explicand
        unit_mask = masks.view(-1, n_units).index_select(0, rows)
        feature_mask = unit_mask.gather(1, unit_map.index_select(0, owners % unit_map.shape[0]))
        points = torch.where(feature_mask, flat_base.index_select(0, owners),
                             flat_x.index_select(0, owners))
        return points.view(-1, *x.shape[1:]), owners

    outputs = evaluator.run(n * per_explicand, build).view(n, per_explicand).to(x.device)
    drops = (outputs[:, :1] - outputs[:, 1:]).view(n, len(sizes), n_subsets)
    return SensitivityN(sizes, _pearson(attribution_sums, drops), n_subsets,
                        evaluator.engine.forward_calls)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last dimension (NaN where either side is constant)."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    denominator = (a.square().sum(-1) * b.square().sum(-1)).sqrt()
    return (a * b).sum(-1) / torch.where(denominator > 0, denominator, float("nan"))


def infidelity(forward: ForwardFn, x: torch.Tensor, attributions: torch.Tensor,
               target: TargetLike = None, noise_std: float = 0.1, n_samples: int = 32,
               seed: int = 0, normalize: bool = True, batch_size: int | None = None,
               forward_kwargs: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Infidelity [B]: mean over perturbations I ~ N(0, noise_std^2) of
    ``(beta * I . attr - (f(x) - f(x - I)))^2``, the formula of ``captum.metrics.infidelity``
    (beta = 1, or with ``normalize`` the least-squares scale, so maps are compared up to scale).

    Computed here rather than by Captum so that ``forward_kwargs`` and the engine's chunking
    apply; the noise is ``torch.normal(0, noise_std)`` of shape [B * n_samples, ...] (row =
    explicand * n_samples + sample) from a generator seeded with ``seed``. Lower is better.

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
    target : int, list of int, tensor or None, optional
        The explained output: one class for all explicands or one per explicand; None for a
        model with one output per row.
    noise_std : float, optional
        Standard deviation of the Gaussian perturbations, > 0 (default 0.1).
    n_samples : int, optional
        Perturbations per explicand, >= 1 (default 32).
    seed : int, optional
        Seed of the noise generator (default 0).
    normalize : bool, optional
        Scale the attributions by the least-squares beta before comparing (default True);
        False uses beta = 1.
    batch_size : int or None, optional
        Rows per model call; None (default) plans it from memory.
    forward_kwargs : mapping or None, optional
        Extra keyword arguments of ``forward``; a tensor whose first dimension is B follows its
        explicand into every row made from it, anything else is passed unchanged.

    Returns
    -------
    tensor
        Infidelity [B] on ``x``'s device, one value per explicand.
    """
    check_inputs(x)
    check_attributions(x, attributions)
    check_positive_int("n_samples", n_samples)
    check_positive_number("noise_std", noise_std)
    n = x.shape[0]
    evaluator = _RowEvaluator(forward, x, target, forward_kwargs, batch_size)
    device = evaluator.device
    clean = x.detach().to(device)
    noise = seeded_normal((n * n_samples, *x.shape[1:]), noise_std, x.dtype, seed).to(device)
    # Rows [0, B) are the clean inputs, then the perturbed copies.
    owners_all = torch.cat([torch.arange(n, device=device),
                            torch.arange(n, device=device).repeat_interleave(n_samples)])

    def build(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.arange(start, stop, device=device)
        owners = owners_all.index_select(0, rows)
        perturbed = rows >= n
        shift = torch.zeros(stop - start, *x.shape[1:], dtype=x.dtype, device=device)
        shift[perturbed] = noise.index_select(0, rows[perturbed] - n)
        return clean.index_select(0, owners) - shift, owners

    outputs = evaluator.run(n * (1 + n_samples), build).to(x.device)
    drops = (outputs[:n].repeat_interleave(n_samples) - outputs[n:]).view(n, n_samples)
    dots = (noise.to(x.device).view(n, n_samples, -1)
            * attributions.detach().to(x.device, x.dtype).reshape(n, 1, -1)).sum(-1)
    if normalize:
        denominator = dots.square().sum(-1)
        beta = (dots * drops).sum(-1) / torch.where(denominator > 0, denominator, 1.0)
        dots = dots * beta.unsqueeze(1)
    return (dots - drops).square().mean(-1)
