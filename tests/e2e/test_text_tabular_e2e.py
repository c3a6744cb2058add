"""The text and tabular pages in a real browser: type / upload, explain, see the results.

Uses the app server and browser fixtures of tests/e2e/conftest.py (``streamlit run
dashboard/app.py``, which routes every page file that exists) and the state waits of
tests/e2e/waits.py (no fixed sleeps). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from attribution_core.models import get_spec
from tests.e2e.waits import (
    CHARTS,
    RESULT_TIMEOUT_MS,
    UI_TIMEOUT_MS,
    choose,
    pick,
    rerun,
    wait_count,
    wait_drawn,
    wait_idle,
)

pytestmark = pytest.mark.e2e


def _explain(page: object, method: str, marker: str) -> None:
    choose(page, "Method", method)
    rerun(page, page.get_by_role("button", name="Explain").click)  # type: ignore[attr-defined]
    page.get_by_role("heading", name=marker).first.wait_for(  # type: ignore[attr-defined]
        timeout=RESULT_TIMEOUT_MS)
    # Plotly's bundle loads lazily: the charts appear a moment after the text around them.
    wait_drawn(page, 1)
    wait_idle(page)


def _no_traceback(page: object) -> None:
    assert page.locator(".stException").count() == 0, "no traceback on the page"  # type: ignore


def _open_text_page(page: object, url: str, model_title: str) -> None:
    page.goto(f"{url}/text")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Explain").wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    wait_idle(page)
    sidebar = page.get_by_test_id("stSidebar")  # type: ignore[attr-defined]
    pick(page, sidebar.get_by_test_id("stSelectbox").first, model_title)


def test_text_page_type_and_explain(dashboard_url: str, page: object, artifacts: Path) -> None:
    _open_text_page(page, dashboard_url, "Planted-cue")
    box = page.get_by_label("Text to explain")  # type: ignore[attr-defined]
    box.fill("our hotel felt wonderful this week .")
    rerun(page, lambda: box.press("Control+Enter"))
    _explain(page, "both", "IG2 reference sentences and paths")
    chips = page.locator("span[title^='word']")  # type: ignore[attr-defined]
    assert chips.count() >= 7 * 2, f"every word highlighted for IG and IG2: {chips.count()}"
    title = chips.filter(has_text="wonderful").first.get_attribute("title")
    assert title is not None and "wonderful = " in title, f"hover shows the number: {title}"
    assert page.get_by_text("IG2 reference sentences and paths").count() == 1, "IG2 details"
    assert wait_count(page, CHARTS, 6) >= 6, "bars, gauges, curve, trace"
    _no_traceback(page)
    page.screenshot(path=str(artifacts / "text_both.png"), full_page=True)  # type: ignore

    choose(page, "Show", "sub-word tokens")
    # The token view is drawn by the run the choice starts: wait for it, not for the radio.
    page.locator("span[title^='token']").nth(6).wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    assert page.locator("span[title^='token']").count() >= 7, "the token view"  # type: ignore
    box.fill("   ")
    rerun(page, lambda: box.press("Control+Enter"))
    page.get_by_text("The text is empty").first.wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    assert page.get_by_text("Ranked tokens").count() == 1, "the last result stays"  # type: ignore
    _no_traceback(page)
    page.screenshot(path=str(artifacts / "text_empty.png"), full_page=True)  # type: ignore



def test_text_page_shows_special_and_sub_word_tokens(dashboard_url: str, page: object,
                                                     artifacts: Path) -> None:
    _open_text_page(page, dashboard_url, "MiniLM zero-shot sentiment")
    box = page.get_by_label("Text to explain")  # type: ignore[attr-defined]
    box.fill("An unbelievably heartwarming masterpiece!")
    rerun(page, lambda: box.press("Control+Enter"))
    _explain(page, "IG", "Completeness")
    choose(page, "Show", "sub-word tokens")
    page.locator("span[title^='token']").first.wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    wait_idle(page)
    page.screenshot(path=str(artifacts / "text_minilm_tokens.png"), full_page=True)  # type: ignore
    assert page.locator("span[title*='[CLS]']").count() >= 1, "[CLS] is shown"  # type: ignore
    assert page.get_by_text("special tokens ([CLS]").count() >= 1, "their share is stated"  # type: ignore
    _no_traceback(page)


def test_tabular_page_upload_csv_and_explain(dashboard_url: str, page: object,
                                            artifacts: Path, tmp_path: Path) -> None:
    spec = get_spec("wine_mlp")
    names = list(spec.metadata["feature_names"])
    means = list(spec.metadata["train_mean_raw"])
    rows = [[m * (1.04 + 0.04 * i) for m in means] for i in range(5)]
    rows.append(["oops", *means[1:]])
    csv = tmp_path / "wine_rows.csv"
    csv.write_text("\n".join([",".join(names)] + [",".join(str(v) for v in r) for r in rows])
                   + "\n")
    page.goto(f"{dashboard_url}/tabular")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Explain").wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    wait_idle(page)
    sidebar = page.get_by_test_id("stSidebar")  # type: ignore[attr-defined]
    pick(page, sidebar.get_by_test_id("stSelectbox").first, "Wine MLP")
    _explain(page, "IG", "Completeness")
    page.screenshot(path=str(artifacts / "tabular_row_ig.png"), full_page=True)  # type: ignore

    choose(page, "Input", "Upload CSV")
    rerun(page, lambda: page.locator("input[type=file]").first.set_input_files(  # type: ignore
        str(csv)))
    page.get_by_text("'oops' is not a number").first.wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    _explain(page, "both", "All CSV rows (5)")
    assert page.get_by_text("IG2 reference rows and paths").count() == 1, "IG2 details"  # type: ignore
    assert wait_count(page, CHARTS, 7) >= 7, "bars, waterfalls, gauges"
    _no_traceback(page)
    page.screenshot(path=str(artifacts / "tabular_csv_both.png"), full_page=True)  # type: ignore
