"""Metrics that need no perturbation sweep: completeness error, the model-randomisation sanity
check and agreement with expected features. Re-exported by :mod:`attribution_core.metrics`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attribution_core.validation import (
    check_attribution_batch,
    check_feature_indices,
    check_int_in_range,
    check_positive_int,
    check_positive_number,
    check_requirement,
)

# Methods whose ``delta`` is bookkeeping against the zero input, not a completeness promise.
NO_BASELINE_COMPLETENESS = frozenset(
    {"saliency", "saliency_abs", "gradient_x_input", "smoothgrad_gradient"})


@dataclass(frozen=True)
class CompletenessError:
    """How far ``sum(attributions)`` is from the output gap the method promises to explain.

    ``expected_sum`` is ``f(x) - f(baseline)`` (IG2: ``f(x) - mean f(GradCF)``; GradientSHAP: the
    mean over the reference distribution). ``baseline_based`` is False for methods with no such
    promise (saliency, gradient x input, SmoothGrad over gradients): their error is not a defect.
    """

    method: str
    sum_attributions: torch.Tensor  # [B]
    expected_sum: torch.Tensor  # [B]
    absolute_error: torch.Tensor  # [B] |sum - expected|
    relative_error: torch.Tensor  # [B] absolute / max(|expected|, eps)
    baseline_based: bool


def completeness_error(result: Any, eps: float = 1e-12) -> CompletenessError:
    """Recompute the completeness error of any attribution result from its own fields."""
    attributions = getattr(result, "attributions", None)
    f_inputs = getattr(result, "f_inputs", None)
    reference = getattr(result, "f_counterfactuals", None)
    if reference is None:
        reference = getattr(result, "f_baselines", None)
    if not all(isinstance(t, torch.Tensor) for t in (attributions, f_inputs, reference)):
        raise TypeError("result must carry attributions, f_inputs and f_baselines (or "
                        "f_counterfactuals) tensors, like Attribution and IG2Attribution.")
    assert attributions is not None and f_inputs is not None and reference is not None
    totals = attributions.reshape(attributions.shape[0], -1).sum(dim=1)
    expected = f_inputs - reference
    error = (totals - expected).abs()
    method = str(getattr(result, "method", "unknown"))
    return CompletenessError(method, totals, expected, error, error / expected.abs().clamp_min(eps),
                             method not in NO_BASELINE_COMPLETENESS)


# -- rank correlation -----------------------------------------------------------------------------

def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of a 1-D tensor, ties sharing their mean rank (as Spearman needs)."""
    sorted_values, order = torch.sort(values, stable=True)
    starts = torch.ones_like(sorted_values, dtype=torch.bool)
    starts[1:] = sorted_values[1:] != sorted_values[:-1]
    tie_group = torch.cumsum(starts.long(), 0) - 1
    positions = torch.arange(values.numel(), dtype=torch.float64, device=values.device)
    n_groups = int(tie_group[-1]) + 1
    group_sum = torch.zeros(n_groups, dtype=torch.float64, device=values.device
                            ).index_add_(0, tie_group, positions)
    group_size = torch.bincount(tie_group, minlength=n_groups).to(torch.float64)
    ranks = torch.empty_like(positions)
    ranks[order] = (group_sum / group_size)[tie_group]
    return ranks


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation per row of [B, ...] tensors (flattened), ties averaged; NaN where a
    row is constant. ``b`` may broadcast against ``a`` (e.g. one expected map for all rows)."""
    a, b = torch.broadcast_tensors(a, b)
    a_rows, b_rows = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    # float64 on the CPU: MPS has no float64, and ranks of long rows need its precision.
    result = torch.empty(a_rows.shape[0], dtype=torch.float64)
    for row in range(a_rows.shape[0]):
        ra = _average_ranks(a_rows[row].detach().cpu().double())
        rb = _average_ranks(b_rows[row].detach().cpu().double())
        ra, rb = ra - ra.mean(), rb - rb.mean()
        denominator = (ra.square().sum() * rb.square().sum()).sqrt()
        result[row] = (ra * rb).sum() / denominator if denominator > 0 else float("nan")
    return result


# -- model randomisation --------------------------------------------------------------------------

@dataclass(frozen=True)
class RandomisationCheck:
    """Cascading randomisation: step k re-initialises ``layers[:k]`` (from the output down).

    ``correlations`` [K + 1, B] is the Spearman correlation of |attributions| of the trained
    model with those after step k (row 0 compares the trained model with itself: 1). A method
    that explains the model, rather than the input, drops towards 0 as layers are randomised.
    """

    layers: tuple[str, ...]
    correlations: torch.Tensor
    mean_correlation: torch.Tensor  # [K + 1], mean over explicands


ModelOrFactory = nn.Module | Callable[[], nn.Module]
Explain = Callable[[nn.Module], Any]


def randomisation_check(model_or_factory: ModelOrFactory, explain: Explain,
                        layers: Sequence[str] | None = None, seed: int = 0
                        ) -> RandomisationCheck:
    """Run ``explain(model)`` (a tensor [B, ...] or a result with ``.attributions``) on the
    trained model and on a copy whose top layers are re-initialised one more per step.

    ``model_or_factory`` is the trained module (deep-copied; the original is never touched) or a
    function returning a fresh trained one. ``layers`` names modules with ``reset_parameters``,
    output first; by default every such module holding parameters, in reverse registration
    order. Re-initialisation draws from a private generator seeded with ``seed + step``: the
    global RNG is neither read nor reseeded.
    """
    trained = model_or_factory() if not isinstance(model_or_factory, nn.Module) \
        else model_or_factory
    if not isinstance(trained, nn.Module):
        raise TypeError("model_or_factory must be an nn.Module or return one.")
    randomised = clean_copy(trained) if isinstance(model_or_factory, nn.Module) \
        else model_or_factory()
    names = tuple(layers) if layers is not None else _default_layers(randomised)
    modules = dict(randomised.named_modules())
    for name in names:
        check_requirement(
            name in modules and callable(getattr(modules[name], "reset_parameters", None)),
            f"{name!r} is not a module with reset_parameters() in the model.")
    check_requirement(bool(names), "The model has no layer with reset_parameters() to randomise.")
    reference = _attributions_of(explain(trained)).abs()
    correlations = [rank_correlation(reference, reference)]
    for step, name in enumerate(names, start=1):
        reinitialise(modules[name], torch.Generator().manual_seed(seed + step))
        current = _attributions_of(explain(randomised)).abs()
        correlations.append(rank_correlation(reference, current))
    stacked = torch.stack(correlations)
    return RandomisationCheck(names, stacked, stacked.nanmean(dim=1))


def clean_copy(model: nn.Module) -> nn.Module:
    """A deep copy without the hooks the original carries at the moment of copying.

    Another session may be running IG2 on the shared model, whose forward hook a plain
    ``deepcopy`` would inherit and keep feeding.
    """
    copied = copy.deepcopy(model)
    for module in copied.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
                      module._backward_pre_hooks, module._forward_hooks_with_kwargs,
                      module._forward_hooks_always_called, module._forward_pre_hooks_with_kwargs):
            hooks.clear()
    return copied


_NORMALISATION_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@torch.no_grad()
def reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draw ``module``'s own parameters from ``generator``, never from torch's global RNG
    (reseeding that would roll back other sessions' random streams).

    Weights (2-D and up) follow ``reset_parameters``' default for linear and convolution layers,
    Kaiming-uniform with a = sqrt(5); 1-D parameters are uniform in +-1/sqrt(fan_in); embeddings
    are standard normal. Normalisation layers have no randomness: their own reset is used.
    """
    if isinstance(module, _NORMALISATION_LAYERS):
        module.reset_parameters()
        return
    own = dict(module.named_parameters(recurse=False))
    weights = [p for p in own.values() if p.dim() >= 2]
    fan_in = nn.init._calculate_fan_in_and_fan_out(weights[0])[0] if weights else 1
    for parameter in own.values():
        fresh = torch.empty(parameter.shape, dtype=parameter.dtype)
        if isinstance(module, nn.Embedding):
            fresh.normal_(generator=generator)
        elif parameter.dim() >= 2:
            nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=generator)
        else:
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            fresh.uniform_(-bound, bound, generator=generator)
        parameter.copy_(fresh.to(parameter.device))


