"""The cost model: counts from settings match what the methods really evaluate; row costs are
measured once per model and input signature; the per-click budget comes from the environment."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attribution_core import cost, integrated_gradients
from attribution_core.evaluation import EvaluationSettings
from attribution_core.methods.ig2 import ig2
from tests.unit.models_for_tests import MaskedEmbeddingClassifier, mlp, small_cnn


class GradientRowCounter(nn.Module):
    """Counts the rows the model sees with gradients on (forward + backward) and off."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.gradient_rows = 0
        self.forward_rows = 0

    def forward(self, inputs: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and inputs.requires_grad:
            self.gradient_rows += int(inputs.shape[0])
        else:
            self.forward_rows += int(inputs.shape[0])
        return self.inner(inputs, **kwargs)


@pytest.mark.parametrize("n_steps", [4, 32, 100])
def test_fixed_step_ig_costs_its_step_count(n_steps: int) -> None:
    model = GradientRowCounter(mlp())
    x = torch.randn(1, 10, dtype=torch.float64)
    result = integrated_gradients(model, x, target=1, n_steps=n_steps)
    assert cost.ig_evaluations(n_steps) == int(result.n_evaluations[0]), \
        "the estimate equals the evaluations the result reports"
    assert n_steps <= model.gradient_rows <= cost.ig_run_rows(n_steps), \
        f"the model saw {model.gradient_rows} gradient rows for {n_steps} steps"


def test_auto_ig_stays_under_its_bound() -> None:
    model = GradientRowCounter(small_cnn())
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    result = integrated_gradients(model, x, target=0, n_steps="auto", tolerance=1e-9)
    bound = cost.ig_run_rows("auto")
    assert model.gradient_rows <= bound, \
        f"auto IG used {model.gradient_rows} gradient rows, over its bound {bound}"
    assert int(result.n_evaluations[0]) <= cost.ig_evaluations("auto"), \
        "the reported evaluations are under the auto budget"


@pytest.mark.parametrize(("steps", "refs", "rule"), [(8, 3, "trapezoid"), (5, 2, "middle"),
                                                     (6, 4, "left")])
def test_ig2_costs_path_points_times_references(steps: int, refs: int, rule: str) -> None:
    torch.manual_seed(0)
    model = GradientRowCounter(mlp())
    x = torch.randn(1, 10, dtype=torch.float64)
    references = torch.randn(refs, 10, dtype=torch.float64)
    result = ig2(model, x, references, target=0, n_steps=steps, step_size=0.05,
                 rule=rule)  # type: ignore[arg-type]
    expected = cost.ig2_evaluations(steps, refs, rule)  # type: ignore[arg-type]
    assert int(result.n_evaluations[0]) == expected, (
        f"IG2 reported {int(result.n_evaluations[0])} evaluations, estimate {expected}")
    assert model.gradient_rows <= cost.ig2_run_rows(steps, refs, rule), \
        f"the model saw {model.gradient_rows} gradient rows, more than the estimate {expected}"


@pytest.mark.parametrize(("steps", "rule"), [(8, "trapezoid"), (7, "middle"), (6, "left")])
def test_ig2_with_halving_costs_its_companion_rows_too(steps: int, rule: str) -> None:
    torch.manual_seed(0)
    model = GradientRowCounter(mlp())
    x = torch.randn(1, 10, dtype=torch.float64)
    references = torch.randn(3, 10, dtype=torch.float64)
    result = ig2(model, x, references, target=0, n_steps=steps, step_size=0.05,
                 rule=rule, halving=True)  # type: ignore[arg-type]
    expected = cost.ig2_evaluations(steps, 3, rule, halving=True)  # type: ignore[arg-type]
    assert expected > cost.ig2_evaluations(steps, 3, rule), "the companions add rows"  # type: ignore[arg-type]
    assert int(result.n_evaluations[0]) == expected, (
        f"IG2 reported {int(result.n_evaluations[0])} evaluations, estimate {expected}")
    assert model.gradient_rows <= cost.ig2_run_rows(steps, 3, rule, halving=True), \
        f"the model saw {model.gradient_rows} gradient rows, more than the estimate {expected}"


def test_the_largest_image_click_and_the_evaluate_defaults_fit_the_default_budget() -> None:
    largest = cost.explanation_cost("both", n_steps=1024, convergence_divisors=(8, 4, 2),
                                    ig2_steps=256, n_references=16)
    extras = 4 * (cost.IG_EXTRA_ROWS_PER_EXPLICAND + cost.PROBE_ROWS_PER_CALL) + \
        cost.PROBE_ROWS_PER_CALL
    assert largest.evaluations == 1024 + 128 + 256 + 512 + 257 * 16 + extras, \
        f"IG + its three-run curve + IG2: {largest.parts}"
    default_evaluate = cost.evaluation_cost(EvaluationSettings(), 50)
    # IG runs again at half the steps and IG2 walks companion paths at half the steps (the
    # maps' convergence); 6 methods x the probe rows.
    assert default_evaluate.evaluations == 50 * (
        32 + 16 + 33 * 4 + 17 * 4 + 1 + 1 + 8 * 32 + 16 + 6 * cost.PROBE_ROWS_PER_CALL), \
        f"per case: every method's own count and its probe rows: {default_evaluate.parts}"
    largest_evaluate = cost.evaluation_cost(EvaluationSettings(), 500)
    assert not largest.over_budget(cost.DEFAULT_BUDGET), "the image page's maximum runs"
    assert not default_evaluate.over_budget(cost.DEFAULT_BUDGET), "Evaluate's defaults run"
    assert largest_evaluate.over_budget(cost.DEFAULT_BUDGET), "500 cases x 6 methods is refused"


def test_curve_ladder_matches_the_pages_runs() -> None:
    assert cost.curve_ladder(64, (8, 4, 2)) == [8, 16, 32], "the image page's ladder"
    assert cost.curve_ladder("auto", (8, 4, 2)) == [], "auto records its own history"
    assert cost.curve_ladder(4, (8, 4, 2)) == [2], "repeats collapse on the image page"
    assert cost.curve_ladder(4, (8, 4, 2), distinct=False) == [2, 2, 2], \
        "the text and tabular pages run each divisor"


def test_row_cost_is_measured_once_per_model_and_signature() -> None:
    cost.forget_row_costs()
    model = GradientRowCounter(MaskedEmbeddingClassifier().double())
    embeds = torch.randn(1, 5, 8, dtype=torch.float64)
    mask = torch.ones(1, 5, dtype=torch.long)
    first = cost.row_cost(model, embeds, forward_kwargs={"attention_mask": mask}, target=1)
    seen = (model.gradient_rows, model.forward_rows)
    again = cost.row_cost(model, embeds * 2, forward_kwargs={"attention_mask": mask}, target=1)
    assert again is first, "the same model and signature reuse the measurement"
    assert (model.gradient_rows, model.forward_rows) == seen, "no second measurement ran"
    assert first.gradient_seconds > 0 and first.forward_seconds > 0, f"measured: {first}"
    assert first.gradient_call_seconds >= 0 and first.forward_call_seconds >= 0, \
        f"per-call costs are never negative: {first}"
    longer = torch.randn(1, 9, 8, dtype=torch.float64)
    cost.row_cost(model, longer, forward_kwargs={"attention_mask": torch.ones(1, 9)}, target=1)
    assert model.gradient_rows > seen[0], "another input length is another signature"


def test_an_estimate_gets_seconds_from_the_row_cost() -> None:
    estimate = cost.CostEstimate(evaluations=1000, forward_rows=300, calls=10, forward_calls=4)
    timed = estimate.timed(cost.RowCost(gradient_seconds=0.002, forward_seconds=0.001,
                                        gradient_call_seconds=0.01, forward_call_seconds=0.005))
    overhead = 14 * cost.CALL_OVERHEAD_SECONDS
    assert timed.seconds == pytest.approx(2.0 + 0.3 + 0.1 + 0.02 + overhead), \
        f"rows x per-row + calls x (per-call + overhead), got {timed.seconds}"
    assert "about 1,000 gradient evaluations" in timed.describe(), timed.describe()
    assert "about 2 s" in timed.describe(), timed.describe()
    assert estimate.timed(None).seconds is None, "no row cost: no seconds"


def test_the_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cost.BUDGET_VARIABLE, "1_000")
    assert cost.evaluation_budget() == 1000, "the variable sets the budget"
    monkeypatch.setenv(cost.BUDGET_VARIABLE, "-5")
    assert cost.evaluation_budget() == cost.DEFAULT_BUDGET, "nonsense falls back to the default"
    monkeypatch.delenv(cost.BUDGET_VARIABLE)
    assert cost.evaluation_budget() == cost.DEFAULT_BUDGET, "unset: the default"
    message = cost.budget_message(cost.CostEstimate(5000), 1000, "lower the steps")
    assert "5,000" in message and "1,000" in message and cost.BUDGET_VARIABLE in message, message


