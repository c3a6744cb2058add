"""Synthetic tabular data whose true per-feature contributions are known row by row.

Features are Gaussian with non-zero means (so explaining against zero and against the mean
differ) and correlated pairs (so a method that smears credit onto a correlated neighbour shows).
The target is additive: ``y = E[y] + sum_i c_i(x) + noise`` with

* ``kind="linear"``:   ``c_i = w_i * (x_i - mean_i)``;
* ``kind="additive"``: ``c_i = w_i * (g_i(x_i) - E[g_i(x_i)])`` with ``g_i`` one of
  ``SHAPES`` (expectations by Gauss-Hermite quadrature, exact to float precision here).

These are the interventional Shapley values of the noiseless target (the expectation taken
over the feature's own distribution), the quantity IG from the mean baseline recovers exactly
for a linear function and GradientSHAP over the data recovers in expectation for an additive
one. Features with ``w_i = 0`` are irrelevant: their true contribution is exactly 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

SyntheticKind = Literal["linear", "additive"]
SHAPES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda v: v,
    "square": lambda v: v.square(),
    "sin": lambda v: torch.sin(2.0 * v),
    "tanh": lambda v: torch.tanh(2.0 * v),
    "abs": lambda v: v.abs(),
}
SHAPE_CYCLE = ("square", "sin", "linear", "tanh", "abs")
HERMITE_NODES = 80


@dataclass(frozen=True)
class SyntheticTabular:
    """One draw of the data set. ``contributions[r].sum() + intercept + noise[r] == target[r]``."""

    features: torch.Tensor  # [N, D]
    target: torch.Tensor  # [N]
    contributions: torch.Tensor  # [N, D] true per-feature contributions
    noise: torch.Tensor  # [N]
    intercept: float  # E[y]
    means: torch.Tensor  # [D] population means of the features
    stds: torch.Tensor  # [D]
    covariance: torch.Tensor  # [D, D]
    weights: torch.Tensor  # [D]; 0 marks an irrelevant feature
    shapes: tuple[str, ...]  # g_i per feature ("linear" throughout for kind="linear")
    kind: str
    seed: int
    split: int

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f"x{i}" for i in range(self.features.shape[1]))

    @property
    def relevant(self) -> torch.Tensor:
        """Bool [D]: features the target depends on."""
        return self.weights != 0


def make_synthetic_tabular(n_rows: int = 2000, kind: SyntheticKind = "linear",
                           n_features: int = 8, n_informative: int = 5,
                           correlation: float = 0.6, noise_std: float = 0.05, seed: int = 0,
                           split: int = 0, dtype: torch.dtype = torch.float64
                           ) -> SyntheticTabular:
    """Draw ``n_rows`` rows. The population (means, stds, weights, shapes) depends on ``seed``
    and the sizes only; ``split`` picks independent rows of that population (e.g. 0 for
    training, 1 for held-out rows).

    Features ``2j`` and ``2j + 1`` (for the first ``n_features // 2`` pairs, every other pair)
    have correlation ``correlation``; ``n_informative`` features get a non-zero weight.
    """
    if kind not in ("linear", "additive"):
        raise ValueError(f"kind must be 'linear' or 'additive', got {kind!r}.")
    if not isinstance(n_rows, int) or n_rows < 1:
        raise ValueError(f"n_rows must be a positive int, got {n_rows!r}.")
    if not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"n_features must be a positive int, got {n_features!r}.")
    if not isinstance(n_informative, int) or not 0 <= n_informative <= n_features:
        raise ValueError(f"n_informative must lie in 0..{n_features}, got {n_informative!r}.")
    if not -1.0 < correlation < 1.0:
        raise ValueError(f"correlation must lie in (-1, 1), got {correlation!r}.")
    if noise_std < 0:
        raise ValueError(f"noise_std must be non-negative, got {noise_std!r}.")
    population = _generator(seed)
    means = torch.empty(n_features, dtype=torch.float64).uniform_(-1.5, 1.5, generator=population)
    stds = torch.empty(n_features, dtype=torch.float64).uniform_(0.5, 1.2, generator=population)
    informative = torch.randperm(n_features, generator=population)[:n_informative]
    magnitudes = torch.empty(n_features, dtype=torch.float64).uniform_(0.5, 2.0,
                                                                        generator=population)
    signs = torch.randint(0, 2, (n_features,), generator=population).double() * 2 - 1
    weights = torch.zeros(n_features, dtype=torch.float64)
    weights[informative] = (magnitudes * signs)[informative]
    shapes = tuple("linear" if kind == "linear" else SHAPE_CYCLE[i % len(SHAPE_CYCLE)]
                   for i in range(n_features))

    correlation_matrix = torch.eye(n_features, dtype=torch.float64)
    for first in range(0, n_features - 1, 4):  # pairs (0, 1), (4, 5), ...
        correlation_matrix[first, first + 1] = correlation_matrix[first + 1, first] = correlation
    covariance = stds.view(-1, 1) * correlation_matrix * stds.view(1, -1)
    rows = _generator(seed, split + 1)
    standard = torch.randn(n_rows, n_features, generator=rows, dtype=torch.float64)
    features = means + standard @ torch.linalg.cholesky(covariance).T

    expectations = torch.tensor([_gaussian_expectation(SHAPES[shape], float(m), float(s))
                                 for shape, m, s in zip(shapes, means, stds, strict=True)],
                                dtype=torch.float64)
    transformed = torch.stack([SHAPES[shape](features[:, i]) for i, shape in enumerate(shapes)],
                              dim=1)
    contributions = weights * (transformed - expectations)
    intercept = 0.5 + float((weights * expectations).sum())
    noise = noise_std * torch.randn(n_rows, generator=rows, dtype=torch.float64)
    target = intercept + contributions.sum(dim=1) + noise
    return SyntheticTabular(
        features=features.to(dtype), target=target.to(dtype),
        contributions=contributions.to(dtype), noise=noise.to(dtype), intercept=intercept,
        means=means.to(dtype), stds=stds.to(dtype), covariance=covariance.to(dtype),
        weights=weights.to(dtype), shapes=shapes, kind=kind, seed=seed, split=split,
    )


def _generator(*entropy: int) -> torch.Generator:
    """Independent streams for (seed) and (seed, split) without overlapping integer seeds."""
    state = np.random.SeedSequence(list(entropy)).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def _gaussian_expectation(function: Callable[[torch.Tensor], torch.Tensor], mean: float,
                          std: float) -> float:
    """E[g(X)] for X ~ N(mean, std^2) by Gauss-Hermite (probabilists') quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(HERMITE_NODES)
    values = function(torch.as_tensor(mean + std * nodes, dtype=torch.float64)).numpy()
    return float((weights * values).sum() / math.sqrt(2.0 * math.pi))


# -- a tiny model for the tests ------------------------------------------------------------------

class Standardise(nn.Module):
    """Fixed affine input scaling, so the fitted model takes raw feature values."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass(frozen=True)
class FittedRegressor:
    model: nn.Module  # raw features [N, D] -> prediction [N, 1], eval mode, data's dtype
    train_r2: float
    feature_means: torch.Tensor  # [D] training-set means: the "feature means" baseline


def fit_mlp(data: SyntheticTabular, hidden: int = 32, steps: int = 600, lr: float = 0.01,
            seed: int = 0) -> FittedRegressor:
    """Fit a 2-hidden-layer ReLU MLP to ``data`` by full-batch Adam (about a second on a CPU).

    Meant for tests and demos: it sets torch's process-wide thread count to 1 while training.
    """
    features, target = data.features, data.target
    torch_seed = torch.Generator().manual_seed(seed)
    means, stds = features.mean(dim=0), features.std(dim=0).clamp_min(1e-8)
    layers = [nn.Linear(features.shape[1], hidden), nn.Linear(hidden, hidden),
              nn.Linear(hidden, 1)]
    for layer in layers:  # seeded init without touching the global RNG
        bound = 1.0 / math.sqrt(layer.in_features)
        with torch.no_grad():
            layer.weight.uniform_(-bound, bound, generator=torch_seed)
            layer.bias.uniform_(-bound, bound, generator=torch_seed)
    model = nn.Sequential(Standardise(means, stds), layers[0], nn.ReLU(), layers[1], nn.ReLU(),
                          layers[2]).to(features.dtype)
    # A model this small gains nothing from intra-op threads, and on a shared, busy CPU two
    # spinning threads made the fit 10-30x slower (measured: 0.7 s vs 7-24 s); one thread it is.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train(model, features, target, steps, lr)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return FittedRegressor(model, r2_score(model, data), means)


def _train(model: nn.Module, features: torch.Tensor, target: torch.Tensor, steps: int,
           lr: float) -> None:
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        loss = nn.functional.mse_loss(model(features).squeeze(1), target)
        loss.backward()
        optimiser.step()
        scheduler.step()


def r2_score(model: nn.Module, data: SyntheticTabular) -> float:
    """Coefficient of determination of ``model`` on ``data`` (e.g. a fresh draw)."""
    with torch.no_grad():
        residual = model(data.features).squeeze(1) - data.target
    return 1.0 - float(residual.square().mean() / data.target.var(unbiased=False))
