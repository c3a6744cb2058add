"""The evaluation runner: known answers, batch independence, batching, stop and resume."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from attribution_core.engine import MEMORY_PROBE_CALLS
from attribution_core.evaluation.runner import evaluate
from attribution_core.evaluation.types import (
    ALL_METHODS,
    METHOD_GRAD_X_INPUT,
    METHOD_IG,
    CaseOutcome,
    EvalCase,
    EvaluationInputError,
    EvaluationSettings,
    MethodOutcome,
    mean_curve,
    summarise_method,
)
from attribution_core.models.spec import LoadedModel, ModelSpec
from tests.unit.models_for_tests import CountingModule, mlp

pytestmark = pytest.mark.usefixtures("float64_default")

N_FEATURES = 5


class ReadsFeatureZero(nn.Module):
    """Two logits, +2 x_0 and -2 x_0: only feature 0 matters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([2.0 * x[:, 0], -2.0 * x[:, 0]], dim=1)


def loaded_for(module: nn.Module, n_out: int = 2) -> LoadedModel:
    spec = ModelSpec(name="test_model", title="Test model", modality="tabular",
                     output_kind="classification",
                     class_names=tuple(f"class {i}" for i in range(n_out)),
                     loader=lambda device: None,  # type: ignore[arg-type, return-value]
                     representation_module=None, ig2_step_size=0.05)
    return LoadedModel(spec=spec, module=module, forward=module, weights_hash="test-hash",
                       device=torch.device("cpu"))


def tabular_case(case_id: str, x: torch.Tensor, target: int, refs: torch.Tensor,
                 expected: torch.Tensor | None = None) -> EvalCase:
    return EvalCase(case_id=case_id, inputs=x.reshape(1, -1), baseline=torch.zeros(1, x.numel()),
                    target=target, references=refs, reading_shape=(x.numel(),),
                    expected=expected, unit_names=tuple(f"f{i}" for i in range(x.numel())))


def random_cases(n: int, n_features: int = 10, seed: int = 0) -> list[EvalCase]:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(n, n_features, generator=generator)
    refs = torch.randn(n, 4, n_features, generator=generator)
    return [tabular_case(f"case {i}", rows[i], i % 3, refs[i]) for i in range(n)]


def test_a_model_reading_only_feature_zero_gives_hand_computed_curves() -> None:
    x = torch.tensor([1.0, 0.5, -0.3, 0.8, 0.2])
    refs = torch.tensor([[-1.0, 0.0, 0.0, 0.0, 0.0]] * 2)
    expected = torch.tensor([True, False, False, False, False])
    case = tabular_case("only x0", x, 0, refs, expected)
    settings = EvaluationSettings(methods=(METHOD_IG, METHOD_GRAD_X_INPUT), ig_steps=8,
                                  curve_points=N_FEATURES + 1)
    result = evaluate(loaded_for(ReadsFeatureZero()), [case], settings)
    outcome = result.cases[0]
    ig = outcome.outcome(METHOD_IG)
    # Feature 0 ranks first, so deleting it at the first step takes f to f(baseline) at once:
    # the curve over fractions 0, .2, ..., 1 is [1, 0, 0, 0, 0, 0], area .5 * .2 * 1 = 0.1;
    # insertion is [0, 1, 1, 1, 1, 1], area .1 + .8 = 0.9.
    np.testing.assert_allclose(ig.deletion, [1, 0, 0, 0, 0, 0], atol=1e-12,
                               err_msg="deletion curve when the used feature ranks first")
    np.testing.assert_allclose(ig.insertion, [0, 1, 1, 1, 1, 1], atol=1e-12,
                               err_msg="insertion curve when the used feature ranks first")
    assert ig.deletion_auc == pytest.approx(0.1, abs=1e-12), f"deletion AUC {ig.deletion_auc}"
    assert ig.insertion_auc == pytest.approx(0.9, abs=1e-12), f"insertion AUC {ig.insertion_auc}"
    np.testing.assert_allclose(ig.scores, [2.0, 0, 0, 0, 0], atol=1e-12,
                               err_msg="IG of 2 x_0 from 0 is 2 x_0 on feature 0 only")
    assert ig.delta == pytest.approx(0.0, abs=1e-12), f"completeness error {ig.delta}"
    assert (ig.precision_at_k, ig.pointing_game, ig.mask_share) == (1.0, 1.0, 1.0), \
        "the one expected feature is the top one and holds all positive attribution"
    assert outcome.f_input == pytest.approx(2.0) and outcome.f_baseline == pytest.approx(0.0), \
        "f(x) and f(baseline) of the target"
    assert outcome.disagreement == pytest.approx(0.0, abs=1e-12), \
        "IG and gradient x input coincide for a linear model from zero: no disagreement"
    assert 0.1 < outcome.random_deletion_auc < 0.9, \
        f"random orders delete feature 0 somewhere in the middle: {outcome.random_deletion_auc}"
    summary = result.summaries()[0]
    assert summary.beats_random_deletion_rate == 1.0, "IG beats random on this case"


