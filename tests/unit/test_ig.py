"""Integrated Gradients: closed forms, completeness, Captum agreement, batching, auto steps."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from attribution_core import integrated_gradients
from attribution_core.quadrature import QUADRATURE_METHODS
from tests.unit.models_for_tests import CountingModule, MaskedEmbeddingClassifier, mlp, small_cnn

pytestmark = pytest.mark.usefixtures("float64_default")


class Linear(nn.Module):
    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.weights = nn.Parameter(weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weights


class TwoRelu(nn.Module):
    """f(x1, x2) = ReLU(ReLU(x1) - 1 - ReLU(x2)) from the Integrated Gradients paper (section 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.relu(x[:, 0]) - 1 - torch.relu(x[:, 1]))


class Quadratic(nn.Module):
    """f(x) = x^T A x / 2 + b^T x with symmetric A: its gradient is linear along any line."""

    def __init__(self, n: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        a = torch.randn(n, n, generator=generator)
        self.a = nn.Parameter(a + a.T)
        self.b = nn.Parameter(torch.randn(n, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x @ self.a) * x).sum(1) + x @ self.b


@pytest.mark.parametrize("method", QUADRATURE_METHODS)
def test_linear_model_is_exact_for_every_rule(method: str) -> None:
    weights = torch.tensor([2.0, -1.0, 0.5, 3.0])
    x = torch.tensor([[1.0, 2.0, -3.0, 0.25], [0.0, 1.0, 1.0, -1.0]])
    base = torch.tensor([[0.5, -1.0, 0.0, 1.0]])
    res = integrated_gradients(Linear(weights), x, base, n_steps=7, method=method)
    expected = weights * (x - base)
    assert torch.allclose(res.attributions, expected, rtol=0, atol=1e-14), (
        f"{method}: IG of a linear model must be w * (x - x') exactly"
    )
    assert res.delta.abs().max() < 1e-13, f"{method}: completeness is exact for a linear model"


def test_two_relu_example_midpoint_exact_and_auto_converges() -> None:
    x, base = torch.tensor([[3.0, 1.0]]), torch.zeros(1, 2)
    # The kink sits at alpha = 0.5: with an even number of midpoint nodes, no node straddles it.
    res = integrated_gradients(TwoRelu(), x, base, n_steps=8, method="riemann_middle")
    assert torch.allclose(res.attributions, torch.tensor([[1.5, -0.5]]), atol=1e-14), (
        f"IG paper example: expected (1.5, -0.5), got {res.attributions.tolist()}"
    )
    auto = integrated_gradients(TwoRelu(), x, base, n_steps="auto", tolerance=1e-6)
    assert auto.relative_delta.item() <= 1e-6, "auto must reach its tolerance"
    assert torch.allclose(auto.attributions, torch.tensor([[1.5, -0.5]]), atol=2e-6), (
        f"auto IG must approach (1.5, -0.5), got {auto.attributions.tolist()}"
    )
    fixed = integrated_gradients(TwoRelu(), x, base, n_steps=65, method="riemann_trapezoid")
    assert int(auto.n_evaluations.item()) < 65 and fixed.relative_delta.item() > 1e-6, (
        "refining only around the kink must beat a uniform 65-node grid"
    )


@pytest.mark.parametrize("method", ["riemann_middle", "riemann_trapezoid", "gausslegendre"])
def test_quadratic_closed_form(method: str) -> None:
    model = Quadratic(5)
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    base = torch.randn(1, 5, generator=torch.Generator().manual_seed(2))
    res = integrated_gradients(model, x, base, n_steps=5, method=method)
    with torch.no_grad():
        expected = (x - base) * (0.5 * ((x + base) @ model.a) + model.b)
    assert torch.allclose(res.attributions, expected, rtol=0, atol=1e-12), (
        f"{method} integrates a linear gradient exactly: IG = (x-x') * (A(x+x')/2 + b)"
    )


def test_quadratic_left_riemann_matches_its_closed_form_bias() -> None:
    model, n = Quadratic(4), 10
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(5))
    base = torch.zeros(1, 4)
    res = integrated_gradients(model, x, base, n_steps=n, method="riemann_left")
    with torch.no_grad():
        diff = x - base
        expected = diff * (base @ model.a + (n - 1) / (2 * n) * (diff @ model.a) + model.b)
    assert torch.allclose(res.attributions, expected, atol=1e-12), (
        "left Riemann sum of a linear integrand has the closed form A x' + A d (n-1)/(2n) + b"
    )


