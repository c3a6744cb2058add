"""The core stays exact: batch-independent IG2, a per-feature stopping rule for auto IG, checked
targets, no global RNG reseeding, memory planned from activations, float32+ accumulation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attribution_core import ig2, integrated_gradients
from attribution_core.engine import GradientEngine
from attribution_core.methods.ig import attribution_change, with_convergence
from attribution_core.metrics import randomisation_check
from tests.unit.models_for_tests import mlp, small_cnn


class CancellingSines(nn.Module):
    """f = sin 6x1 - sin 6x2 + 0.1 x3: per-feature trapezoid errors cancel in the sum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(6 * x[:, 0]) - torch.sin(6 * x[:, 1]) + 0.1 * x[:, 2]


def _relative_error(a: torch.Tensor, reference: torch.Tensor) -> float:
    return float((a - reference).abs().max() / reference.abs().max())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_auto_bounds_the_per_feature_error_when_errors_cancel(dtype: torch.dtype) -> None:
    x = torch.ones(1, 3, dtype=dtype)
    exact = torch.tensor([[math.sin(6), -math.sin(6), 0.1]], dtype=torch.float64)
    result = integrated_gradients(CancellingSines(), x, n_steps="auto", tolerance=0.01)
    error = _relative_error(result.attributions.double(), exact)
    assert error <= 0.01, f"auto stopped {error:.3%} away from the exact attributions ({dtype})"
    assert result.convergence is not None and float(result.convergence[0]) <= 0.01, \
        "the reported per-feature convergence is within the tolerance"
    assert float(result.convergence[0]) >= error / 4, (
        f"the estimate ({float(result.convergence[0]):.2e}) must not pretend a far better map "
        f"than measured ({error:.2e})")


def test_auto_stops_quickly_when_f_x_equals_f_baseline() -> None:
    class Bowl(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x ** 2).sum(1) + 5

    x = torch.tensor([[1.0, -1.0, 0.5]], dtype=torch.float64)
    baseline = torch.tensor([[-1.0, 1.0, 0.5]], dtype=torch.float64)
    result = integrated_gradients(Bowl(), x, baselines=baseline, n_steps="auto",
                                  max_evaluations=512)
    assert int(result.n_evaluations[0]) < 64, \
        f"a zero gap must not exhaust the budget: {int(result.n_evaluations[0])} evaluations"
    torch.testing.assert_close(result.attributions, torch.zeros_like(x), atol=1e-9, rtol=0,
                               msg="x_i^2 - b_i^2 = 0 for every feature")


def test_fixed_steps_convergence_against_fewer_steps() -> None:
    x = torch.ones(1, 3, dtype=torch.float64)
    fine = integrated_gradients(CancellingSines(), x, n_steps=8, method="riemann_trapezoid")
    coarse = integrated_gradients(CancellingSines(), x, n_steps=4, method="riemann_trapezoid")
    assert float(fine.relative_delta[0]) < 1e-12, "the premise: completeness looks perfect"
    marked = with_convergence(fine, coarse)
    assert marked.convergence is not None and float(marked.convergence[0]) > 0.05, \
        "yet the map still moves by more than 5 % between 4 and 8 steps"
    assert torch.equal(marked.convergence, attribution_change(fine, coarse)), "one definition"
    assert marked.convergence_reference_steps == 4, "and it says against what"


def test_ig2_of_one_explicand_does_not_depend_on_its_batch_mates() -> None:
    model = mlp(seed=4)
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(3, 10, dtype=torch.float64, generator=generator)
    inputs[2] *= 6  # far from the others: a shared eta would change everyone's paths
    references = torch.randn(4, 10, dtype=torch.float64, generator=generator)
    batch = ig2(model, inputs, references, target=1, n_steps=16)
    for row in range(3):
        alone = ig2(model, inputs[row:row + 1], references, target=1, n_steps=16)
        torch.testing.assert_close(batch.attributions[row:row + 1], alone.attributions,
                                   rtol=1e-10, atol=1e-12,
                                   msg=f"explicand {row}: alone and in a batch must agree")
        assert float(batch.step_sizes[row]) == float(alone.step_sizes[0]), "own eta"


@pytest.mark.parametrize("target", [4, -1, [0, 7]])
def test_out_of_range_targets_are_a_clear_value_error(target: object) -> None:
    model = mlp(seed=1, n_out=4)
    x = torch.randn(2, 10, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"out of range: the model has 4 outputs"):
        integrated_gradients(model, x, target=target, n_steps=4)
    with pytest.raises(ValueError, match=r"out of range: the model has 4 outputs"):
        ig2(model, x, x.flip(0), target=target, n_steps=4)


def test_randomisation_check_leaves_the_global_rng_alone() -> None:
    model = small_cnn(seed=3)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(1234)
    expected_next = torch.rand(3)
    torch.manual_seed(1234)
    randomisation_check(model, lambda m: integrated_gradients(m, x, target=0, n_steps=4),
                        seed=5)
    assert torch.equal(torch.rand(3), expected_next), \
        "the check neither draws from nor reseeds torch's global generator"


def test_memory_plan_counts_activations_not_weights() -> None:
    model = nn.Sequential(nn.Linear(1000, 4000), nn.ReLU(), nn.Linear(4000, 10)).eval()
    engine = GradientEngine(model, 1, torch.device("cpu"), target=torch.tensor([0]))
    plan = engine.plan_batch(torch.randn(1, 1000), torch.tensor([0]))
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert plan.bytes_per_row < 200_000, \
        f"{plan.bytes_per_row} bytes per row planned; the weights alone are {weight_bytes}"


def test_low_precision_models_accumulate_in_float32() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 3).to(torch.bfloat16).eval()
    x = torch.randn(2, 64).to(torch.bfloat16)
    result = integrated_gradients(linear, x, target=1, n_steps=64)
    assert result.attributions.dtype == torch.float32, "attributions accumulate in float32"
    # IG of a linear model is w * (x - 0) exactly; f itself is rounded to bf16 (8 bits), so the
    # map, not the completeness figure, is what float32 accumulation must get right.
    exact = linear.weight[1].double() * x.double()
    error = _relative_error(result.attributions.double(), exact)
    assert error < 1e-5, f"bf16 quadrature weights must not bias the map: {error:.2e}"
