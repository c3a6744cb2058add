"""IG2's error bar and path diagnostic: the step-halving estimates are the quadratures they
claim to be, the companion paths do not touch the map, the references' bound behaves, the
reach is D(GradCF) / D(x), and the estimate covers the true error (slow)."""

from __future__ import annotations

import math

import pytest
import torch

from attribution_core import ResultCache, ig2
from attribution_core.methods._ig2_trust import SHORT_PATH_REACH, union_bound_level
from attribution_core.methods.ig2 import trust_summary
from tests.unit.models_for_tests import CountingModule
from tests.unit.test_ig2 import class_contrast, smooth_cnn, smooth_mlp


@pytest.fixture(autouse=True)
def float64_default():
    previous, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(previous)
    torch.set_num_threads(threads)


def _path(model: torch.nn.Module, x: torch.Tensor, ref: torch.Tensor, steps: int, eta: float
          ) -> list[torch.Tensor]:
    """The GradPath of one reference, point by point (IG2.md, l2, no box)."""
    rep, target_rep = model[:-1], model[:-1](ref).detach().flatten()
    points = [x.clone()]
    for _ in range(steps):
        z = points[-1].detach().requires_grad_(True)
        d = torch.autograd.grad(((rep(z).flatten() - target_rep) ** 2).mean(), z)[0]
        points.append((points[-1] - eta * d / d.norm()).detach())
    return points


def _grad(model: torch.nn.Module, z: torch.Tensor, target: int) -> torch.Tensor:
    z = z.detach().requires_grad_(True)
    return torch.autograd.grad(model(z)[0, target], z)[0]


def _coarse(model: torch.nn.Module, points: list[torch.Tensor], target: int, rule: str
            ) -> torch.Tensor:
    """The same path on every other point (and its last point for an odd count)."""
    total = torch.zeros_like(points[0])
    k = 0
    while k < len(points) - 1:
        end = min(k + 2, len(points) - 1)
        a, b = points[k], points[end]
        if rule == "left":
            gradient = _grad(model, a, target)
        elif rule == "trapezoid":
            gradient = (_grad(model, a, target) + _grad(model, b, target)) / 2
        else:  # middle: the first fine segment's midpoint
            gradient = _grad(model, (points[k] + points[k + 1]) / 2, target)
        total += gradient * (a - b)
        k = end
    return total


@pytest.mark.parametrize("rule", ["trapezoid", "left", "middle"])
@pytest.mark.parametrize("steps", [7, 8])
def test_same_path_halving_is_the_coarse_quadrature_of_the_same_points(rule: str,
                                                                        steps: int) -> None:
    model = smooth_mlp(3)
    x, refs, target = class_contrast(model, (10,), 3, k=3)
    result = ig2(model, x, refs, target=target, n_steps=steps, step_size=0.1, rule=rule)
    expected = torch.stack([_coarse(model, _path(model, x, refs[r:r + 1], steps, 0.1), target,
                                    rule) for r in range(3)]).mean(0)
    assert result.step_change is not None and result.convergence is not None, \
        "every result carries the convergence estimate"
    torch.testing.assert_close(result.attributions - result.step_change, expected, atol=1e-12,
                               rtol=0, msg=f"{rule}, T={steps}: the coarse grid is wrong")
    assert result.convergence_steps_from == "same path, every other point", "labelled"
    assert float(result.step_change.abs().max()) > 0, "the grids differ on a curved path"


@pytest.mark.parametrize("rule", ["trapezoid", "left", "middle"])
@pytest.mark.parametrize("early_stop", [False, True])
def test_halving_companions_leave_the_map_alone_and_are_the_half_steps_run(
        rule: str, early_stop: bool) -> None:
    model = CountingModule(smooth_cnn(3))
    x, refs, target = class_contrast(model.inner, (1, 8, 8), 3, k=3, box=True)
    x = torch.cat([x, x.flip(-1)])  # two explicands, one batched path
    steps, eta = 9, 0.1
    common = dict(target=target, rule=rule, early_stop=early_stop, clip=(0.0, 1.0),
                  representation="inner.6:input")
    plain = ig2(model, x, refs, n_steps=steps, step_size=eta, **common)  # type: ignore[arg-type]
    calls = model.calls
    halved = ig2(model, x, refs, n_steps=steps, step_size=eta, halving=True,
                 **common)  # type: ignore[arg-type]
    assert model.calls - calls == halved.forward_calls == plain.forward_calls, \
        "the companions ride in the same model calls"
    half = ig2(model, x, refs, n_steps=steps // 2, step_size=eta * steps / (steps // 2),
               **common)  # type: ignore[arg-type]
    for name in ("attributions", "distance_trace", "f_path", "counterfactuals", "delta"):
        torch.testing.assert_close(getattr(halved, name), getattr(plain, name), atol=1e-12,
                                   rtol=0, msg=f"{name} must not depend on the companions")
    torch.testing.assert_close(halved.attributions - halved.step_change, half.attributions,
                               atol=1e-12, rtol=0, msg="the companions are the half-steps run")
    assert halved.convergence_steps_from == "half-steps path", "labelled"
    assert torch.equal(halved.n_evaluations, plain.n_evaluations + half.n_evaluations), \
        "the companions' rows are counted"