def test_every_method_gives_the_same_outcome_whatever_the_batch() -> None:
    model = mlp(seed=3)
    cases = random_cases(6)
    alone = evaluate(loaded_for(model, 3), cases,
                     EvaluationSettings(ig_steps=8, ig2_steps=6, smoothgrad_samples=3,
                                        gradient_shap_samples=4, cases_per_batch=1))
    together = evaluate(loaded_for(model, 3), cases,
                        dataclasses.replace(alone.settings, cases_per_batch=6))
    assert [c.case_id for c in together.cases] == [c.case_id for c in cases], "case order kept"
    for a, b in zip(alone.cases, together.cases, strict=True):
        assert a.random_deletion_auc == pytest.approx(b.random_deletion_auc, abs=1e-12), \
            f"{a.case_id}: the random reference depends on the batch"
        for method in ALL_METHODS:
            one, many = a.outcome(method), b.outcome(method)
            np.testing.assert_allclose(one.scores, many.scores, rtol=1e-9, atol=1e-12,
                                       err_msg=f"{a.case_id} {method}: scores depend on batch")
            assert one.deletion_auc == pytest.approx(many.deletion_auc, abs=1e-9), \
                f"{a.case_id} {method}: deletion AUC depends on the batch"


def test_batched_cases_share_model_calls() -> None:
    def ig_calls(n_cases: int, per_batch: int) -> int:
        counting = CountingModule(mlp(seed=1))
        evaluate(loaded_for(counting, 3), random_cases(n_cases),
                 EvaluationSettings(methods=(METHOD_IG,), ig_steps=8, cases_per_batch=per_batch))
        return counting.calls

    one_case, one_batch, unbatched = ig_calls(1, 8), ig_calls(8, 8), ig_calls(8, 1)
    # Predictions, IG and the curves (random ones included) are shared by the batch: rows may
    # split into a chunk or two more as they grow, but calls must not grow with the cases.
    assert one_batch <= one_case + 2, \
        f"8 batched cases should share their model calls: {one_batch} vs {one_case} for one"
    # One case per batch: everything but the engine's one-off memory probe repeats per case.
    assert unbatched >= 8 * (one_case - MEMORY_PROBE_CALLS), \
        f"unbatched cases should each pay their own calls: {unbatched} in all"


def test_stop_keeps_finished_cases_and_resume_finishes_only_the_rest() -> None:
    model = mlp(seed=2)
    cases = random_cases(6)
    settings = EvaluationSettings(methods=(METHOD_IG, METHOD_GRAD_X_INPUT), ig_steps=8,
                                  cases_per_batch=2)
    asked = {"n": 0}
    seen: list[CaseOutcome] = []

    def stop_after_one_batch() -> bool:
        asked["n"] += 1
        return asked["n"] > 1

    partial = evaluate(loaded_for(model, 3), cases, settings, should_stop=stop_after_one_batch,
                       on_case=seen.append)
    assert partial.cancelled, "a stop request must mark the result cancelled"
    assert [c.case_id for c in partial.cases] == ["case 0", "case 1"], \
        f"the first batch is kept: {[c.case_id for c in partial.cases]}"
    assert [c.case_id for c in seen] == ["case 0", "case 1"], "on_case saw each finished case"
    counting = CountingModule(model)
    resumed = evaluate(loaded_for(counting, 3), cases, settings, done=partial.cases)
    full = evaluate(loaded_for(model, 3), cases, settings)
    assert not resumed.cancelled and len(resumed.cases) == 6, "resume finishes the set"
    assert resumed.cases[:2] == partial.cases, "finished cases are reused, not recomputed"
    for a, b in zip(resumed.cases, full.cases, strict=True):
        assert a.outcome(METHOD_IG).deletion_auc == pytest.approx(
            b.outcome(METHOD_IG).deletion_auc, abs=1e-12), f"{a.case_id} differs after resume"
    fresh = CountingModule(model)
    evaluate(loaded_for(fresh, 3), cases[2:], settings)
    assert counting.calls == fresh.calls, \
        f"resume should cost what the 4 remaining cases cost: {counting.calls} vs {fresh.calls}"


def test_progress_reports_every_case_and_the_total() -> None:
    reports: list[tuple[int, int, str]] = []
    evaluate(loaded_for(mlp(), 3), random_cases(5),
             EvaluationSettings(methods=(METHOD_IG,), ig_steps=4, cases_per_batch=2),
             progress=lambda done, total, message: reports.append((done, total, message)))
    assert reports[-1][:2] == (5, 5), f"last report should be 5 of 5, got {reports[-1]}"
    assert {r[1] for r in reports} == {5}, "the total never changes"
    assert [r[0] for r in reports] == sorted(r[0] for r in reports), "done never goes back"


@pytest.mark.parametrize("change, words", [
    ({"methods": ("IG", "LIME")}, "LIME"),
    ({"methods": ()}, "none chosen"),
    ({"ig_steps": 0}, "ig_steps"),
    ({"curve_points": 1}, "curve_points"),
])
def test_bad_settings_are_named(change: dict, words: str) -> None:
    with pytest.raises(EvaluationInputError, match=words):
        evaluate(loaded_for(mlp(), 3), random_cases(1),
                 dataclasses.replace(EvaluationSettings(), **change))


