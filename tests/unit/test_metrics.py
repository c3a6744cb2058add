"""Faithfulness metrics on cases with a known answer, hand-computed AUCs, and batching."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from captum.metrics import infidelity as captum_infidelity
from scipy.stats import spearmanr
from torch import nn

from attribution_core import integrated_gradients
from attribution_core.datasets import fit_mlp, make_synthetic_tabular
from attribution_core.methods import gradient_x_input, saliency
from attribution_core.metrics import (
    agreement,
    completeness_error,
    deletion_curve,
    infidelity,
    insertion_curve,
    patch_groups,
    random_deletion_curve,
    random_insertion_curve,
    randomisation_check,
    rank_correlation,
    sensitivity_max,
    sensitivity_n,
    token_groups,
)
from tests.unit.models_for_tests import CountingModule, mlp

pytestmark = pytest.mark.usefixtures("float64_default")


class ReadsFeatureZero(nn.Module):
    """f(x) = 2 x_0: only feature 0 matters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x.reshape(x.shape[0], -1)[:, 0]


class Linear(nn.Module):
    def __init__(self, weights: list[float]) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.tensor(weights))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weights


# -- deletion / insertion on known answers --------------------------------------------------------

def test_deletion_drops_at_the_first_step_when_the_used_feature_ranks_first() -> None:
    x = torch.ones(1, 4)
    first = deletion_curve(ReadsFeatureZero(), x, torch.tensor([[5.0, 1.0, 1.0, 1.0]]))
    last = deletion_curve(ReadsFeatureZero(), x, torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
    assert first.outputs.tolist() == [[2.0, 0.0, 0.0, 0.0, 0.0]], "f drops at the first step"
    assert last.outputs.tolist() == [[2.0, 2.0, 2.0, 2.0, 0.0]], "f drops only at the end"
    assert first.fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0], "all 5 counts (K = 4)"
    # Trapezoid by hand over fractions spaced 0.25.
    assert first.auc.item() == pytest.approx(0.25 * (2 + 0) / 2), "AUC of [2, 0, 0, 0, 0]"
    assert last.auc.item() == pytest.approx(0.25 * (3 * (2 + 2) / 2 + (2 + 0) / 2)), "[2,2,2,2,0]"
    # Normalised by f(x) - f(baseline) = 2: the curves [1, 0, 0, 0, 0] and [1, 1, 1, 1, 0].
    assert first.normalised_auc.item() == pytest.approx(0.125), "normalised best AUC"
    assert last.normalised_auc.item() == pytest.approx(0.875), "normalised worst AUC"


