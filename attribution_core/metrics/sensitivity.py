"""Sensitivity-n (Ancona et al., 2018) and infidelity (Yeh et al., 2019): whether the
attributions of a set of units predict the output change when those units are perturbed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from attribution_core.forward import ForwardFn
from attribution_core.methods._gradients import TargetLike, expand_baselines, seeded_normal
from attribution_core.metrics.units import _RowEvaluator, _unit_map, _unit_scores
from attribution_core.validation import (
    check_attributions,
    check_inputs,
    check_int_at_least,
    check_positive_int,
    check_positive_number,
    check_subset_sizes,
)


@dataclass(frozen=True)
class SensitivityN:
    """Pearson correlation, over random subsets of n units, of the attributions' sum on the
    subset with the output drop when the subset is set to the baseline: [B, len(ns)]."""

    ns: tuple[int, ...]
    correlation: torch.Tensor
    n_subsets: int
    forward_calls: int


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
