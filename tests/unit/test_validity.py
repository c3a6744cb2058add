"""The validity suite: benchmark data as defined, ground truth in closed form, metrics that can
fail, and the benchmark record's schema."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from attribution_core.validity.report import validity_markdown
from attribution_core.validity.rows import bootstrap_ci
from attribution_core.validity.shapley import (
    faithfulness,
    ground_truth,
    monotonicity,
    shapley_corr,
    shapley_from_values,
)
from attribution_core.validity.tabular_suite import (
    METRICS,
    TabularSettings,
    run_tabular,
)
from attribution_core.validity.xai_bench import (
    DATASETS,
    LINEAR_WEIGHTS,
    GaussianConditional,
    covariance,
    make_xai_bench,
    noiseless_target,
)

WEIGHTS = torch.tensor(LINEAR_WEIGHTS, dtype=torch.float64)


class _Function(nn.Module):
    def __init__(self, function: object) -> None:
        super().__init__()
        self.function = function
        self.anchor = nn.Parameter(torch.zeros((), dtype=torch.float64), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x.double()).view(-1, 1)  # type: ignore[operator]


def _explicands(n: int, rho: float, seed: int = 7) -> torch.Tensor:
    return make_xai_bench("gaussianLinear", rho, n, seed=seed).features


# -- data sets ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_features_have_the_defined_moments(rho: float) -> None:
    data = make_xai_bench("gaussianNonLinearAdditive", rho, 40_000, seed=3)
    mean = data.features.mean(dim=0)
    cov = torch.cov(data.features.T)
    assert mean.abs().max() < 0.03, f"feature means should be 0, got {mean.tolist()}"
    assert (cov - covariance(rho)).abs().max() < 0.04, \
        f"covariance should be I + rho(11^T - I) for rho={rho}, got\n{cov}"


@pytest.mark.parametrize("name", DATASETS)
def test_targets_are_standardised_noisy_versions_of_the_definition(name: str) -> None:
    data = make_xai_bench(name, 0.5, 5000, seed=1)
    assert abs(float(data.target.mean())) < 1e-9, "the target should have mean 0"
    assert abs(float(data.target.std(unbiased=False)) - 1) < 1e-9, "the target should have sd 1"
    rebuilt = (data.target * data.target_sd + data.target_mean
               - noiseless_target(name, data.features))
    assert abs(float(rebuilt.std()) - 0.01) < 0.002, \
        f"{name}: target minus its definition should be noise of sd 0.01, got {rebuilt.std()}"


def test_the_definitions_at_chosen_points() -> None:
    x = torch.tensor([[0.5, -0.25, 0.0, 0.0, 9.0], [-0.1, 0.7, 0.5, 1.0, -9.0],
                      [0.0, -0.6, 1.0, 2.0, 0.0], [1.0, 0.25, 0.3, 0.0, 0.0]],
                     dtype=torch.float64)
    linear = noiseless_target("gaussianLinear", x)
    assert torch.allclose(linear, x @ WEIGHTS), "linear: X w with w = (4, 3, 2, 1, 0)"
    additive = noiseless_target("gaussianNonLinearAdditive", x)
    expected = torch.sin(x[:, 0]) + x[:, 1].abs() + x[:, 2] ** 2 + torch.exp(-x[:, 3])
    assert torch.allclose(additive, expected), "nonlinear additive: sin + |.| + ^2 + exp(-.)"
    piecewise = noiseless_target("gaussianPiecewiseConstant", x)
    # Row 0: p1(0.5)=1, p2(-0.25)=-1, p3(0): trunc(2 cos 0) = 2  -> 2
    # Row 1: p1=-1, p2(0.7)=2, p3(0.5): trunc(2 cos(pi/2)) = 0 -> 1  -> 2
    # Row 2: p1(0)=1, p2(-0.6)=-2, p3(1): trunc(-2) = -2  -> -3
    # Row 3: p1=1, p2(0.25)=1, p3(0.3): trunc(2 cos(0.3 pi)) = trunc(1.176) = 1  -> 3
    assert piecewise.tolist() == [2.0, 2.0, -3.0, 3.0], \
        f"piecewise constant at chosen points, got {piecewise.tolist()}"


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    a = make_xai_bench("gaussianLinear", 0.5, 50, seed=4)
    b = make_xai_bench("gaussianLinear", 0.5, 50, seed=4)
    c = make_xai_bench("gaussianLinear", 0.5, 50, seed=5)
    assert torch.equal(a.features, b.features) and torch.equal(a.target, b.target), \
        "the same seed should draw the same rows"
    assert not torch.equal(a.features, c.features), "another seed should draw other rows"


def test_gaussian_conditional_has_the_conditional_moments() -> None:
    conditional = GaussianConditional(covariance(0.5), 20_000, seed=0)
    x = torch.tensor([[1.2, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    samples = conditional.samples(x, mask=0b00001)[0]  # x1 fixed
    # E[x_j | x1 = a] = 0.5 a, Var = 1 - 0.25 = 0.75 for rho = 0.5 and j != 1.
    assert torch.all(samples[:, 0] == 1.2), "the fixed feature should keep its value"
    assert (samples[:, 1:].mean(0) - 0.6).abs().max() < 1e-9, \
        "antithetic draws should give the conditional mean exactly"
    assert (samples[:, 1:].var(0) - 0.75).abs().max() < 0.03, \
        f"conditional variance should be 0.75, got {samples[:, 1:].var(0).tolist()}"


# -- ground truth -------------------------------------------------------------------------------

def test_linear_model_rho_0_shapley_is_w_times_centred_x() -> None:
    model = _Function(lambda x: x @ WEIGHTS + 0.3)
    x = _explicands(16, 0.0)
    truth, _ = ground_truth(model, x, GaussianConditional(covariance(0.0), 2000, seed=1))
    closed_form = WEIGHTS * (x - 0.0)  # E[x_i] = 0
    # Antithetic sampling makes every conditional sample mean exact, so a linear model's
    # coalition values, and with them its Shapley values, carry no sampling error at all.
    assert torch.allclose(truth, closed_form, atol=1e-9), \
        f"Shapley of a linear model should be w_i x_i; max error " \
        f"{(truth - closed_form).abs().max()}"


def test_additive_model_rho_0_shapley_is_centred_component() -> None:
    model = _Function(lambda x: x[:, 0] ** 2 + torch.exp(-x[:, 1]))
    x = _explicands(16, 0.0)
    truth, values = ground_truth(model, x, GaussianConditional(covariance(0.0), 2000, seed=2))
    expected = torch.stack([x[:, 0] ** 2 - 1.0, torch.exp(-x[:, 1]) - math.exp(0.5)], dim=1)
    # Monte Carlo error of a mean of 2,000 draws: sd(x^2) = 1.4 and sd(exp(-x)) = 2.2 give
    # standard errors 0.03 and 0.05; 0.25 is five of the larger.
    assert (truth[:, :2] - expected).abs().max() < 0.25, \
        f"Shapley of an additive model should be g_i(x_i) - E g_i; max error " \
        f"{(truth[:, :2] - expected).abs().max()}"
    assert truth[:, 2:].abs().max() < 1e-9, "features the model ignores should get exactly 0"
    efficiency = truth.sum(1) - (values[:, -1] - values[:, 0])
    assert efficiency.abs().max() < 1e-9, "Shapley values should add up to f(x) - v(empty)"


def test_shapley_from_values_of_a_pure_interaction() -> None:
    # v(S) = 1 only when features 0 and 1 are both in S (d = 3): each gets 1/2, feature 2 none.
    values = torch.tensor([[1.0 if (m & 0b011) == 0b011 else 0.0 for m in range(8)]],
                          dtype=torch.float64)
    phi = shapley_from_values(values)
    assert torch.allclose(phi, torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64)), \
        f"an AND of two features should split its value equally, got {phi.tolist()}"


# -- metrics can fail ---------------------------------------------------------------------------

def test_metrics_separate_the_truth_from_random_scores() -> None:
    model = _Function(lambda x: x @ WEIGHTS + torch.sin(2 * x[:, 0]))
    x = _explicands(40, 0.0)
    truth, values = ground_truth(model, x, GaussianConditional(covariance(0.0), 500, seed=3))
    random = torch.randn(x.shape, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    assert float(shapley_corr(truth, truth).mean()) > 0.999, "the truth correlates with itself"
    assert float(shapley_corr(random, truth).mean()) < 0.3, \
        "random scores should not correlate with the ground truth"
    assert float(faithfulness(truth, values).mean()) > \
        float(faithfulness(random, values).mean()) + 0.3, \
        "faithfulness should rank the truth far above random scores"
    reversed_order = 1.0 / (truth.abs() + 1e-6)
    assert float(monotonicity(truth, values).mean()) > \
        float(monotonicity(reversed_order, values).mean()) + 0.3, \
        "monotonicity should punish the reversed feature order"


def test_bootstrap_interval_holds_the_mean_and_is_seeded() -> None:
    values = np.random.default_rng(0).normal(0.5, 0.2, 80)
    low, high = bootstrap_ci(values, seed=1)
    assert low < values.mean() < high, "the interval should contain the sample mean"
    assert high - low < 0.2, f"80 cases of sd 0.2 give a narrow interval, got {low}, {high}"
    assert bootstrap_ci(values, seed=1) == (low, high), "the same seed should repeat"


# -- the benchmark record -----------------------------------------------------------------------

def test_suite_rows_follow_the_schema_and_render() -> None:
    settings = TabularSettings(n_cases=6, conditional_samples=200, datasets=("gaussianLinear",),
                               rhos=(0.0,), methods=("IG(mean)", "IG2(random)", "Random"),
                               train_steps=300)
    seen: list[str] = []
    result = run_tabular(settings, progress=lambda done, total, message: seen.append(message))
    rows = [row.as_json() for row in result.rows]
    assert [r["method"] for r in rows] == ["IG(mean)", "IG2(random)", "Random"], \
        "one row per chosen method, in the suite's order"
    for row in rows:
        for key in ("benchmark", "dataset", "rho", "method", "ci95", "n_cases", *METRICS):
            assert key in row, f"row lacks {key!r}: {row}"
        assert row["dataset"] == "gaussianLinear" and row["rho"] == 0.0, "setting names"
        assert row["n_cases"] == 6, "every case should be scored"
        low, high = row["ci95"]["shapley_corr"]
        assert low <= row["shapley_corr"] <= high, "the mean lies inside its interval"
    assert seen and seen[-1] == "done", "progress should be reported to the end"
    markdown, svg = validity_markdown(
        {"rows": rows, "models": list(result.models), "seconds": {"total": 1.0}}, "cmd")
    assert "| IG2(random) |" in markdown and "gaussianLinear, rho = 0" in markdown, \
        "the tables should name methods and settings"
    assert svg.startswith("<svg") and svg.count("<circle") >= 3, "one dot per row at least"


def test_unknown_method_is_refused_with_the_names() -> None:
    with pytest.raises(ValueError, match="IG\\(mean\\)"):
        run_tabular(TabularSettings(n_cases=3, methods=("IG(median)",)))


def test_benchmark_record_is_json_with_the_promised_fields() -> None:
    from benchmarks.validity import run

    settings = TabularSettings(n_cases=4, conditional_samples=100, datasets=("gaussianLinear",),
                               rhos=(0.5,), methods=("IG(mean)", "Random"), train_steps=100)
    record = json.loads(json.dumps(run(True, None, None, False, settings)))
    assert {"rows", "models", "seconds", "settings", "environment"} <= set(record), \
        f"top-level fields: {sorted(record)}"
    assert [row["method"] for row in record["rows"]] == ["IG(mean)", "Random"], "method rows"
    row = record["rows"][0]
    assert (row["benchmark"], row["dataset"], row["rho"], row["n_cases"]) == \
        ("xai-bench", "gaussianLinear", 0.5, 4), f"row identity: {row}"
    assert set(row["ci95"]) == set(METRICS) and all(
        len(bounds) == 2 for bounds in row["ci95"].values()), "an interval per metric"
    assert record["seconds"]["total"] >= record["seconds"]["tabular"] > 0, "timings recorded"


def test_image_suite_scores_a_real_map_above_random() -> None:
    from attribution_core.validity.image_suite import run_shapes

    rows, info = run_shapes(3, methods=("IG(dataset mean)", "Random"))
    assert len(rows) == 8, "two methods on four backgrounds"
    assert all(row.n_cases == 3 for row in rows), "every scene scored"
    by_key = {(row.dataset, row.method): row.metrics for row in rows}
    for background in ("dark", "bright", "textured", "noisy"):
        real = by_key[(f"shapes/{background}", "IG(dataset mean)")]["mask_share"]
        random = by_key[(f"shapes/{background}", "Random")]["mask_share"]
        assert real > random + 0.3, f"{background}: IG {real} vs random {random}"
    assert set(info["accuracy_on_cases"]) == {"dark", "bright", "textured", "noisy"}, info


def test_ig2_path_settings_are_chosen_by_reach_alone_and_documented() -> None:
    from attribution_core.datasets.shapes import BACKGROUNDS, generate_shapes
    from attribution_core.validity.ig2_settings import calibrate, choice_record, settings_markdown
    from attribution_core.validity.image_suite import load_backgrounds_cnn

    pool = generate_shapes(24, 12, BACKGROUNDS)
    choice = calibrate(load_backgrounds_cnn(), torch.from_numpy(pool.images),
                       torch.from_numpy(pool.labels), torch.from_numpy(pool.masks),
                       n_references=2, n_steps=4, seed=0)
    names = [row["setting"] for row in choice.table]
    assert names[0] == "defaults" and any("features" in n for n in names), names
    reach = {row["setting"]: row["reach_median"] for row in choice.table}
    assert reach[choice.chosen.name] == min(reach.values()), f"lowest reach wins: {reach}"
    assert all(0 <= row["mask_share_mean"] <= 1 for row in choice.table), choice.table
    markdown = "\n".join(settings_markdown([{"ig2_path_settings": choice_record(choice)}]))
    assert f"chose **{choice.chosen.name}**" in markdown and "| defaults |" in markdown, \
        markdown