def test_random_orders_give_the_mid_curve() -> None:
    # Feature 0 sits at a uniform position j in 0..3; it is gone after j + 1 deletions, so the
    # mean output after k deletions is 2 (1 - k / 4): the line from 2 to 0, AUC exactly 1.
    x = torch.ones(1, 4)
    random = random_deletion_curve(ReadsFeatureZero(), x, n_orders=400, seed=3)
    expected = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0]])
    assert torch.allclose(random.outputs, expected, atol=0.15), (
        f"mean over random orders must approach the line, got {random.outputs.tolist()}"
    )
    assert abs(random.auc.item() - 1.0) < 0.08, f"random AUC {random.auc.item()} should be ~1"
    best = deletion_curve(ReadsFeatureZero(), x, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    worst = deletion_curve(ReadsFeatureZero(), x, torch.tensor([[-1.0, 0.0, 0.0, 0.0]]))
    assert best.auc.item() < random.auc.item() < worst.auc.item(), "random lies in between"
    assert random.n_orders == 400 and random.order == "random", "the curve says what it is"
    again = random_deletion_curve(ReadsFeatureZero(), x, n_orders=400, seed=3)
    assert torch.equal(again.outputs, random.outputs), "a seed fixes the random orders"


def test_insertion_hand_computed_and_random_in_between() -> None:
    x = torch.ones(1, 4)
    good = insertion_curve(ReadsFeatureZero(), x, torch.tensor([[9.0, 0.0, 0.0, 0.0]]))
    assert good.outputs.tolist() == [[0.0, 2.0, 2.0, 2.0, 2.0]], "f rises at the first step"
    assert good.auc.item() == pytest.approx(0.25 * ((0 + 2) / 2 + 3 * 2)), "trapezoid by hand"
    assert good.normalised_auc.item() == pytest.approx(0.875), "normalised insertion AUC"
    random = random_insertion_curve(ReadsFeatureZero(), x, n_orders=200, seed=0)
    assert abs(random.auc.item() - 1.0) < 0.1, "random insertion AUC ~ 1 by symmetry"
    assert good.f_inputs.item() == 2.0 and good.f_baselines.item() == 0.0, "endpoints"


def test_linear_model_deletion_and_insertion_by_hand() -> None:
    # f = 3 x0 - x1 + 2 x2 at x = (1, 1, 1), baseline 0; attribution w * x ranks x0, x2, x1.
    model, x = Linear([3.0, -1.0, 2.0]), torch.ones(1, 3)
    attributions = torch.tensor([[3.0, -1.0, 2.0]])
    deletion = deletion_curve(model, x, attributions)
    insertion = insertion_curve(model, x, attributions)
    assert deletion.outputs.tolist() == [[4.0, 1.0, -1.0, 0.0]], "remove x0, then x2, then x1"
    assert insertion.outputs.tolist() == [[0.0, 3.0, 5.0, 4.0]], "insert x0, then x2, then x1"
    third = 1.0 / 3.0
    assert deletion.auc.item() == pytest.approx(third * ((4 + 1) / 2 + (1 - 1) / 2 + (-1 + 0) / 2))
    assert insertion.auc.item() == pytest.approx(third * ((0 + 3) / 2 + (3 + 5) / 2 + (5 + 4) / 2))
    # Normalised by the gap 4: deletion [1, 1/4, -1/4, 0].
    assert deletion.normalised_auc.item() == pytest.approx(
        third * ((1 + 0.25) / 2 + (0.25 - 0.25) / 2 + (-0.25 + 0) / 2)), "normalised deletion"
    mixed = torch.tensor([[3.0, -2.5, 2.0]])
    assert deletion_curve(model, x, mixed).outputs.tolist() == [[4.0, 1.0, -1.0, 0.0]], (
        "signed scores rank x1 (-2.5) last"
    )
    absolute = deletion_curve(model, x, mixed, absolute=True)
    assert absolute.outputs.tolist() == [[4.0, 1.0, 2.0, 0.0]], "|score| ranks x1 before x2"


def test_baseline_and_subsampled_points() -> None:
    model = Linear([1.0] * 10)
    x, baseline = torch.full((2, 10), 2.0), torch.full((1, 10), 0.5)
    curve = deletion_curve(model, x, torch.arange(20.0).view(2, 10), baseline, n_points=6)
    assert curve.counts.tolist() == [0, 2, 4, 6, 8, 10], "6 points over 10 units"
    assert torch.allclose(curve.outputs[0], torch.tensor([20.0, 17.0, 14.0, 11.0, 8.0, 5.0])), (
        "each deleted unit moves f from 2 to the baseline's 0.5"
    )
    assert torch.allclose(curve.f_baselines, torch.tensor([5.0, 5.0])), "f(baseline) = 10 * 0.5"


def test_degenerate_gap_gives_nan_normalised_auc() -> None:
    curve = deletion_curve(ReadsFeatureZero(), torch.zeros(1, 3), torch.ones(1, 3))
    assert math.isnan(curve.normalised_auc.item()), "f(x) == f(baseline): nothing to normalise"
    assert curve.auc.item() == 0.0, "the raw AUC is still defined"


# -- groups ---------------------------------------------------------------------------------------

def test_patch_groups_layout() -> None:
    groups = patch_groups(3, 5, 2)
    expected = [[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]]
    assert groups.tolist() == expected, "row-major patches, cut at the edges"


def test_image_patches_and_text_tokens_move_as_units() -> None:
    class TopLeftPatch(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, 4, 4]
            return x[:, :, :2, :2].sum(dim=(1, 2, 3))

    images = torch.ones(1, 3, 4, 4)
    attributions = torch.zeros(1, 3, 4, 4)
    attributions[0, 0, 0, 0] = 1.0  # one pixel of patch 0 carries all the credit
    curve = deletion_curve(TopLeftPatch(), images, attributions, groups=patch_groups(4, 4, 2))
    assert curve.n_units == 4, "a 4x4 image has four 2x2 patches"
    assert curve.outputs.tolist() == [[12.0, 0.0, 0.0, 0.0, 0.0]], (
        "the whole patch (3 channels x 4 pixels) goes at once"
    )

    class SecondToken(nn.Module):
        def forward(self, embeds: torch.Tensor) -> torch.Tensor:  # [B, L, E]
            return embeds[:, 1].sum(dim=1)

    embeds = torch.ones(1, 5, 3)
    token_credit = torch.zeros(1, 5, 3)
    token_credit[0, 1] = torch.tensor([0.1, 0.2, 0.3])
    text = deletion_curve(SecondToken(), embeds, token_credit, groups=token_groups(5))
    assert text.n_units == 5 and text.outputs[0, :2].tolist() == [3.0, 0.0], (
        "deleting the top token removes its whole embedding"
    )


def test_invalid_groups_raise() -> None:
    x = torch.ones(1, 4)
    with pytest.raises(ValueError, match="every unit id"):
        deletion_curve(ReadsFeatureZero(), x, x, groups=torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="broadcast"):
        deletion_curve(ReadsFeatureZero(), x, x, groups=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="n_points"):
        deletion_curve(ReadsFeatureZero(), x, x, n_points=1)


# -- batching -------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [1, 4, 7, 33, 100])
def test_curve_of_n_rows_takes_ceil_n_over_batch_calls(batch_size: int) -> None:
    counting = CountingModule(mlp(seed=1))
    x = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    attributions = torch.randn(3, 10, generator=torch.Generator().manual_seed(1))
    curve = deletion_curve(counting, x, attributions, target=1, n_points=11,
                           batch_size=batch_size)
    n_rows = 3 * 11
    assert counting.calls == math.ceil(n_rows / batch_size), (
        f"{n_rows} rows at {batch_size} per call must take ceil(N / batch) calls, "
        f"took {counting.calls}"
    )
    assert curve.forward_calls == counting.calls, "the curve reports its model calls"
    assert max(counting.rows) <= batch_size, "no call exceeds the batch size"
    reference = deletion_curve(mlp(seed=1), x, attributions, target=1, n_points=11)
    assert torch.allclose(curve.outputs, reference.outputs, rtol=0, atol=1e-14), (
        "chunking must not change the curve"
    )
    assert torch.allclose(curve.outputs[:, 0], mlp(seed=1)(x)[:, 1].detach(), atol=1e-14), (
        "the first deletion point is f(x)"
    )


def test_random_curve_batches_all_orders_together() -> None:
    counting = CountingModule(ReadsFeatureZero())
    random_deletion_curve(counting, torch.ones(2, 4), n_orders=5, batch_size=8)
    assert counting.calls == math.ceil(5 * 2 * 5 / 8), "orders x explicands x points rows"


# -- sensitivity-n and infidelity -----------------------------------------------------------------

def test_sensitivity_n_is_one_for_exact_attributions_of_a_linear_model() -> None:
    model = Linear([3.0, -1.0, 2.0, 0.5, -2.0, 1.0])
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(2))
    exact = integrated_gradients(model, x, n_steps=4).attributions
    result = sensitivity_n(model, x, exact, ns=(1, 2, 3), n_subsets=16)
    assert torch.allclose(result.correlation, torch.ones(3, 3), atol=1e-12), (
        "IG of a linear model is additive: sum over S equals the drop for every S"
    )
    noisy = exact + torch.randn(3, 6, generator=torch.Generator().manual_seed(3))
    degraded = sensitivity_n(model, x, noisy, ns=(1, 2, 3), n_subsets=16)
    assert bool((degraded.correlation < 0.999).all()), "noisy attributions lose correlation"
    assert result.forward_calls == 1, "3 x (1 + 3 x 16) rows fit one automatic batch"


