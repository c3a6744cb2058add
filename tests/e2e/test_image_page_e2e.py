"""The image page in a real browser: upload a file, run IG and IG2, see maps and completeness.

Waits for the page's state (tests/e2e/waits.py), never for a fixed time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageOps

from tests.e2e.waits import (
    CHARTS,
    RESULT_TIMEOUT_MS,
    UI_TIMEOUT_MS,
    choose,
    rerun,
    wait_count,
    wait_drawn,
    wait_idle,
)

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _explain(page: object, method: str) -> None:
    choose(page, "Method", method)
    rerun(page, page.get_by_role("button", name="Explain").click)  # type: ignore
    shown = "IG2" if method == "both" else method
    page.get_by_text(f"{shown} delta").first.wait_for(timeout=RESULT_TIMEOUT_MS)  # type: ignore


def test_upload_and_explain_with_ig_and_ig2(dashboard_url: str, page: object, artifacts: Path,
                                            tmp_path: Path) -> None:
    # A held-out digit drawn dark on light and enlarged, as a photo of paper would be: the
    # page has to shrink and invert it for the 8x8 model.
    with Image.open(ROOT / "assets" / "samples" / "digits" / "digit_2_heldout0.png") as sample:
        drawing = ImageOps.invert(sample.convert("L")).resize((96, 96), Image.Resampling.NEAREST)
    upload = tmp_path / "digit.png"
    drawing.save(upload)
    page.goto(f"{dashboard_url}/image")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Explain").wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    wait_idle(page)
    choose(page, "Input", "Upload")
    rerun(page, lambda: page.locator("input[type=file]").first.set_input_files(  # type: ignore
        str(upload)))
    page.get_by_text("digit.png").first.wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore

    _explain(page, "IG")
    charts = wait_count(page, CHARTS, 4)  # charts draw just after the metrics
    assert charts >= 4 and wait_drawn(page, 4) >= 4, \
        f"IG maps, gauge and curve drawn: {charts} plots"
    assert page.get_by_text("IG relative error").count() >= 1, "IG completeness shown"  # type: ignore
    page.screenshot(path=str(artifacts / "image_ig.png"), full_page=True)  # type: ignore

    _explain(page, "IG2")
    assert page.get_by_text("IG2 relative error").count() >= 1, "IG2 completeness"  # type: ignore
    assert page.get_by_text("IG2 counterfactuals (GradCF)").count() == 1, "GradCF section"  # type: ignore
    page.screenshot(path=str(artifacts / "image_ig2.png"), full_page=True)  # type: ignore

    _explain(page, "both")
    assert wait_count(page, CHARTS, 8) >= 8, "IG and IG2 side by side"
    assert page.locator(".stException").count() == 0, "no traceback on the page"  # type: ignore
    page.screenshot(path=str(artifacts / "image_both.png"), full_page=True)  # type: ignore


def test_home_links_to_the_image_page(dashboard_url: str, page: object, artifacts: Path) -> None:
    page.goto(dashboard_url)  # type: ignore[attr-defined]
    page.get_by_text("How to read the completeness error").wait_for(  # type: ignore
        timeout=UI_TIMEOUT_MS)
    page.get_by_test_id("stDataFrame").first.wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    page.screenshot(path=str(artifacts / "home.png"))  # type: ignore[attr-defined]
    page.get_by_test_id("stPageLink").filter(has_text="Image:").first.click()  # type: ignore
    page.get_by_role("button", name="Explain").wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    assert page.url.endswith("/image"), f"the link opens the image page: {page.url}"  # type: ignore