def _default_layers(model: nn.Module) -> tuple[str, ...]:
    found = [name for name, module in model.named_modules()
             if callable(getattr(module, "reset_parameters", None))
             and any(True for _ in module.parameters(recurse=False))]
    return tuple(reversed(found))


def _attributions_of(value: Any) -> torch.Tensor:
    tensor = getattr(value, "attributions", value)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError("explain must return a tensor or a result with .attributions.")
    return tensor.detach()


# -- agreement with expected features -------------------------------------------------------------

@dataclass(frozen=True)
class Agreement:
    """How an attribution map agrees with what is expected to matter, per explicand [B].

    ``precision_at_k``: share of the k top-scored features that are expected. ``rank_correlation``:
    Spearman between scores and the expectation (true contributions, or the 0/1 mask).
    ``positive_share_in_mask``: share of the positive attribution that falls in the expected
    set (NaN without positive attribution). ``pointing_game``: the top-scored feature is
    expected. Scores are |attributions| when ``absolute`` (the default), else signed.
    """

    k: int
    precision_at_k: torch.Tensor
    rank_correlation: torch.Tensor
    positive_share_in_mask: torch.Tensor
    pointing_game: torch.Tensor  # bool


def agreement(attributions: torch.Tensor, expected: torch.Tensor | Sequence[int], k: int,
              absolute: bool = True) -> Agreement:
    """Compare ``attributions`` [B, ...] with ``expected``, broadcastable to them:

    * a bool mask of expected features;
    * a float tensor of true contributions (the expected set is then the k largest |values|);
    * a sequence of flat feature indices shared by all rows.
    """
    check_attribution_batch(attributions)
    n = attributions.shape[0]
    flat = attributions.detach().reshape(n, -1).double()
    n_features = flat.shape[1]
    check_int_in_range("k", k, 1, n_features)
    truth = _expected_as_tensor(expected, attributions)
    if truth.dtype == torch.bool:
        mask, target_values = truth, truth.double()
    else:
        magnitude = truth.abs()
        mask = torch.zeros_like(truth, dtype=torch.bool).scatter_(
            1, torch.topk(magnitude, k, dim=1).indices, True)
        target_values = magnitude if absolute else truth
    scores = flat.abs() if absolute else flat
    top = torch.topk(scores, k, dim=1).indices
    precision = mask.gather(1, top).double().mean(dim=1)
    positive = flat.clamp_min(0)
    total_positive = positive.sum(dim=1)
    share = (positive * mask).sum(dim=1) / torch.where(total_positive > 0, total_positive,
                                                       float("nan"))
    pointing = mask.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)
    return Agreement(k, precision, rank_correlation(scores, target_values), share, pointing)