def test_duplicate_case_names_are_refused() -> None:
    cases = random_cases(2)
    cases[1] = dataclasses.replace(cases[1], case_id=cases[0].case_id)
    with pytest.raises(EvaluationInputError, match="unique"):
        evaluate(loaded_for(mlp(), 3), cases, EvaluationSettings(methods=(METHOD_IG,)))


def _outcome(method: str, deletion_auc: float, insertion_auc: float,
             relative_delta: float) -> MethodOutcome:
    nothing = np.zeros(2)
    return MethodOutcome(method, nothing, nothing, nothing, deletion_auc, insertion_auc,
                         relative_delta, relative_delta, math.nan, math.nan, math.nan, math.nan,
                         0.5, 10)


def test_summary_statistics_by_hand() -> None:
    cases = []
    for i, (d, ins, rd, rnd) in enumerate([(0.1, 0.9, 0.01, 0.5), (0.3, 0.6, -0.04, 0.2),
                                           (0.2, 0.8, math.nan, 0.4)]):
        cases.append(CaseOutcome(
            case_id=str(i), target=0, label=None, predicted=0, f_input=1.0, f_baseline=0.0,
            fractions=np.linspace(0, 1, 2), random_deletion=np.zeros(2),
            random_insertion=np.zeros(2), random_deletion_auc=rnd, random_insertion_auc=0.7,
            outcomes=(_outcome("IG", d, ins, rd),), disagreement=math.nan))
    summary = summarise_method(cases, "IG")
    assert summary.deletion_auc_mean == pytest.approx(0.2), "mean of .1, .3, .2"
    assert summary.insertion_auc_median == pytest.approx(0.8), "median of .9, .6, .8"
    assert summary.abs_relative_delta_median == pytest.approx(0.025), "NaN is left out"
    assert summary.abs_relative_delta_max == pytest.approx(0.04), "max of |.01|, |-.04|"
    assert summary.beats_random_deletion_rate == pytest.approx(2 / 3), \
        ".1 < .5 and .2 < .4 beat random; .3 > .2 does not"
    assert summary.beats_random_insertion_rate == pytest.approx(2 / 3), "0.9 and 0.8 > 0.7"
    assert summary.seconds_total == pytest.approx(1.5), "3 x 0.5 s"
    assert math.isnan(summary.precision_at_k_mean), "no expectations: NaN, not 0"


def test_mean_curve_interpolates_cases_of_different_lengths_and_skips_nan() -> None:
    def case(fractions: list[float], curve: list[float]) -> CaseOutcome:
        return CaseOutcome(
            case_id=str(len(fractions)), target=0, label=None, predicted=0, f_input=1.0,
            f_baseline=0.0, fractions=np.array(fractions), random_deletion=np.array(curve),
            random_insertion=np.array(curve), random_deletion_auc=0.0,
            random_insertion_auc=0.0, outcomes=(), disagreement=math.nan)

    short = case([0.0, 1.0], [1.0, 0.0])
    long = case([0.0, 0.5, 1.0], [1.0, 1.0, math.nan])
    grid = np.array([0.0, 0.5, 1.0])
    mean = mean_curve([short, long], lambda c: c.random_deletion, grid)
    # short interpolates to [1, .5, 0]; long is [1, 1, NaN] -> means [1, .75, 0 (NaN left out)]
    np.testing.assert_allclose(mean, [1.0, 0.75, 0.0], err_msg="interpolated NaN-aware mean")
    assert np.isnan(mean_curve([], lambda c: c.random_deletion, grid)).all(), "no case: NaN"


def test_a_removal_value_other_than_the_baseline_drives_the_curves() -> None:
    x = torch.tensor([1.0, 0.5, -0.3, 0.8, 0.2])
    case = tabular_case("only x0", x, 0, torch.zeros(2, 5))
    moved = dataclasses.replace(case, removal=torch.full((1, 5), 0.5))
    settings = EvaluationSettings(methods=(METHOD_IG,), ig_steps=8, curve_points=6)
    result = evaluate(loaded_for(ReadsFeatureZero()), [moved],
                      dataclasses.replace(settings, removal="half"))
    outcome = result.cases[0]
    assert outcome.f_baseline == pytest.approx(1.0), "f at the removal value 0.5 is 2 * 0.5"
    np.testing.assert_allclose(outcome.outcome(METHOD_IG).scores, [2.0, 0, 0, 0, 0],
                               atol=1e-12, err_msg="IG still integrates from its baseline 0")
    np.testing.assert_allclose(outcome.outcome(METHOD_IG).deletion, [1, 0, 0, 0, 0, 0],
                               atol=1e-12, err_msg="normalised by f(x) - f(removal)")
    with pytest.raises(EvaluationInputError, match="removal"):
        evaluate(loaded_for(ReadsFeatureZero()), [moved], settings)
