"""IG2's convergence and path diagnostic in Evaluate, its report, the command line, and the
path diagnostic's best settings (per case in Evaluate, on calibration scenes in validity)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from attribution_core import ig2
from attribution_core.evaluation.cli import main
from attribution_core.evaluation.report import from_record, to_record
from attribution_core.evaluation.report_html import report_html
from attribution_core.evaluation.runner import evaluate
from attribution_core.evaluation.types import (
    METHOD_IG,
    METHOD_IG2,
    METHOD_IG2_BEST_PATH,
    METHOD_SALIENCY,
    EvaluationSettings,
)
from attribution_core.methods.ig2_tuning import best_by_reach, path_grid, resolve
from tests.unit.models_for_tests import mlp
from tests.unit.test_evaluation_runner import loaded_for, random_cases

pytestmark = pytest.mark.usefixtures("float64_default")


def _run(methods: tuple[str, ...]) -> object:
    settings = EvaluationSettings(methods=methods, ig_steps=8, ig2_steps=8, curve_points=5,
                                  random_orders=1)
    return evaluate(loaded_for(mlp(seed=2), n_out=3), random_cases(4), settings)


def test_evaluate_records_ig2_convergence_and_path_reach_per_case_and_method() -> None:
    result = _run((METHOD_IG, METHOD_IG2, METHOD_SALIENCY))
    for case in result.cases:  # type: ignore[attr-defined]
        ig2_outcome = case.outcome(METHOD_IG2)
        assert math.isfinite(ig2_outcome.convergence) and ig2_outcome.convergence > 0, \
            f"{case.case_id}: IG2 carries its map convergence"
        assert 0 <= ig2_outcome.path_reach <= 1.5 and 0 <= ig2_outcome.short_paths <= 1, \
            f"{case.case_id}: IG2's path reach {ig2_outcome.path_reach}"
        assert math.isnan(case.outcome(METHOD_SALIENCY).path_reach), "no path, no reach"
        assert math.isnan(case.outcome(METHOD_IG).path_reach), "IG has no GradPath"
    summary = {s.method: s for s in result.summaries()}  # type: ignore[attr-defined]
    values = [c.outcome(METHOD_IG2).convergence for c in result.cases]  # type: ignore[attr-defined]
    assert summary[METHOD_IG2].convergence_median == pytest.approx(statistics.median(values)), \
        "the summary's median is the cases' median"
    assert summary[METHOD_IG2].convergence_max == pytest.approx(max(values)), "and its max"
    assert math.isfinite(summary[METHOD_IG2].path_reach_median), "the reach is summarised"
    back = from_record(json.loads(json.dumps(to_record(result))))  # type: ignore[arg-type]
    again = back.cases[0].outcome(METHOD_IG2)
    assert again.path_reach == result.cases[0].outcome(METHOD_IG2).path_reach, \
        "the report round-trips the reach"  # type: ignore[attr-defined]
    html = report_html(result)  # type: ignore[arg-type]
    for words in ("map convergence median (IG, IG2)", "IG2 path reach", "IG2 paths stopped"):
        assert words in html, f"the HTML summary shows {words!r}"


def test_best_path_keeps_per_case_the_setting_that_got_closest() -> None:
    result = _run((METHOD_IG2, METHOD_IG2_BEST_PATH))
    for case in result.cases:  # type: ignore[attr-defined]
        best, plain = case.outcome(METHOD_IG2_BEST_PATH), case.outcome(METHOD_IG2)
        assert best.path_reach <= plain.path_reach + 1e-12, \
            f"{case.case_id}: the best path reaches at least as far as the defaults"
        assert best.n_evaluations > 3 * plain.n_evaluations, "every setting was run"


def test_best_by_reach_picks_the_lowest_median_reach_per_explicand() -> None:
    model = mlp(seed=4)
    x = torch.randn(3, 10, generator=torch.Generator().manual_seed(1))
    refs = torch.randn(3, 4, 10, generator=torch.Generator().manual_seed(2))
    grid = path_grid(default_is_auto=False)
    assert [s.name for s in grid][:2] == ["defaults", "path as long as the distance"], \
        "a fixed default eta is compared with a path as long as the distance"

    def run(setting):  # type: ignore[no-untyped-def]
        steps, eta, layer = resolve(setting, x, refs, 6, 0.002, None)
        return ig2(model, x, refs, target=0, n_steps=steps, step_size=eta,
                   representation=layer)

    tuned = best_by_reach(run, grid)
    for i in range(3):
        medians = {name: values[i] for name, values in tuned.reach_by_setting.items()}
        assert tuned.chosen[i] == min(medians, key=medians.__getitem__), \
            f"explicand {i}: {tuned.chosen[i]} chosen among {medians}"
        assert tuned.chosen[i] != "defaults", "tiny steps (eta 0.002 x 6) never get closest"
    chosen = run(next(s for s in grid if s.name == tuned.chosen[0]))
    torch.testing.assert_close(tuned.attributions[0], chosen.attributions[0],
                               msg="the chosen setting's own map is kept")


@pytest.mark.slow
def test_command_line_summary_carries_ig2_convergence_and_reach(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_default_dtype(torch.float32)
    status = main(["explain", "--model", "digits_cnn", "--bundled", "--n-cases", "2",
                   "--methods", "IG,IG2", "--ig-steps", "8", "--ig2-steps", "8",
                   "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    line = json.loads(next(x for x in captured.out.splitlines() if x.strip()))
    ig2_figures = line["methods"]["IG2"]
    for key in ("convergence_median", "convergence_max", "path_reach_median",
                "short_path_share"):
        assert isinstance(ig2_figures.get(key), float), f"IG2 {key} in the summary line"
    assert "path_reach_median" not in line["methods"]["IG"], "IG has no path"
    assert isinstance(line["methods"]["IG"].get("convergence_median"), float), "IG's too"
