"""The synthetic Gaussian benchmarks of Liu et al., "Synthetic Benchmarks for Scientific
Research in Explainable Machine Learning" (NeurIPS 2021 Datasets track, the xai-bench code),
implemented here from their published definitions.

Features: X ~ N(0, Sigma) in d = 5 dimensions, Sigma = I + rho (11^T - I). Targets, each with
Gaussian noise of sd 0.01 added and then standardised (minus the set's mean, over its sd):

* ``gaussianLinear``: X w with w = (4, 3, 2, 1, 0);
* ``gaussianNonLinearAdditive``: sin(x1) + |x2| + x3^2 + exp(-x4) (x5 unused);
* ``gaussianPiecewiseConstant``: p1(x1) + p2(x2) + p3(x3) (x4, x5 unused) with
  p1 = -1 below 0 and +1 from 0; p2 = -2 below -0.5, -1 on [-0.5, 0), +1 on [0, 0.5), +2 from
  0.5; p3 = 2 cos(pi x3) truncated towards zero to an integer, with 0 replaced by 1.
  (The reference code's condition for p2's second piece, ``(x >= 0.5) * (x < 0)``, can never
  hold, so there that piece falls to 0; we follow the stated four-piece definition.)

:class:`GaussianConditional` draws the Gaussian conditional X_{not S} | X_S = x_S for every
coalition S, the distribution the benchmark's ground truth and its observational metrics use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DATASETS: tuple[str, ...] = ("gaussianLinear", "gaussianNonLinearAdditive",
                             "gaussianPiecewiseConstant")
RHOS: tuple[float, ...] = (0.0, 0.5)
DIMENSION = 5
LINEAR_WEIGHTS = (4.0, 3.0, 2.0, 1.0, 0.0)
NOISE_SD = 0.01


def covariance(rho: float, dimension: int = DIMENSION) -> torch.Tensor:
    """Sigma = I + rho (11^T - I), float64."""
    if not -1.0 / (dimension - 1) < rho < 1.0:
        raise ValueError(f"rho must make Sigma positive definite, got {rho!r}.")
    ones = torch.ones(dimension, dimension, dtype=torch.float64)
    eye = torch.eye(dimension, dtype=torch.float64)
    return eye + rho * (ones - eye)


def noiseless_target(name: str, features: torch.Tensor) -> torch.Tensor:
    """The benchmark's function of the features [N, 5] -> [N], before noise and scaling."""
    x = features.double()
    if name == "gaussianLinear":
        return x @ torch.tensor(LINEAR_WEIGHTS, dtype=torch.float64)
    if name == "gaussianNonLinearAdditive":
        return torch.sin(x[:, 0]) + x[:, 1].abs() + x[:, 2].square() + torch.exp(-x[:, 3])
    if name == "gaussianPiecewiseConstant":
        p1 = torch.where(x[:, 0] < 0, -1.0, 1.0).double()
        x2 = x[:, 1]
        p2 = torch.where(x2 < -0.5, -2.0, torch.where(x2 < 0, -1.0, torch.where(x2 < 0.5, 1.0,
                                                                                   2.0)))
        p3 = torch.trunc(2.0 * torch.cos(math.pi * x[:, 2]))
        p3 = torch.where(p3 == 0, 1.0, p3)
        return p1 + p2.double() + p3
    raise ValueError(f"Unknown benchmark data set {name!r}; choose one of {', '.join(DATASETS)}.")


@dataclass(frozen=True)
class XaiBenchData:
    """One seeded draw: ``features`` [N, 5] float64 and the standardised ``target`` [N]."""

    name: str
    rho: float
    features: torch.Tensor
    target: torch.Tensor
    target_mean: float  # of the noisy target before standardising
    target_sd: float
    seed: int


def make_xai_bench(name: str, rho: float, n_rows: int, seed: int) -> XaiBenchData:
    """``n_rows`` rows of benchmark ``name`` at correlation ``rho`` from a private generator."""
    if name not in DATASETS:
        raise ValueError(f"Unknown benchmark data set {name!r}; choose one of "
                         f"{', '.join(DATASETS)}.")
    if not isinstance(n_rows, int) or n_rows < 2:
        raise ValueError(f"n_rows must be an int >= 2, got {n_rows!r}.")
    generator = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(covariance(rho))
    standard = torch.randn(n_rows, DIMENSION, generator=generator, dtype=torch.float64)
    features = standard @ chol.T
    noisy = noiseless_target(name, features) + NOISE_SD * torch.randn(
        n_rows, generator=generator, dtype=torch.float64)
    mean, sd = float(noisy.mean()), float(noisy.std(unbiased=False))
    return XaiBenchData(name=name, rho=float(rho), features=features,
                        target=(noisy - mean) / sd, target_mean=mean, target_sd=sd, seed=seed)


def coalition_members(mask: int, dimension: int = DIMENSION) -> list[int]:
    """Feature indices in the coalition encoded by the bits of ``mask``."""
    return [i for i in range(dimension) if mask >> i & 1]


class GaussianConditional:
    """Samples of X | X_S = x_S for X ~ N(0, Sigma), every coalition S (a bit mask).

    By Matheron's rule: draw X~ ~ N(0, Sigma) once, then X_free = X~_free + Sigma_fs
    Sigma_ss^-1 (x_S - X~_S) has exactly the conditional law. One seeded set of joint draws
    serves every coalition and every explicand (common random numbers): coalitions that
    differ by one feature the model ignores get identical values, so such a feature's Shapley
    value is exactly 0, and differences between cases are not sampling noise. The draws are
    antithetic (z and -z), so every conditional sample mean is exact and a linear model's
    coalition values carry no sampling error at all.
    """

    def __init__(self, sigma: torch.Tensor, n_samples: int, seed: int) -> None:
        if not isinstance(n_samples, int) or n_samples < 2 or n_samples % 2:
            raise ValueError(f"n_samples must be an even int >= 2, got {n_samples!r}.")
        self.sigma = sigma.double()
        self.dimension = sigma.shape[0]
        self.n_samples = n_samples
        half = torch.randn(n_samples // 2, self.dimension, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(seed))
        self.joint = torch.cat([half, -half]) @ torch.linalg.cholesky(self.sigma).T
        self._gains: list[torch.Tensor] = []
        for mask in range(2 ** self.dimension):
            fixed = coalition_members(mask, self.dimension)
            free = [i for i in range(self.dimension) if i not in fixed]
            if fixed and free:
                s_fs = self.sigma[free][:, fixed]
                s_ss = self.sigma[fixed][:, fixed]
                self._gains.append(torch.linalg.solve(s_ss, s_fs.T).T)  # [free, fixed]
            else:
                self._gains.append(torch.zeros(len(free), len(fixed), dtype=torch.float64))

    def samples(self, x: torch.Tensor, mask: int) -> torch.Tensor:
        """[B, n_samples, d] draws of X given X_S = x_S for each explicand row of ``x`` [B, d]."""
        fixed = coalition_members(mask, self.dimension)
        free = [i for i in range(self.dimension) if i not in fixed]
        x = x.double()
        out = self.joint.unsqueeze(0).repeat(x.shape[0], 1, 1)
        if fixed:
            gap = x[:, fixed].unsqueeze(1) - self.joint[:, fixed].unsqueeze(0)  # [B, n, |S|]
            if free:
                out[:, :, free] += gap @ self._gains[mask].T
            out[:, :, fixed] = x[:, fixed].unsqueeze(1)
        return out