def _expected_as_tensor(expected: torch.Tensor | Sequence[int], attributions: torch.Tensor
                        ) -> torch.Tensor:
    n = attributions.shape[0]
    n_features = attributions[0].numel()
    if not isinstance(expected, torch.Tensor):
        indices = torch.as_tensor(list(expected), dtype=torch.long)
        check_feature_indices(indices, n_features)
        mask = torch.zeros(n_features, dtype=torch.bool)
        mask[indices] = True
        return mask.to(attributions.device).expand(n, -1)
    try:
        if expected.dim() == attributions.dim():
            broadcast = torch.broadcast_to(expected, attributions.shape)
        else:
            broadcast = torch.broadcast_to(expected, attributions.shape[1:]).unsqueeze(0).expand(
                n, *attributions.shape[1:])
    except RuntimeError as error:
        raise ValueError(f"expected of shape {tuple(expected.shape)} does not broadcast to "
                         f"attributions {tuple(attributions.shape)}.") from error
    broadcast = broadcast.reshape(n, -1).to(attributions.device)
    return broadcast if broadcast.dtype == torch.bool else broadcast.double()


# -- explanation sensitivity ----------------------------------------------------------------------

def sensitivity_max(explain: Callable[..., Any], inputs: torch.Tensor, radius: float = 0.02,
                    n_samples: int = 10, seed: int = 0, batch_size: int | None = None,
                    **explain_kwargs: Any) -> torch.Tensor:
    """Max-sensitivity [B] (Yeh et al., 2019) through ``captum.metrics.sensitivity_max``:
    the largest ``||e(x + d) - e(x)|| / ||e(x)||`` over ``n_samples`` draws of ``d`` uniform in
    the L-infinity ball of ``radius``. Lower means a more stable explanation.

    ``explain(inputs, **explain_kwargs)`` returns attributions (a tensor or a result with
    ``.attributions``); Captum repeats per-row kwargs such as ``target`` for the perturbed rows
    and evaluates ``batch_size`` perturbed rows per call. The draws come from a generator seeded
    with ``seed`` (Captum's default uses the global RNG); Captum draws per batch, so they also
    depend on ``batch_size``. Costs ``n_samples + 1`` explanations
    per row, so it is cheap for gradients and expensive for IG.
    """
    from captum.metrics import sensitivity_max as captum_sensitivity_max

    check_positive_int("n_samples", n_samples)
    check_positive_number("radius", radius)
    generator = torch.Generator().manual_seed(seed)

    def perturb(rows: torch.Tensor | tuple[torch.Tensor, ...], perturb_radius: float
                ) -> torch.Tensor:
        rows = _single_tensor(rows)
        noise = torch.empty(rows.shape, dtype=rows.dtype).uniform_(
            -perturb_radius, perturb_radius, generator=generator)
        return rows + noise.to(rows.device)

    def explanation(rows: torch.Tensor | tuple[torch.Tensor, ...], **kwargs: Any
                    ) -> torch.Tensor | tuple[torch.Tensor]:
        attributions = _attributions_of(explain(_single_tensor(rows), **kwargs))
        return (attributions,) if isinstance(rows, tuple) else attributions

    return captum_sensitivity_max(explanation, inputs, perturb_func=perturb, perturb_radius=radius,
                                  n_perturb_samples=n_samples, max_examples_per_batch=batch_size,
                                  **explain_kwargs)


def _single_tensor(rows: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Captum hands single-input batches over as 1-tuples."""
    return rows[0] if isinstance(rows, tuple) else rows