def test_infidelity_matches_captum_for_the_same_noise() -> None:
    model = mlp(seed=3)
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(5))
    attributions = saliency(model, x, target=2).attributions
    n_samples, noise_std, seed = 6, 0.2, 9
    noise = torch.normal(0.0, torch.full((4 * n_samples, 10), noise_std),
                         generator=torch.Generator().manual_seed(seed))

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return noise, inputs - noise  # Captum repeats rows explicand-major, as we do

    for normalize in (False, True):
        ours = infidelity(model, x, attributions, target=2, noise_std=noise_std,
                          n_samples=n_samples, seed=seed, normalize=normalize, batch_size=5)
        theirs = captum_infidelity(model, perturb, x, attributions, target=2,
                                   n_perturb_samples=n_samples, normalize=normalize)
        assert torch.allclose(ours, theirs, rtol=1e-10, atol=1e-14), (
            f"normalize={normalize}: {ours.tolist()} vs Captum {theirs.tolist()}"
        )


def test_infidelity_is_zero_for_the_gradient_of_a_linear_model() -> None:
    model = Linear([1.0, -2.0, 0.5])
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    exact = saliency(model, x).attributions
    assert infidelity(model, x, exact, normalize=False).max() < 1e-24, (
        "f(x) - f(x - I) = w . I exactly"
    )
    assert infidelity(model, x, -exact, normalize=False).min() > 1e-3, "wrong sign is unfaithful"


