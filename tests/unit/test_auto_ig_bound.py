"""Auto IG's reported per-feature convergence is an upper bound of the true error, checked
against an exact float64 reference (kinks located, integrated piece by piece) on ReLU nets whose
kinks crowd near the baseline, where the old estimate under-reported; and a run whose
completeness gap is below float resolution stops on the per-feature estimate."""

from __future__ import annotations

import pytest
import torch

from attribution_core import integrated_gradients
from benchmarks.auto_ig_oracle import NETS, cancelling_case, per_feature_error, problems


@pytest.mark.parametrize("tolerance", [0.05, 0.02, 0.01])
def test_reported_convergence_bounds_the_true_error_on_relu_nets(tolerance: float) -> None:
    found = problems(n_models=2, n_inputs=12, nets=(NETS[0],), seed=0)
    under = []
    for problem in found:
        auto = integrated_gradients(problem.model32, problem.x32, target=problem.targets,
                                    n_steps="auto", tolerance=tolerance)
        true = per_feature_error(auto.attributions, problem.reference)
        reported = auto.convergence.double()
        under += [(round(float(t), 4), round(float(r), 4))
                  for t, r in zip(true, reported, strict=True) if t > r]
        assert problem.reference_error < 1e-6, "the reference itself is exact"
    assert not under, f"true error above the reported convergence (true, reported): {under}"


def test_cancelling_attributions_near_zero_stop_on_the_per_feature_estimate() -> None:
    row = cancelling_case(0.01)
    assert max(row["evaluations"]) < 100, \
        f"a gap below float resolution must not exhaust the budget: {row['evaluations']}"
    assert row["convergence_underreports"] == 0 and max(row["true_per_feature_error"]) <= 0.01, \
        f"and the map is right, as reported: {row}"


def test_all_zero_attributions_converge_at_once_in_float32() -> None:
    class Bowl(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x ** 2).sum(1) + 5

    x = torch.tensor([[1.0, -1.0, 0.5]])
    result = integrated_gradients(Bowl(), x, baselines=-x * torch.tensor([1.0, 1.0, -1.0]),
                                  n_steps="auto", max_evaluations=512)
    assert int(result.n_evaluations[0]) < 64, \
        f"x_i^2 = b_i^2 for every feature: {int(result.n_evaluations[0])} evaluations"