def test_an_evaluate_run_stays_within_its_estimate() -> None:
    from attribution_core.evaluation.cases import bundled_cases
    from attribution_core.evaluation.runner import evaluate
    from attribution_core.models import load_model

    loaded = load_model("wine_mlp", "cpu")
    cases = bundled_cases(loaded, 12).cases
    settings = EvaluationSettings(ig_steps=8, ig2_steps=4, ig2_references=2,
                                  smoothgrad_samples=2, gradient_shap_samples=4,
                                  curve_points=5, cases_per_batch=5)
    counter = GradientRowCounter(nn.Identity())
    handle = loaded.module.register_forward_pre_hook(
        lambda _m, args: (counter.forward(args[0]), None)[1])
    try:
        evaluate(loaded, cases, settings)
    finally:
        handle.remove()
    estimate = cost.evaluation_cost(settings, len(cases))
    core_rows = sum(cost.evaluation_method_evaluations(m, settings) for m in settings.methods)
    assert core_rows * len(cases) <= counter.gradient_rows <= estimate.evaluations, (
        f"{counter.gradient_rows} gradient rows, estimate {estimate.evaluations}, "
        f"methods alone {core_rows * len(cases)}")
    assert counter.forward_rows <= 1.2 * estimate.forward_rows, \
        f"{counter.forward_rows} forward rows vs the estimate {estimate.forward_rows}"