@pytest.mark.parametrize("make_model,shape", [(mlp, (6, 10)), (small_cnn, (6, 1, 8, 8))])
def test_completeness_error_falls_with_steps(make_model, shape: tuple[int, ...]) -> None:
    model = make_model(seed=2)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(7))
    errors = []
    for steps in (4, 32, 256):
        res = integrated_gradients(model, x, None, target=1, n_steps=steps,
                                   method="riemann_trapezoid")
        with torch.no_grad():
            f_x = model(x)[:, 1]
            f_base = model(torch.zeros_like(x))[:, 1]
        independent = res.attributions.flatten(1).sum(1) - (f_x - f_base)
        assert torch.allclose(res.delta, independent, atol=1e-12), (
            "delta must equal sum(attributions) - (f(x) - f(x')) computed independently"
        )
        errors.append(res.relative_delta.mean().item())
    assert errors[0] > errors[1] > errors[2], f"relative delta must fall with steps: {errors}"


def _captum(model: nn.Module, x: torch.Tensor, base: torch.Tensor, method: str, n: int,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    extra = None if mask is None else (mask,)
    return IntegratedGradients(model).attribute(
        x, base, target=2, n_steps=n, method=method, additional_forward_args=extra)


def _relative_max_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


@pytest.mark.parametrize("method", QUADRATURE_METHODS)
@pytest.mark.parametrize("kind", ["mlp", "cnn", "embedding"])
def test_agrees_with_captum(method: str, kind: str) -> None:
    generator = torch.Generator().manual_seed(11)
    mask = None
    if kind == "mlp":
        model, x = mlp(seed=4), torch.randn(5, 10, generator=generator)
    elif kind == "cnn":
        model, x = small_cnn(seed=4), torch.randn(3, 1, 8, 8, generator=generator)
    else:
        model = MaskedEmbeddingClassifier().double()
        x = torch.randn(4, 7, 8, generator=generator)
        mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4, [1] * 6 + [0]])
    base = 0.1 * torch.randn(x.shape, generator=generator)
    n = 24
    ours = integrated_gradients(
        model, x, base, target=2, n_steps=n, method=method,
        forward_kwargs=None if mask is None else {"attention_mask": mask},
    ).attributions
    theirs = _captum(model, x, base, method, n, mask)
    if method == "riemann_trapezoid":
        ours = ours * (n - 1) / n  # Captum's trapezoid weights sum to (n-1)/n, see README
    difference = _relative_max_difference(ours, theirs)
    assert difference < 1e-5, f"{kind}/{method}: differs from Captum by {difference:.2e}"


def test_chunked_equals_unchunked_and_call_count_proves_batching() -> None:
    counting = CountingModule(small_cnn(seed=5))
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    whole = integrated_gradients(counting, x, target=0, n_steps=20, batch_size=60)
    calls_whole = counting.calls
    counting.calls, counting.rows = 0, []
    chunked = integrated_gradients(counting, x, target=0, n_steps=20, batch_size=7)
    assert torch.allclose(whole.attributions, chunked.attributions, rtol=0, atol=1e-13), (
        "chunking must not change the result"
    )
    # 60 gradient rows in ceil(60 / 7) calls; the 6 endpoint rows (f(x), f(x')) do not fit the
    # last chunk's slack (4 + 6 > 7 + 2), so they take one no-grad call of their own.
    assert counting.calls == math.ceil(60 / 7) + 1, f"expected 10 calls, got {counting.calls}"
    assert counting.rows == [7] * 8 + [4, 6], f"rows per call: {counting.rows}"
    # In one 60-row batch, the endpoint rows fit the 10% slack and ride along: a single call.
    assert calls_whole == 1, f"endpoints must ride along in the only chunk, got {calls_whole}"


