"""The Evaluate page in a real browser: run a small bundled set, see tables and charts; stop a
run half way and continue it (the one flow AppTest cannot click through while a run is going).

Uses the app server and browser fixtures of tests/e2e/conftest.py. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
RESULT_TIMEOUT_MS = 300_000


def _wait_idle(page: object) -> None:
    """Streamlit shows a 'Running' status widget while the script runs; wait until it is gone."""
    page.wait_for_timeout(400)  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
        timeout=RESULT_TIMEOUT_MS)


def _open(page: object, url: str, n_cases: int) -> None:
    page.goto(f"{url}/evaluate")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Run evaluation").wait_for(timeout=90_000)  # type: ignore
    _wait_idle(page)
    box = page.get_by_role("spinbutton", name="Number of cases")  # type: ignore
    box.fill(str(n_cases))
    box.press("Enter")
    _wait_idle(page)
    page.get_by_text(f"{n_cases} cases ready").first.wait_for(timeout=60_000)  # type: ignore


def _no_traceback(page: object) -> None:
    assert page.locator(".stException").count() == 0, "no traceback on the page"  # type: ignore


def test_five_digits_cases_show_tables_and_charts(dashboard_url: str, page: object,
                                                  artifacts: Path) -> None:
    _open(page, dashboard_url, 5)
    page.get_by_role("button", name="Run evaluation").click()  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Summary per method").wait_for(  # type: ignore
        timeout=RESULT_TIMEOUT_MS)
    _wait_idle(page)
    # Drawn when the run ends, not seconds later: the page warms the chart renderer up first.
    drawn = page.evaluate(  # type: ignore[attr-defined]
        "() => document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .main-svg').length")
    charts = page.get_by_test_id("stPlotlyChart")  # type: ignore[attr-defined]
    # the warm-up, curves, AUCs, completeness, six maps, the case's curves
    assert charts.count() == 11, f"ten charts for digits with every method: {charts.count()}"
    assert drawn >= 11, f"every chart is drawn as the page turns idle: {drawn} svg layers"
    tables = page.get_by_test_id("stDataFrame")  # type: ignore[attr-defined]
    tables.nth(1).wait_for(timeout=30_000)  # the table renderer loads on first use
    assert tables.count() == 2, "summary and disagreement tables"
    report = page.get_by_role("button", name="HTML report")  # type: ignore[attr-defined]
    report.wait_for(timeout=30_000)
    assert report.count() == 1, "report download"
    _no_traceback(page)
    page.wait_for_timeout(1500)  # type: ignore[attr-defined]  # let Plotly finish drawing
    page.screenshot(path=str(artifacts / "evaluate_digits.png"), full_page=True)  # type: ignore


@pytest.mark.parametrize("modality, words", [("Text", "Boxed tokens are the expected ones"),
                                             ("Tabular", "marks the expected features")])
def test_text_and_tabular_case_views(dashboard_url: str, page: object, artifacts: Path,
                                     modality: str, words: str) -> None:
    page.goto(f"{dashboard_url}/evaluate")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Run evaluation").wait_for(timeout=90_000)  # type: ignore
    page.get_by_test_id("stRadio").filter(has_text="Modality").get_by_text(  # type: ignore
        modality, exact=True).click()
    _wait_idle(page)
    box = page.get_by_role("spinbutton", name="Number of cases")  # type: ignore[attr-defined]
    box.fill("5")
    box.press("Enter")
    _wait_idle(page)
    page.get_by_text("5 cases ready").first.wait_for(timeout=60_000)  # type: ignore
    page.get_by_role("button", name="Run evaluation").click()  # type: ignore[attr-defined]
    page.get_by_text(words).first.wait_for(timeout=RESULT_TIMEOUT_MS)  # type: ignore
    _wait_idle(page)
    page.get_by_test_id("stPlotlyChart").nth(4).wait_for(timeout=60_000)  # type: ignore
    page.wait_for_timeout(1500)  # type: ignore[attr-defined]
    _no_traceback(page)
    page.screenshot(path=str(artifacts / f"evaluate_{modality.lower()}.png"),  # type: ignore
                    full_page=True)


def test_stop_half_way_then_continue(dashboard_url: str, page: object, artifacts: Path) -> None:
    _open(page, dashboard_url, 30)
    page.get_by_role("button", name="Run evaluation").click()  # type: ignore[attr-defined]
    # Stop once the first batch of ten is done (its cases are then stored).
    page.get_by_text(re.compile(r"case (1[1-9]|2\d) of 30")).first.wait_for(  # type: ignore
        timeout=RESULT_TIMEOUT_MS)
    page.get_by_role("button", name="Stop").click()  # type: ignore[attr-defined]
    stopped = page.get_by_text(re.compile(r"Stopped after (10|20) of 30 cases"))  # type: ignore
    stopped.first.wait_for(timeout=RESULT_TIMEOUT_MS)
    _wait_idle(page)
    page.get_by_role("heading", name="Summary per method").wait_for(timeout=60_000)  # type: ignore
    assert page.get_by_text(re.compile(r"partial: (10|20) of 30 cases")).count() == 1, \
        "the partial result is shown"  # type: ignore
    page.get_by_test_id("stPlotlyChart").nth(9).wait_for(timeout=60_000)  # type: ignore
    page.wait_for_timeout(1500)  # type: ignore[attr-defined]  # let Plotly finish drawing
    _no_traceback(page)
    page.screenshot(path=str(artifacts / "evaluate_stopped.png"), full_page=True)  # type: ignore

    page.get_by_role("button", name="Continue").click()  # type: ignore[attr-defined]
    page.get_by_text(re.compile(r"· 30 cases ·")).first.wait_for(  # type: ignore
        timeout=RESULT_TIMEOUT_MS)
    _wait_idle(page)
    assert page.get_by_text(re.compile("Stopped after")).count() == 0, "the run is complete"  # type: ignore
    assert page.get_by_role("button", name="Stop").count() == 0, "no Stop button once done"  # type: ignore
    _no_traceback(page)
