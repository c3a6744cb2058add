"""The evaluation report's HTML file in a real browser: every figure renders, offline, no errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from attribution_core.evaluation.cases import bundled_cases
from attribution_core.evaluation.report import write_report
from attribution_core.evaluation.runner import evaluate
from attribution_core.evaluation.types import EvaluationResult, EvaluationSettings
from attribution_core.models import load_model

pytestmark = pytest.mark.e2e
RENDER_TIMEOUT_MS = 120_000  # a state wait: long enough for a loaded machine


def _expected_figures(result: EvaluationResult) -> int:
    """Counted from what the report promises, not from the page: 2 mean curves, 2 AUC boxes,
    completeness when a method has a finite error, agreement when masks exist, one map figure
    per disagreeing case, plus a bar chart of the input values for table rows (pictures and
    tokens are plain HTML)."""
    completeness = any(math.isfinite(o.relative_delta) for c in result.cases for o in c.outcomes)
    agreement = any(c.expected is not None for c in result.cases)
    per_case = 2 if result.modality == "tabular" else 1
    return 4 + int(completeness) + int(agreement) + per_case * len(result.most_disagreeing(10))


def _open(page: object, path: Path, expected: int) -> tuple[list[str], list[str]]:
    """Opens the report; returns (console errors, non-local requests) once figures are drawn."""
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # type: ignore
    page.on("pageerror", lambda e: errors.append(str(e)))  # type: ignore[attr-defined]
    page.on("request", lambda r: requests.append(r.url))  # type: ignore[attr-defined]
    page.goto(path.as_uri())  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {expected}",
        timeout=RENDER_TIMEOUT_MS)
    remote = [u for u in requests if not u.startswith(("file:", "data:", "blob:"))]
    return errors, remote


def test_report_renders_offline_in_chromium(page: object, artifacts: Path,
                                            tmp_path: Path) -> None:
    loaded = load_model("shapes_cnn", device="cpu")
    cases = bundled_cases(loaded, 4).cases
    settings = EvaluationSettings(methods=("IG", "IG2", "Saliency"), ig_steps=8, ig2_steps=8,
                                  ig2_references=2, curve_points=6, random_orders=2)
    result = evaluate(loaded, cases, settings)
    assert any(c.expected is not None for c in result.cases), "shapes cases carry masks"
    files = write_report(result, tmp_path)

    expected = _expected_figures(result)
    errors, remote = _open(page, files.html_path, expected)
    plots = page.locator(".js-plotly-plot").count()  # type: ignore[attr-defined]
    assert plots == expected, f"{expected} figures promised, {plots} rendered"
    assert page.locator(".main-svg").count() >= expected, "each figure draws an SVG"  # type: ignore
    assert page.locator("img.case-input").count() == len(result.most_disagreeing(10)), \
        "each case section shows its input picture"  # type: ignore[attr-defined]
    assert page.locator("g.heatmaplayer image, g.hm image").count() > 0, \
        "the heat maps must be drawn"  # type: ignore[attr-defined]
    assert not errors, f"the page must open without console errors: {errors}"
    assert not remote, f"the report must fetch nothing from the network: {remote}"
    page.screenshot(path=str(artifacts / "evaluation_report.png"), full_page=True)  # type: ignore


@pytest.mark.parametrize("model_name", ["cue_transformer", "wine_mlp"])
def test_text_and_tabular_reports_render(page: object, artifacts: Path, tmp_path: Path,
                                         model_name: str) -> None:
    loaded = load_model(model_name, device="cpu")
    settings = EvaluationSettings(methods=("IG", "Saliency"), ig_steps=8, curve_points=6,
                                  random_orders=2)
    result = evaluate(loaded, bundled_cases(loaded, 3).cases, settings)
    files = write_report(result, tmp_path)
    expected = _expected_figures(result)
    errors, remote = _open(page, files.html_path, expected)
    plots = page.locator(".js-plotly-plot").count()  # type: ignore[attr-defined]
    assert plots == expected, f"{expected} figures promised, {plots} rendered"
    assert page.locator(".js-plotly-plot g.barlayer path").count() > 0, \
        "the maps must be drawn as bars"  # type: ignore[attr-defined]
    if result.modality == "text":
        assert page.locator(".tokens span").count() >= len(result.most_disagreeing(10)), \
            "text cases show their coloured tokens"  # type: ignore[attr-defined]
    assert not errors, f"the page must open without console errors: {errors}"
    assert not remote, f"the report must fetch nothing from the network: {remote}"
    page.screenshot(path=str(artifacts / f"evaluation_report_{model_name}.png"),  # type: ignore
                    full_page=True)
