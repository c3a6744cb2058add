"""The Evaluate page in a real browser: run a small bundled set, see tables and charts; stop a
run half way and continue it (the one flow AppTest cannot click through while a run is going).

Uses the app server and browser fixtures of tests/e2e/conftest.py and the state waits of
tests/e2e/waits.py (no fixed sleeps). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.waits import (
    CHARTS,
    RESULT_TIMEOUT_MS,
    TABLES,
    UI_TIMEOUT_MS,
    rerun,
    wait_count,
    wait_drawn,
    wait_idle,
)

pytestmark = pytest.mark.e2e


def _open(page: object, url: str, n_cases: int) -> None:
    page.goto(f"{url}/evaluate")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Run evaluation").wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    wait_idle(page)
    _set_cases(page, n_cases)


def _set_cases(page: object, n_cases: int) -> None:
    box = page.get_by_role("spinbutton", name="Number of cases")  # type: ignore[attr-defined]
    box.fill(str(n_cases))
    rerun(page, lambda: box.press("Enter"))
    page.get_by_text(f"{n_cases} cases ready").first.wait_for(  # type: ignore[attr-defined]
        timeout=RESULT_TIMEOUT_MS)


def _no_traceback(page: object) -> None:
    assert page.locator(".stException").count() == 0, "no traceback on the page"  # type: ignore


def test_five_digits_cases_show_tables_and_charts(dashboard_url: str, page: object,
                                                  artifacts: Path) -> None:
    _open(page, dashboard_url, 5)
    rerun(page, page.get_by_role("button", name="Run evaluation").click)  # type: ignore
    page.get_by_role("heading", name="Summary per method").wait_for(  # type: ignore
        timeout=RESULT_TIMEOUT_MS)
    wait_idle(page)
    # the warm-up, curves, AUCs, completeness, six maps, the case's curves
    charts = wait_count(page, CHARTS, 11)
    assert charts == 11, f"eleven charts for digits with every method: {charts}"
    drawn = wait_drawn(page, 11)
    assert drawn == 11, f"every chart is drawn: {drawn} of 11"
    tables = wait_count(page, TABLES, 2)  # the table renderer loads on first use
    assert tables == 2, f"summary and disagreement tables: {tables}"
    report = page.get_by_role("button", name="HTML report")  # type: ignore[attr-defined]
    report.wait_for(timeout=UI_TIMEOUT_MS)
    assert report.count() == 1, "report download"
    _no_traceback(page)
    page.screenshot(path=str(artifacts / "evaluate_digits.png"), full_page=True)  # type: ignore


@pytest.mark.parametrize("modality, words", [("Text", "Boxed tokens are the expected ones"),
                                             ("Tabular", "marks the expected features")])
def test_text_and_tabular_case_views(dashboard_url: str, page: object, artifacts: Path,
                                     modality: str, words: str) -> None:
    page.goto(f"{dashboard_url}/evaluate")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Run evaluation").wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    wait_idle(page)
    rerun(page, page.get_by_test_id("stRadio").filter(has_text="Modality").get_by_text(  # type: ignore
        modality, exact=True).click)
    _set_cases(page, 5)
    rerun(page, page.get_by_role("button", name="Run evaluation").click)  # type: ignore
    page.get_by_text(words).first.wait_for(timeout=RESULT_TIMEOUT_MS)  # type: ignore
    wait_idle(page)
    charts = wait_count(page, CHARTS, 5)
    assert wait_drawn(page, charts) == charts, "every chart is drawn before the screenshot"
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
    wait_idle(page)
    page.get_by_role("heading", name="Summary per method").wait_for(  # type: ignore
        timeout=UI_TIMEOUT_MS)
    assert page.get_by_text(re.compile(r"partial: (10|20) of 30 cases")).count() == 1, \
        "the partial result is shown"  # type: ignore
    charts = wait_count(page, CHARTS, 10)
    assert wait_drawn(page, charts) == charts, "every chart is drawn before the screenshot"
    _no_traceback(page)
    page.screenshot(path=str(artifacts / "evaluate_stopped.png"), full_page=True)  # type: ignore

    page.get_by_role("button", name="Continue").click()  # type: ignore[attr-defined]
    page.get_by_text(re.compile(r"· 30 cases ·")).first.wait_for(  # type: ignore
        timeout=RESULT_TIMEOUT_MS)
    wait_idle(page)
    assert page.get_by_text(re.compile("Stopped after")).count() == 0, "the run is complete"  # type: ignore
    assert page.get_by_role("button", name="Stop").count() == 0, "no Stop button once done"  # type: ignore
    _no_traceback(page)