# -- completeness ---------------------------------------------------------------------------------

def test_completeness_error_recomputes_from_the_result() -> None:
    model = mlp(seed=4)
    x = torch.randn(3, 10, generator=torch.Generator().manual_seed(6))
    few = integrated_gradients(model, x, target=0, n_steps=2, method="riemann_left")
    error = completeness_error(few)
    assert torch.allclose(error.absolute_error, few.delta.abs(), atol=1e-14), "|delta|"
    assert torch.allclose(error.relative_error, few.relative_delta, atol=1e-12), "relative"
    assert error.baseline_based and error.method == "integrated_gradients", "IG promises it"
    many = completeness_error(integrated_gradients(model, x, target=0, n_steps=128))
    assert many.relative_error.max() < error.relative_error.max(), "more steps, smaller error"
    gradient = completeness_error(saliency(model, x, target=0))
    assert not gradient.baseline_based, "saliency makes no completeness promise"


def test_completeness_error_of_ig2_uses_the_counterfactuals() -> None:
    # IG2 results explain f(x) - mean f(GradCF); a stand-in with just those fields suffices.
    ig2_like = SimpleNamespace(attributions=torch.tensor([[1.0, 2.0]]),
                               f_inputs=torch.tensor([5.0]), f_counterfactuals=torch.tensor([1.0]),
                               f_baselines=torch.tensor([0.0]), method="ig2")
    error = completeness_error(ig2_like)
    assert error.expected_sum.item() == 4.0, "f(x) - f(GradCF), not f(x) - f(baseline)"
    assert error.absolute_error.item() == 1.0 and error.relative_error.item() == 0.25, "3 vs 4"
    with pytest.raises(TypeError):
        completeness_error(SimpleNamespace(attributions=torch.ones(1, 2)))


# -- randomisation check --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted_linear():
    data = make_synthetic_tabular(n_rows=1000, kind="linear", seed=0)
    return data, fit_mlp(data, steps=400)


RANDOMISED_THRESHOLD = 0.5  # measured ~0.3 for IG after all three layers are re-initialised


def test_randomisation_check_drops_rank_correlation(fitted_linear) -> None:
    data, fit = fitted_linear
    before = [p.detach().clone() for p in fit.model.parameters()]
    torch.manual_seed(123)
    expected_next = torch.rand(2)
    torch.manual_seed(123)
    baseline = fit.feature_means.view(1, -1)
    x = data.features[:48]
    check = randomisation_check(
        fit.model, lambda model: integrated_gradients(model, x, baseline, n_steps=16))
    assert torch.equal(torch.rand(2), expected_next), "the global RNG is left alone"
    assert check.layers == ("5", "3", "1"), f"Linear layers from the output: {check.layers}"
    assert check.correlations.shape == (4, 48), "one row per cascade step"
    assert torch.allclose(check.mean_correlation[0], torch.tensor(1.0)), "step 0 is identity"
    final = check.mean_correlation[-1].item()
    assert final < RANDOMISED_THRESHOLD, f"fully randomised IG still correlates {final:.2f}"
    assert all(torch.equal(a, b) for a, b in zip(before, fit.model.parameters(), strict=True)), (
        "the trained model must not be modified"
    )
    gradient = randomisation_check(fit.model, lambda model: saliency(model, x, abs=True))
    assert gradient.mean_correlation[-1].item() < RANDOMISED_THRESHOLD, "saliency drops too"


def test_randomisation_check_accepts_a_factory_and_named_layers(fitted_linear) -> None:
    data, fit = fitted_linear
    x = data.features[:8]
    check = randomisation_check(lambda: fit.model, lambda m: gradient_x_input(m, x).attributions,
                                layers=["5"])
    assert check.layers == ("5",) and check.correlations.shape == (2, 8), "one named layer"
    with pytest.raises(ValueError, match="reset_parameters"):
        randomisation_check(fit.model, lambda m: gradient_x_input(m, x), layers=["2"])


# -- agreement ------------------------------------------------------------------------------------

