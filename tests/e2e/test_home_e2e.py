"""Home in a real browser: /home works, the explained example shows first, pages are linked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.waits import CHARTS, UI_TIMEOUT_MS, wait_count, wait_drawn, wait_idle

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("path", ["", "/home"])
def test_home_shows_an_explained_example(dashboard_url: str, page: object, artifacts: Path,
                                         path: str) -> None:
    page.goto(f"{dashboard_url}{path}")  # type: ignore[attr-defined]
    page.get_by_text("Why did the model say that?").wait_for(  # type: ignore[attr-defined]
        timeout=UI_TIMEOUT_MS)
    wait_count(page, CHARTS, 2)
    wait_idle(page)
    text = page.inner_text("body")  # type: ignore[attr-defined]
    assert "Page not found" not in text, f"{path or '/'} resolves to Home"
    assert wait_drawn(page, 2) >= 2, "IG and IG2 maps of the example are drawn"
    assert "Red pixels raised the score" in text, "one line says how to read them"
    for title in ("Image", "Text", "Tabular", "Evaluate"):
        assert page.get_by_role("link", name=title).count() >= 1, f"{title} is linked"  # type: ignore
    page.screenshot(path=str(artifacts / f"home{path.replace('/', '_')}.png"),  # type: ignore
                    full_page=True)
