"""Comparison methods: agreement with Captum's classes, analytic gradients, fields, batching."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from captum.attr import (
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)
from torch import nn

from attribution_core import integrated_gradients
from attribution_core.methods import gradient_shap, gradient_x_input, saliency, smoothgrad
from tests.unit.models_for_tests import CountingModule, MaskedEmbeddingClassifier, mlp, small_cnn


@pytest.fixture(autouse=True)
def float64_default():
    """Exact comparisons need float64; restore the default so other modules are unaffected."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    with warnings.catch_warnings():
        # Captum warns that it switched requires_grad on for our plain input tensors.
        warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")
        yield
    torch.set_default_dtype(previous)


class Quadratic(nn.Module):
    """f(x) = x^T A x / 2 + b^T x with symmetric A: gradient A x + b, exactly."""

    def __init__(self, n: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        a = torch.randn(n, n, generator=generator)
        self.a = nn.Parameter(a + a.T)
        self.b = nn.Parameter(torch.randn(n, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x @ self.a) * x).sum(1) + x @ self.b


def _inputs(*shape: int, seed: int = 11) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _max_relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-300))


# -- agreement with Captum -----------------------------------------------------------------------

@pytest.mark.parametrize("use_abs", [False, True])
def test_saliency_matches_captum(use_abs: bool) -> None:
    model, x, target = mlp(seed=1), _inputs(5, 10), [0, 1, 2, 0, 1]
    ours = saliency(model, x, target=target, abs=use_abs)
    theirs = Saliency(model).attribute(x, target=target, abs=use_abs)
    assert torch.allclose(ours.attributions, theirs, rtol=0, atol=1e-14), (
        f"saliency(abs={use_abs}) must equal Captum's Saliency"
    )
    if not use_abs:
        assert bool((ours.attributions < 0).any()), "the default map keeps the gradient's sign"