def test_trapezoid_reuses_path_endpoints_for_f() -> None:
    counting = CountingModule(mlp(seed=1))
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(3))
    res = integrated_gradients(counting, x, target=1, n_steps=9, method="riemann_trapezoid",
                               batch_size=36)
    assert counting.calls == 1, "alpha 0 and 1 are nodes: no extra forward for f(x), f(x')"
    with torch.no_grad():
        assert torch.allclose(res.f_inputs, counting.inner(x)[:, 1]), "f(x) from the path"


def test_auto_reaches_tolerance_and_equals_one_shot_on_final_grid() -> None:
    model = mlp(seed=8)
    x = torch.randn(3, 10, generator=torch.Generator().manual_seed(9))
    auto = integrated_gradients(model, x, target=0, n_steps="auto", tolerance=1e-3)
    assert (auto.relative_delta <= 1e-3).all(), f"tolerance not reached: {auto.relative_delta}"
    history = auto.convergence_relative_delta
    assert history is not None and history.shape[0] >= 2, "one row per refinement round"
    assert torch.allclose(history[-1], auto.relative_delta.cpu()), "last row is the final error"
    for b in range(3):
        replay = integrated_gradients(model, x[b:b + 1], target=0, alphas=auto.alphas[b])
        assert torch.allclose(replay.attributions, auto.attributions[b:b + 1], atol=1e-13), (
            f"explicand {b}: auto result must equal a one-shot run on its final grid"
        )
        assert int(auto.n_evaluations[b]) == auto.alphas[b].numel(), "each node evaluated once"


def test_auto_respects_evaluation_cap() -> None:
    x, base = torch.tensor([[3.0, 1.0]]), torch.zeros(1, 2)
    res = integrated_gradients(TwoRelu(), x, base, n_steps="auto", tolerance=1e-12,
                               max_evaluations=9)
    assert int(res.n_evaluations.item()) <= 9, "the cap bounds the evaluations"
    assert res.relative_delta.item() > 1e-12, "stopping at the cap is reported, not hidden"


def test_progress_reports_monotone_up_to_total() -> None:
    seen: list[tuple[int, int]] = []
    integrated_gradients(mlp(), torch.randn(2, 10), target=0, n_steps=10, batch_size=6,
                         progress=lambda done, total: seen.append((done, total)))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen), "progress must not go backwards"
    assert seen[-1] == (20, 20), f"progress must end at the total, got {seen[-1]}"


def test_float32_and_scalar_output_model() -> None:
    model = nn.Sequential(nn.Linear(5, 1)).float()
    x = torch.randn(2, 5, dtype=torch.float32)
    res = integrated_gradients(model, x, n_steps=8)
    assert res.attributions.dtype == torch.float32, "results keep the input dtype"
    assert res.relative_delta.max() < 1e-5, "a linear model is exact up to float32 rounding"


@pytest.mark.parametrize("kwargs,message", [
    ({"method": "simpson"}, "Unknown method"),
    ({"n_steps": 2.5}, "n_steps"),
    ({"baselines": torch.zeros(3, 3)}, "broadcast"),
    ({"n_steps": "auto", "tolerance": 2.0}, "tolerance"),
    ({"batch_size": 0}, "batch_size"),
    ({"target": [0, 1, 2]}, "target"),
])
def test_invalid_arguments_get_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        integrated_gradients(mlp(), torch.randn(2, 10), **{"target": 0, **kwargs})


def test_multi_output_without_target_is_refused() -> None:
    with pytest.raises(ValueError, match="target"):
        integrated_gradients(mlp(), torch.randn(2, 10), n_steps=4)


def test_non_contiguous_inputs_are_accepted() -> None:
    model = small_cnn(seed=1, channels=3)
    x = torch.randn(2, 8, 8, 3).permute(0, 3, 1, 2)  # what an HWC -> CHW image transform gives
    assert not x.is_contiguous(), "the test needs a non-contiguous input"
    res = integrated_gradients(model, x, target=0, n_steps=12)
    reference = integrated_gradients(model, x.contiguous(), target=0, n_steps=12)
    assert torch.allclose(res.attributions, reference.attributions, atol=1e-13), (
        "memory layout must not change the result"
    )
