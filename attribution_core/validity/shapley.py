"""Ground truth and metrics of the xai-bench benchmarks, from one table of coalition values.

v(S) = E[f(X) | X_S = x_S] for every coalition S of the d features (2^d of them), estimated
from samples of the Gaussian conditional. From that table:

* the exact Shapley values phi_i = sum_S |S|! (d - |S| - 1)! / d! (v(S + i) - v(S));
* ``faithfulness`` (xai-bench's default, "dec", after Alvarez-Melis & Jaakkola 2018): the
  Pearson correlation of |attribution_j| with |f(x) - v(all features but j)|;
* ``monotonicity`` (xai-bench's default, "inc" averaged, after Luss et al. 2019): add features
  from the smallest |attribution| to the largest; the share of consecutive steps whose change
  |v(S_k+1) - v(S_k)| does not shrink. (The reference code stores each step at the index of the
  feature added rather than at the step's position; we use the step order the definition says.)
* ``shapley_corr`` (Pearson correlation with the ground truth, NaN as 0 like xai-bench) and
  ``mse`` (mean squared difference from it, over the d features).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from attribution_core.validity.xai_bench import GaussianConditional

Model = Callable[[torch.Tensor], torch.Tensor]
ROWS_PER_CALL = 262_144


def coalition_values(model: Model, x: torch.Tensor, conditional: GaussianConditional
                     ) -> torch.Tensor:
    """v [B, 2^d] (float64): the model's mean output over the conditional samples per coalition.

    The full coalition is f(x) itself (its conditional is the point x)."""
    n_coalitions = 2 ** conditional.dimension
    values = torch.empty(x.shape[0], n_coalitions, dtype=torch.float64)
    dtype = _model_dtype(model)
    with torch.no_grad():
        for mask in range(n_coalitions):
            if mask == n_coalitions - 1:
                values[:, mask] = model(x.to(dtype)).reshape(-1).double()
                continue
            samples = conditional.samples(x, mask).reshape(-1, x.shape[1]).to(dtype)
            outputs = torch.cat([model(samples[i:i + ROWS_PER_CALL]).reshape(-1)
                                 for i in range(0, samples.shape[0], ROWS_PER_CALL)])
            values[:, mask] = outputs.double().view(x.shape[0], -1).mean(dim=1)
    return values


def _model_dtype(model: Model) -> torch.dtype:
    parameters = getattr(model, "parameters", None)
    if parameters is not None:
        for parameter in parameters():
            return parameter.dtype
    return torch.float64


def shapley_from_values(values: torch.Tensor) -> torch.Tensor:
    """Exact Shapley values [B, d] from coalition values [B, 2^d] (bit i = feature i)."""
    n_coalitions = values.shape[1]
    d = n_coalitions.bit_length() - 1
    if 2 ** d != n_coalitions:
        raise ValueError(f"values must have 2^d columns, got {n_coalitions}.")
    phi = torch.zeros(values.shape[0], d, dtype=torch.float64)
    for i in range(d):
        for mask in range(n_coalitions):
            if mask >> i & 1:
                continue
            size = bin(mask).count("1")
            weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            phi[:, i] += weight * (values[:, mask | 1 << i] - values[:, mask])
    return phi


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation [B]; 0 where either row is constant (xai-bench's rule)."""
    a = a.double() - a.double().mean(dim=1, keepdim=True)
    b = b.double() - b.double().mean(dim=1, keepdim=True)
    denominator = (a.square().sum(1) * b.square().sum(1)).sqrt()
    corr = (a * b).sum(1) / torch.where(denominator > 0, denominator, 1.0)
    return torch.where(denominator > 1e-300, corr, 0.0)


def shapley_corr(attributions: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-case Pearson correlation with the ground-truth Shapley values [B]."""
    return pearson_rows(attributions, truth)


def shapley_mse(attributions: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-case mean squared difference from the ground truth over the features [B]."""
    return (attributions.double() - truth.double()).square().mean(dim=1)


def faithfulness(attributions: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Per-case corr(|a_j|, |f(x) - v(all but j)|) [B]; higher is better."""
    d = attributions.shape[1]
    full = values.shape[1] - 1
    drops = torch.stack([(values[:, full] - values[:, full & ~(1 << j)]).abs()
                         for j in range(d)], dim=1)
    return pearson_rows(attributions.abs(), drops)


def monotonicity(attributions: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Per-case share [B] of the d-1 consecutive steps, adding features from the smallest
    |attribution| up, whose output change does not shrink; higher is better."""
    order = torch.argsort(attributions.abs(), dim=1, stable=True)
    n, d = order.shape
    masks = torch.zeros(n, d + 1, dtype=torch.long)
    for step in range(d):
        masks[:, step + 1] = masks[:, step] | (1 << order[:, step])
    path = values.gather(1, masks)
    changes = path.diff(dim=1).abs()
    return (changes.diff(dim=1) >= 0).double().mean(dim=1)


def ground_truth(model: Model, x: torch.Tensor, conditional: GaussianConditional
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(Shapley values [B, d], coalition values [B, 2^d]) of ``model`` at rows ``x``."""
    values = coalition_values(model, x, conditional)
    return shapley_from_values(values), values