def test_saliency_with_forward_kwargs_matches_captum_additional_args() -> None:
    model = MaskedEmbeddingClassifier(embed_dim=6, seed=2).double()
    embeds = _inputs(3, 5, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    ours = saliency(model, embeds, target=1, forward_kwargs={"attention_mask": mask},
                    batch_size=2)
    theirs = Saliency(model).attribute(embeds, target=1, abs=False,
                                       additional_forward_args=(mask,))
    assert torch.allclose(ours.attributions, theirs, rtol=0, atol=1e-14), (
        "each explicand's attention mask must follow it through the engine's chunks"
    )


def test_gradient_x_input_matches_captum_on_a_cnn() -> None:
    model, x = small_cnn(seed=4), _inputs(3, 1, 8, 8)
    ours = gradient_x_input(model, x, target=2)
    theirs = InputXGradient(model).attribute(x, target=2)
    assert torch.allclose(ours.attributions, theirs, rtol=0, atol=1e-14), (
        "gradient_x_input must equal Captum's InputXGradient"
    )


def test_smoothgrad_over_ig_matches_noise_tunnel_with_the_same_seed() -> None:
    model, x, baseline = mlp(seed=2), _inputs(4, 10), _inputs(1, 10, seed=5)
    ours = smoothgrad(model, x, baseline, target=2, n_samples=6, stdev=0.3, seed=7, n_steps=20)
    torch.manual_seed(7)  # Captum draws from the global generator
    theirs = NoiseTunnel(IntegratedGradients(model)).attribute(
        x, nt_samples=6, stdevs=0.3, target=2, baselines=baseline, n_steps=20,
        method="gausslegendre")
    difference = _max_relative(ours.attributions, theirs)
    # Captum casts its step sizes to float32 (integrated_gradients.py: ``.float()``), so even
    # plain IG differs from Captum by ~4e-9 relative here; the noise itself is identical.
    assert difference < 1e-7, f"SmoothGrad-IG differs from NoiseTunnel(IG) by {difference:.2e}"
    assert ours.method == "smoothgrad_ig", "the result names its method"


def test_smoothgrad_over_gradients_matches_noise_tunnel_over_saliency() -> None:
    model, x = mlp(seed=3), _inputs(3, 10)
    ours = smoothgrad(model, x, target=[0, 1, 2], inner="gradient", n_samples=9, stdev=0.5,
                      seed=21)
    torch.manual_seed(21)
    theirs = NoiseTunnel(Saliency(model)).attribute(x, nt_samples=9, stdevs=0.5,
                                                    target=[0, 1, 2], abs=False)
    assert torch.allclose(ours.attributions, theirs, rtol=0, atol=1e-14), (
        "SmoothGrad over gradients must equal NoiseTunnel(Saliency(abs=False))"
    )


@pytest.mark.parametrize("stdev", [0.0, 0.25])
def test_gradient_shap_matches_captum_with_a_fixed_seed(stdev: float) -> None:
    model, x, references = mlp(seed=5), _inputs(4, 10), _inputs(7, 10, seed=9)
    ours = gradient_shap(model, x, references, target=1, n_samples=11, stdev=stdev, seed=13)
    np.random.seed(13)  # Captum draws indices and alphas from NumPy's global generator
    torch.manual_seed(13)
    theirs = GradientShap(model).attribute(x, references, target=1, n_samples=11, stdevs=stdev)
    assert torch.allclose(ours.attributions, theirs, rtol=0, atol=1e-14), (
        f"GradientSHAP (stdev={stdev}) must equal Captum's GradientShap for the same seed"
    )


def test_seeded_methods_leave_the_global_random_state_alone() -> None:
    model, x, references = mlp(seed=5), _inputs(2, 10), _inputs(4, 10, seed=9)
    torch.manual_seed(99)
    np.random.seed(99)
    expected_torch, expected_numpy = torch.rand(3), np.random.rand(3)
    torch.manual_seed(99)
    np.random.seed(99)
    first = gradient_shap(model, x, references, target=0, n_samples=5, stdev=0.1, seed=1)
    smoothgrad(model, x, target=0, n_samples=3, stdev=0.1, seed=1, n_steps=4)
    assert torch.equal(torch.rand(3), expected_torch), "torch's global RNG must be untouched"
    assert np.array_equal(np.random.rand(3), expected_numpy), "NumPy's global RNG untouched"
    again = gradient_shap(model, x, references, target=0, n_samples=5, stdev=0.1, seed=1)
    other = gradient_shap(model, x, references, target=0, n_samples=5, stdev=0.1, seed=2)
    assert torch.equal(first.attributions, again.attributions), "same seed, same result"
    assert not torch.equal(first.attributions, other.attributions), "another seed differs"


# -- analytic checks on a quadratic model --------------------------------------------------------

def test_saliency_and_gradient_x_input_equal_the_analytic_gradient() -> None:
    model, x = Quadratic(6), _inputs(4, 6)
    gradient = x @ model.a.detach() + model.b.detach()
    assert torch.allclose(saliency(model, x).attributions, gradient, rtol=0, atol=1e-13), (
        "the saliency of x^T A x / 2 + b^T x is A x + b"
    )
    assert torch.allclose(saliency(model, x, abs=True).attributions, gradient.abs(), atol=1e-13), (
        "abs=True is |A x + b|"
    )
    assert torch.allclose(gradient_x_input(model, x).attributions, x * gradient, atol=1e-13), (
        "gradient x input is x * (A x + b)"
    )


def test_smoothgrad_gradient_of_a_quadratic_converges_to_its_gradient() -> None:
    # The gradient is affine, so its mean over noise is A (x + mean noise) + b: the error is
    # A @ mean noise, with a standard deviation of |A row| * stdev / sqrt(n) per feature.
    model, x, n, stdev = Quadratic(6), _inputs(2, 6), 4096, 0.5
    result = smoothgrad(model, x, inner="gradient", n_samples=n, stdev=stdev, seed=3)
    gradient = x @ model.a.detach() + model.b.detach()
    bound = 5 * model.a.detach().norm(dim=1) * stdev / math.sqrt(n)
    error = (result.attributions - gradient).abs()
    assert bool((error < bound).all()), f"error {error.max():.3g} above 5 standard errors"


def test_smoothgrad_ig_of_a_quadratic_adds_half_the_noise_variance_times_diag_a() -> None:
    # With d = x + e - x', IG_i = d_i (A (x + e + x') / 2 + b)_i exactly (the integrand is
    # linear); its mean over e ~ N(0, s^2 I) is IG_i(x) + s^2 A_ii / 2.
    model, x, baseline, stdev, n = Quadratic(5), _inputs(2, 5), _inputs(1, 5, seed=4), 0.3, 8192
    result = smoothgrad(model, x, baseline, n_samples=n, stdev=stdev, seed=5, n_steps=2)
    plain = integrated_gradients(model, x, baseline, n_steps=2)
    expected = plain.attributions + 0.5 * stdev**2 * torch.diagonal(model.a.detach())
    error = (result.attributions - expected).abs().max()
    # Monte Carlo: the per-sample terms have a spread of order |A| s (|x - x'| + s).
    scale = model.a.detach().abs().max() * stdev * ((x - baseline).abs().max() + stdev)
    assert error < 6 * scale / math.sqrt(n), f"error {error:.3g} beyond the Monte Carlo bound"
    assert plain.relative_delta.max() < 1e-12, "2-node Gauss-Legendre IG is exact here"


def test_gradient_shap_with_one_reference_is_ig_in_expectation() -> None:
    # One reference r: per-sample (x - r) (A (r + alpha (x - r)) + b); the mean over
    # alpha ~ U(0, 1) is IG from r. The deviation is (x - r) A (x - r) (mean alpha - 1/2).
    model, x, reference, n = Quadratic(5), _inputs(3, 5), _inputs(1, 5, seed=8), 20000
    result = gradient_shap(model, x, reference, n_samples=n, seed=2)
    plain = integrated_gradients(model, x, reference, n_steps=2)
    diff = x - reference
    spread = (diff * (diff @ model.a.detach())).abs().max() / math.sqrt(12 * n)
    error = (result.attributions - plain.attributions).abs().max()
    assert error < 5 * spread, f"GradientSHAP off IG by {error:.3g} (5 SE = {5 * spread:.3g})"


# -- result fields --------------------------------------------------------------------------------

def test_fields_are_honest_for_methods_without_a_baseline() -> None:
    model, x = mlp(seed=6), _inputs(3, 10)
    zeros = torch.zeros_like(x)
    f_x = model(x)[:, 2].detach()
    f_0 = model(zeros)[:, 2].detach()
    for result in (saliency(model, x, target=2), gradient_x_input(model, x, target=2),
                   smoothgrad(model, x, target=2, inner="gradient", n_samples=4, seed=0)):
        assert torch.equal(result.baselines, zeros), f"{result.method}: baselines are zeros"
        assert torch.allclose(result.f_inputs, f_x, atol=1e-14), f"{result.method}: f(x)"
        assert torch.allclose(result.f_baselines, f_0, atol=1e-14), f"{result.method}: f(0)"
        expected_delta = result.attributions.sum(1) - (f_x - f_0)
        assert torch.allclose(result.delta, expected_delta, atol=1e-13), (
            f"{result.method}: delta is sum(attr) - (f(x) - f(0))"
        )
        assert result.attributions.shape == x.shape, f"{result.method}: shape of the inputs"
        assert result.target is not None and result.target.tolist() == [2, 2, 2], "target kept"


def test_gradient_shap_completeness_is_against_the_mean_over_references() -> None:
    model, x, references = mlp(seed=7), _inputs(2, 10), _inputs(6, 10, seed=3)
    result = gradient_shap(model, x, references, target=0, n_samples=4000, seed=4)
    expected_f_base = model(references)[:, 0].detach().mean()
    assert torch.allclose(result.f_baselines, expected_f_base.expand(2), atol=1e-13), (
        "f_baselines is the mean of f over every reference row"
    )
    assert torch.allclose(result.baselines, references.mean(0).expand_as(x)), "mean reference"
    assert result.relative_delta.max() < 0.05, (
        f"with many samples expected gradients nearly complete: {result.relative_delta}"
    )
    assert result.n_evaluations.tolist() == [4000, 4000], "one gradient per sample"


def test_smoothgrad_ig_with_no_noise_is_plain_ig() -> None:
    model, x, baseline = mlp(seed=8), _inputs(3, 10), _inputs(1, 10, seed=2)
    smooth = smoothgrad(model, x, baseline, target=1, n_samples=3, stdev=0.0, n_steps=16)
    plain = integrated_gradients(model, x, baseline, target=1, n_steps=16)
    assert torch.allclose(smooth.attributions, plain.attributions, rtol=0, atol=1e-14), (
        "averaging identical IG copies must give IG"
    )
    assert torch.allclose(smooth.delta, plain.delta, atol=1e-13), "same completeness as IG"
    assert smooth.n_evaluations.tolist() == [48, 48, 48], "3 copies x 16 steps"


# -- batching -------------------------------------------------------------------------------------

def test_chunking_changes_call_counts_not_results() -> None:
    counting = CountingModule(mlp(seed=9))
    x, references = _inputs(3, 10), _inputs(5, 10, seed=6)
    whole = smoothgrad(counting, x, target=0, inner="gradient", n_samples=8, seed=1,
                       batch_size=64)
    calls_whole = counting.calls
    counting.calls = 0
    chunked = smoothgrad(counting, x, target=0, inner="gradient", n_samples=8, seed=1,
                         batch_size=5)
    assert torch.allclose(whole.attributions, chunked.attributions, rtol=0, atol=1e-14), (
        "chunking must not change the result"
    )
    # The 6 no-grad rows for f(x) and f(0) ride along only within the engine's slack of a
    # batch (here 2 rows), so they take one extra call: 24 gradient rows in 1 or 5 calls, +1.
    assert calls_whole == 2, f"expected 1 gradient call + 1 endpoint call, got {calls_whole}"
    assert counting.calls == math.ceil(24 / 5) + 1, f"unexpected call count {counting.calls}"
    counting.calls, counting.rows = 0, []
    shap = gradient_shap(counting, x, references, target=0, n_samples=4, seed=0, batch_size=6)
    assert max(counting.rows) <= 7, "no call may exceed the batch (plus the engine's tail slack)"
    assert shap.params["forward_calls"] == counting.calls, "the result counts the model calls"


# -- validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda m, x: saliency(m, x.long()),
    lambda m, x: saliency(m, x[:0]),
    lambda m, x: saliency(m, x, batch_size=0),
    lambda m, x: gradient_x_input(m, x, batch_size=-1),
    lambda m, x: smoothgrad(m, x, n_samples=0),
    lambda m, x: smoothgrad(m, x, stdev=-1.0),
    lambda m, x: smoothgrad(m, x, inner="guided"),
    lambda m, x: smoothgrad(m, x, method="simpson"),
    lambda m, x: smoothgrad(m, x, baselines=1.0, inner="gradient"),
    lambda m, x: gradient_shap(m, x, torch.zeros(3, 4)),
    lambda m, x: gradient_shap(m, x, torch.zeros(3, 10), n_samples=0),
])
def test_invalid_arguments_raise_clear_errors(call) -> None:
    with pytest.raises((ValueError, TypeError)):
        call(mlp(seed=0), _inputs(2, 10))


def test_results_survive_the_disk_cache(tmp_path) -> None:
    from attribution_core.cache import ResultCache

    model, x, references = mlp(seed=2), _inputs(2, 10), _inputs(3, 10, seed=1)
    cache = ResultCache(disk_dir=tmp_path)
    for index, result in enumerate((
            saliency(model, x, target=0),
            smoothgrad(model, x, target=0, n_samples=2, n_steps=4),
            gradient_shap(model, x, references, target=0, n_samples=3))):
        cache.put(f"key{index}", result)
        fresh = ResultCache(disk_dir=tmp_path)  # forces a read from disk, not memory
        stored = fresh.get(f"key{index}")
        assert stored is not None, f"{result.method}: stored on disk"
        assert torch.equal(stored.attributions, result.attributions), f"{result.method}: tensors"
        assert stored.params == result.params, f"{result.method}: params round-trip as JSON"
