"""The verdict beside the completeness gauge: a right sum over a moving map is called out."""

from __future__ import annotations

import math

import torch
from torch import nn

from attribution_core import integrated_gradients, with_convergence
from dashboard.widgets.trust import map_convergence


class CancellingSines(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(6 * x[:, 0]) - torch.sin(6 * x[:, 1]) + 0.1 * x[:, 2]


def test_green_sum_over_a_moving_map_is_flagged() -> None:
    x = torch.ones(1, 3, dtype=torch.float64)
    fine = integrated_gradients(CancellingSines(), x, n_steps=8, method="riemann_trapezoid")
    coarse = integrated_gradients(CancellingSines(), x, n_steps=4, method="riemann_trapezoid")
    verdict = map_convergence(with_convergence(fine, coarse))
    assert verdict.colour == "red" and verdict.sum_right_map_not, \
        f"a perfect sum over a map that moves by {verdict.value:.1%} must be called out"
    assert "between 4 and 8 steps" in verdict.summary, verdict.summary


def test_converged_map_and_unknown_convergence() -> None:
    x = torch.ones(1, 3, dtype=torch.float64)
    auto = integrated_gradients(CancellingSines(), x, n_steps="auto", tolerance=0.005)
    verdict = map_convergence(auto)
    assert verdict.colour == "green" and not verdict.sum_right_map_not, verdict.summary
    assert "adaptive grid" in verdict.summary, verdict.summary
    unknown = map_convergence(integrated_gradients(CancellingSines(), x, n_steps=8))
    assert unknown.colour == "grey" and math.isnan(unknown.value), \
        "without a second run the page says it does not know"
