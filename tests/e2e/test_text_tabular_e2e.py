"""The text and tabular pages in a real browser: type / upload, explain, see the results.

Uses the app server and browser fixtures of tests/e2e/conftest.py (``streamlit run
dashboard/app.py``, which routes every page file that exists). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from attribution_core.models import get_spec

pytestmark = pytest.mark.e2e
RESULT_TIMEOUT_MS = 180_000


def _wait_idle(page: object) -> None:
    """Streamlit shows a 'Running' status widget while the script runs; wait until it is gone."""
    page.wait_for_timeout(400)  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
        timeout=RESULT_TIMEOUT_MS)


def _choose(page: object, group: str, option: str) -> None:
    page.get_by_test_id("stRadio").filter(has_text=group).get_by_text(  # type: ignore
        option, exact=True).click()
    _wait_idle(page)


def _explain(page: object, method: str, marker: str) -> None:
    _choose(page, "Method", method)
    page.get_by_role("button", name="Explain").click()  # type: ignore[attr-defined]
    _wait_idle(page)
    page.get_by_role("heading", name=marker).first.wait_for(  # type: ignore[attr-defined]
        timeout=RESULT_TIMEOUT_MS)
    # Plotly's bundle loads lazily: the charts appear a moment after the text around them.
    page.get_by_test_id("stPlotlyChart").first.wait_for(timeout=60_000)  # type: ignore
    _wait_idle(page)


def _no_traceback(page: object) -> None:
    assert page.locator(".stException").count() == 0, "no traceback on the page"  # type: ignore


def _open_text_page(page: object, url: str, model_title: str) -> None:
    page.goto(f"{url}/text")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Explain").wait_for(timeout=60_000)  # type: ignore
    _wait_idle(page)
    sidebar = page.get_by_test_id("stSidebar")  # type: ignore[attr-defined]
    sidebar.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name=model_title).first.click()  # type: ignore[attr-defined]
    _wait_idle(page)


def test_text_page_type_and_explain(dashboard_url: str, page: object, artifacts: Path) -> None:
    _open_text_page(page, dashboard_url, "Planted-cue")
    box = page.get_by_label("Text to explain")  # type: ignore[attr-defined]
    box.fill("our hotel felt wonderful this week .")
    box.press("Control+Enter")
    _wait_idle(page)
    _explain(page, "both", "IG2 reference sentences and paths")
    chips = page.locator("span[title^='word']")  # type: ignore[attr-defined]
    assert chips.count() >= 7 * 2, f"every word highlighted for IG and IG2: {chips.count()}"
    title = chips.filter(has_text="wonderful").first.get_attribute("title")
    assert title is not None and "wonderful = " in title, f"hover shows the number: {title}"
    assert page.get_by_text("IG2 reference sentences and paths").count() == 1, "IG2 details"
    assert page.get_by_test_id("stPlotlyChart").count() >= 6, "bars, gauges, curve, trace"
    _no_traceback(page)
    page.screenshot(path=str(artifacts / "text_both.png"), full_page=True)  # type: ignore

    _choose(page, "Show", "sub-word tokens")
    assert page.locator("span[title^='token']").count() >= 7, "the token view"  # type: ignore
    box.fill("   ")
    box.press("Control+Enter")
    _wait_idle(page)
    page.get_by_text("The text is empty").first.wait_for(timeout=30_000)  # type: ignore
    assert page.get_by_text("Ranked tokens").count() == 1, "the last result stays"  # type: ignore
    _no_traceback(page)
    page.screenshot(path=str(artifacts / "text_empty.png"), full_page=True)  # type: ignore



def test_text_page_shows_special_and_sub_word_tokens(dashboard_url: str, page: object,
                                                     artifacts: Path) -> None:
    _open_text_page(page, dashboard_url, "MiniLM zero-shot sentiment")
    box = page.get_by_label("Text to explain")  # type: ignore[attr-defined]
    box.fill("An unbelievably heartwarming masterpiece!")
    box.press("Control+Enter")
    _wait_idle(page)
    _explain(page, "IG", "Completeness")
    _choose(page, "Show", "sub-word tokens")
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
    page.get_by_role("button", name="Explain").wait_for(timeout=60_000)  # type: ignore
    _wait_idle(page)
    sidebar = page.get_by_test_id("stSidebar")  # type: ignore[attr-defined]
    sidebar.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name="Wine MLP").first.click()  # type: ignore[attr-defined]
    _wait_idle(page)
    _explain(page, "IG", "Completeness")
    page.screenshot(path=str(artifacts / "tabular_row_ig.png"), full_page=True)  # type: ignore

    _choose(page, "Input", "Upload CSV")
    page.locator("input[type=file]").first.set_input_files(str(csv))  # type: ignore
    _wait_idle(page)
    page.get_by_text("'oops' is not a number").first.wait_for(timeout=30_000)  # type: ignore
    _explain(page, "both", "All CSV rows (5)")
    assert page.get_by_text("IG2 reference rows and paths").count() == 1, "IG2 details"  # type: ignore
    assert page.get_by_test_id("stPlotlyChart").count() >= 7, "bars, waterfalls, gauges"  # type: ignore
    _no_traceback(page)
    page.screenshot(path=str(artifacts / "tabular_csv_both.png"), full_page=True)  # type: ignore
