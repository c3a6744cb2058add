"""Instant, then exact, in a real browser: the labelled preview appears first, then the exact
result takes its place with the preview's distance from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.waits import RESULT_TIMEOUT_MS, UI_TIMEOUT_MS, choose, rerun, wait_idle

pytestmark = pytest.mark.e2e

WATCH = """() => {
  window.__seen = [];
  const note = () => {
    const text = document.body.innerText;
    for (const mark of ['PREVIEW', 'IG delta', 'Against the exact map']) {
      if (text.includes(mark) && !window.__seen.includes(mark)) window.__seen.push(mark);
    }
  };
  new MutationObserver(note).observe(document.body,
                                     {subtree: true, childList: true, characterData: true});
}"""


def test_preview_shows_first_then_the_exact_result(dashboard_url: str, page: object,
                                                   artifacts: Path) -> None:
    page.goto(f"{dashboard_url}/image")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Explain").wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    wait_idle(page)
    choose(page, "Input", "Bundled sample")
    # Steps no other test asks for: the exact result is computed here, never served from the
    # cache an earlier test on this server filled (a cached result needs no preview).
    steps = page.get_by_test_id("stSlider").filter(has_text="Steps").get_by_role("slider")
    thumb = steps.first
    shown = thumb.get_attribute("aria-valuetext") or thumb.inner_text()  # type: ignore
    wanted = int(shown) + 12
    thumb.focus()  # type: ignore[attr-defined]
    for _ in range(3):
        thumb.press("ArrowRight")  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "(args) => Number(args[0].getAttribute('aria-valuetext') || args[0].innerText) "
        "=== args[1]", arg=[thumb.element_handle(), wanted], timeout=UI_TIMEOUT_MS)
    wait_idle(page)
    page.evaluate(WATCH)  # type: ignore[attr-defined]
    rerun(page, page.get_by_role("button", name="Explain").click)  # type: ignore[attr-defined]
    page.get_by_text("IG delta").first.wait_for(timeout=RESULT_TIMEOUT_MS)  # type: ignore
    seen = page.evaluate("() => window.__seen")  # type: ignore[attr-defined]
    assert seen[:1] == ["PREVIEW"], f"the preview is the first thing shown: {seen}"
    assert "IG delta" in seen and "Against the exact map" in seen, f"then the exact: {seen}"
    text = page.inner_text("body")  # type: ignore[attr-defined]
    assert "PREVIEW" not in text, "the exact result has taken the preview's place"
    page.screenshot(path=str(artifacts / "image_after_preview.png"), full_page=True)  # type: ignore