def test_references_part_is_nan_for_one_reference_and_shrinks_with_more() -> None:
    model = smooth_mlp(5)
    x, refs, target = class_contrast(model, (10,), 5, k=16)
    one = ig2(model, x, refs[:1], target=target, n_steps=8)
    assert math.isnan(float(one.convergence[0])), "one reference: no spread, no estimate"
    assert math.isnan(trust_summary(one).references_part), "the summary says so too"
    few = ig2(model, x, refs[:4], target=target, n_steps=8)
    many = ig2(model, x, refs, target=target, n_steps=8)
    assert float(many.convergence_references[0]) < float(few.convergence_references[0]), \
        "16 references bound the error more tightly than 4"
    assert float(few.convergence[0]) == pytest.approx(
        float(few.convergence_references[0] + few.convergence_steps[0])), "the parts add up"


def test_union_bound_level_matches_student_t_in_the_one_feature_case() -> None:
    from scipy.stats import t as student_t

    sd = torch.tensor([[2.0], [0.0]])
    level = union_bound_level(sd, alpha=0.05, dof=7)
    assert float(level[0]) == pytest.approx(2.0 * student_t.isf(0.025, 7), rel=1e-6), \
        "one feature: the two-sided 95 % t quantile"
    assert float(level[1]) == 0.0, "no spread, no error"
    many = union_bound_level(torch.tensor([[1.0] * 100]), alpha=0.05, dof=7)
    assert float(many[0]) == pytest.approx(student_t.isf(0.05 / 200, 7), rel=1e-6), \
        "equal spreads: Bonferroni"
    small = union_bound_level(torch.tensor([[1.0] + [1e-6] * 99]), alpha=0.05, dof=7)
    assert float(small[0]) < float(many[0]), "features without spread do not widen the bound"


def test_reach_is_the_distance_left_and_flags_paths_that_stop_short() -> None:
    model = smooth_mlp(7)
    x, refs, target = class_contrast(model, (10,), 7, k=3)
    refs = torch.cat([refs, x])  # a reference equal to the explicand: nothing to walk
    far = ig2(model, x, refs, target=target, n_steps=64)
    trace = far.distance_trace[0]
    torch.testing.assert_close(far.path_reach[0, :3], trace[:3, -1] / trace[:3, 0],
                               msg="reach = D(GradCF) / D(x)")
    assert float(far.path_reach[0, 3]) == 0.0, "at the reference already: reach 0, no NaN"
    short = ig2(model, x, refs, target=target, n_steps=4, step_size=1e-4)
    summary = trust_summary(short)
    assert summary.short_paths == 3, f"tiny steps stop short: {summary.reach}"
    assert all(r > SHORT_PATH_REACH for r in summary.reach[:3]), summary.reach
    assert trust_summary(far).short_paths < 3, "a path as long as the distance gets closer"


def test_autocast_preview_runs_are_never_cached(tmp_path) -> None:
    model = smooth_mlp(8).float()
    x, refs, target = class_contrast(model.double(), (10,), 8, k=4)
    model = model.float()
    cache = ResultCache(disk_dir=tmp_path)
    result = ig2(model, x.float(), refs.float(), target=target, n_steps=6,
                 autocast=torch.bfloat16, cache=cache)
    assert not cache._memory and not list(tmp_path.iterdir()), "an autocast run is not stored"
    exact = ig2(model, x.float(), refs.float(), target=target, n_steps=6)
    assert result.attributions.dtype == torch.float32, "the map comes back in the input dtype"
    difference = float((result.attributions - exact.attributions).abs().max())
    assert 0 < difference < 0.1 * float(exact.attributions.abs().max()), \
        f"bf16 is close to, not equal to, fp32: {difference}"


@pytest.mark.slow
def test_convergence_estimate_covers_the_error_against_4x_steps_and_references() -> None:
    """40 digits inputs, 4 references and 16 steps each (Evaluate's reference count), against
    64 steps over 16 other references: the estimate is at or above the true error in >= 95 %."""
    from attribution_core.models.registry import load_model
    from attribution_core.validity.ig2_coverage import convergence_coverage

    torch.set_default_dtype(torch.float32)
    loaded = load_model("digits_cnn", "cpu")
    report = convergence_coverage(loaded, 40, n_steps=16, n_references=4,
                                  with_steps_error=False)
    assert len(report.runs) == 40, "forty runs"
    misses = [(r.index, r.estimate, r.true_error) for r in report.runs
              if r.estimate < r.true_error]
    assert report.coverage >= 0.95, f"coverage {report.coverage}: misses {misses}"
    assert all(r.true_error > 0 for r in report.runs), "the reference run differs: a real test"