def test_agreement_with_a_mask_by_hand() -> None:
    attributions = torch.tensor([[0.5, -3.0, 0.1, 2.0]])
    mask = torch.tensor([False, True, False, True])
    by_magnitude = agreement(attributions, mask, k=2)
    assert by_magnitude.precision_at_k.item() == 1.0, "|attr| top 2 are features 1 and 3"
    assert by_magnitude.positive_share_in_mask.item() == pytest.approx(2.0 / 2.6), "2 of 2.6"
    assert bool(by_magnitude.pointing_game.item()), "the largest |attr| (feature 1) is in mask"
    signed = agreement(attributions, mask, k=2, absolute=False)
    assert signed.precision_at_k.item() == 0.5, "signed top 2 are features 3 and 0"
    assert bool(signed.pointing_game.item()), "the largest attribution (feature 3) is in mask"
    as_indices = agreement(attributions, [1, 3], k=2)
    assert as_indices.precision_at_k.item() == 1.0, "feature indices act as a mask"


def test_agreement_with_true_contributions() -> None:
    truth = torch.tensor([[4.0, -3.0, 0.0, 1.0, 0.0]])
    perfect = agreement(truth * 2.0, truth, k=2, absolute=False)
    assert perfect.rank_correlation.item() == pytest.approx(1.0), "same order, correlation 1"
    assert perfect.precision_at_k.item() == 0.5, (
        "signed top 2 (features 0, 3) vs the top-2 |truth| (features 0, 1)"
    )
    by_magnitude = agreement(truth * 2.0, truth, k=2)
    assert by_magnitude.precision_at_k.item() == 1.0, "top-2 |attr| are features 0 and 1"
    reversed_map = agreement(-truth, truth, k=2, absolute=False)
    assert reversed_map.rank_correlation.item() == pytest.approx(-1.0), "reversed order: -1"


def test_rank_correlation_matches_scipy_with_ties() -> None:
    generator = torch.Generator().manual_seed(4)
    a = torch.randint(0, 4, (3, 12), generator=generator).double()
    b = a + torch.randint(0, 3, (3, 12), generator=generator).double()
    ours = rank_correlation(a, b)
    for row in range(3):
        expected = spearmanr(a[row].numpy(), b[row].numpy()).statistic
        assert ours[row].item() == pytest.approx(float(expected), abs=1e-12), f"row {row}"
    constant = rank_correlation(torch.ones(1, 5), torch.arange(5.0).view(1, 5))
    assert bool(np.isnan(constant.item())), "a constant row has no rank correlation"


def test_sensitivity_max_zero_for_a_constant_gradient_and_bounded_for_a_quadratic() -> None:
    linear_model = Linear([1.0, -2.0, 0.5])
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(1))
    flat = sensitivity_max(lambda rows: saliency(linear_model, rows), x, radius=0.1)
    assert flat.abs().max() < 1e-12, "a linear model's gradient does not move at all"

    generator = torch.Generator().manual_seed(2)
    a = torch.randn(3, 3, generator=generator)
    a = a + a.T

    class Quadratic(nn.Module):
        def forward(self, rows: torch.Tensor) -> torch.Tensor:
            return 0.5 * ((rows @ a) * rows).sum(1)

    radius = 0.05
    values = sensitivity_max(lambda rows, target=None: saliency(Quadratic(), rows), x,
                             radius=radius, n_samples=8, seed=3, batch_size=5)
    # The gradient A x moves by A d with |d|_inf <= r: at most ||A||_2 r sqrt(3).
    bound = torch.linalg.matrix_norm(a, ord=2) * radius * math.sqrt(3) / (x @ a).norm(dim=1)
    assert bool((values > 0).all()) and bool((values <= bound + 1e-12).all()), (
        f"max-sensitivity {values.tolist()} must lie in (0, {bound.tolist()}]"
    )
    again = sensitivity_max(lambda rows, target=None: saliency(Quadratic(), rows), x,
                            radius=radius, n_samples=8, seed=3, batch_size=5)
    assert torch.equal(again, values), "a seed (with the same batch size) fixes the draws"


def test_per_row_seeds_make_random_curves_independent_of_the_batch() -> None:
    model = mlp(seed=4, n_in=6, n_out=2)
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(2))
    together = random_deletion_curve(model, x, target=[0, 1, 0], n_points=7, n_orders=5,
                                     seed=[11, 12, 13])
    for i, seed in enumerate((11, 12, 13)):
        alone = random_deletion_curve(model, x[i:i + 1], target=[[0, 1, 0][i]], n_points=7,
                                      n_orders=5, seed=seed)
        torch.testing.assert_close(together.outputs[i], alone.outputs[0],
                                   msg=f"row {i}: its random orders depend on its batch mates")
    with pytest.raises(ValueError, match="3 explicands"):
        random_deletion_curve(model, x, target=0, seed=[1, 2])
