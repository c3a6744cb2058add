"""The image page in a real browser: upload a file, run IG and IG2, see maps and completeness."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e
RESULT_TIMEOUT_MS = 120_000


def _wait_idle(page: object) -> None:
    """Streamlit shows a 'Running' status widget while the script runs; wait until it is gone."""
    page.wait_for_timeout(300)  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
        timeout=RESULT_TIMEOUT_MS)


def _explain(page: object, method: str) -> None:
    page.get_by_test_id("stRadio").filter(has_text="Method").get_by_text(  # type: ignore
        method, exact=True).click()
    _wait_idle(page)
    page.get_by_role("button", name="Explain").click()  # type: ignore[attr-defined]
    _wait_idle(page)
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
    page.get_by_role("button", name="Explain").wait_for(timeout=60_000)  # type: ignore
    page.get_by_test_id("stRadio").filter(has_text="Input").get_by_text(  # type: ignore
        "Upload", exact=True).click()
    _wait_idle(page)
    page.locator("input[type=file]").first.set_input_files(str(upload))  # type: ignore
    page.get_by_text("digit.png").first.wait_for(timeout=30_000)  # type: ignore
    _wait_idle(page)

    _explain(page, "IG")
    heatmaps = page.get_by_test_id("stPlotlyChart")  # type: ignore[attr-defined]
    heatmaps.nth(3).wait_for(timeout=30_000)  # charts draw just after the metrics
    assert heatmaps.count() >= 4, f"IG maps, gauge and curve drawn: {heatmaps.count()} plots"
    assert page.get_by_text("IG relative error").count() >= 1, "IG completeness shown"  # type: ignore
    page.screenshot(path=str(artifacts / "image_ig.png"), full_page=True)  # type: ignore

    _explain(page, "IG2")
    assert page.get_by_text("IG2 relative error").count() >= 1, "IG2 completeness"  # type: ignore
    assert page.get_by_text("IG2 counterfactuals (GradCF)").count() == 1, "GradCF section"  # type: ignore
    page.screenshot(path=str(artifacts / "image_ig2.png"), full_page=True)  # type: ignore

    _explain(page, "both")
    page.get_by_test_id("stPlotlyChart").nth(7).wait_for(timeout=30_000)  # type: ignore
    assert page.get_by_test_id("stPlotlyChart").count() >= 8, "IG and IG2 side by side"  # type: ignore
    assert page.locator(".stException").count() == 0, "no traceback on the page"  # type: ignore
    page.screenshot(path=str(artifacts / "image_both.png"), full_page=True)  # type: ignore


def test_home_links_to_the_image_page(dashboard_url: str, page: object, artifacts: Path) -> None:
    page.goto(dashboard_url)  # type: ignore[attr-defined]
    page.get_by_text("How to read the completeness error").wait_for(timeout=60_000)  # type: ignore
    page.get_by_test_id("stDataFrame").first.wait_for(timeout=30_000)  # type: ignore
    page.screenshot(path=str(artifacts / "home.png"))  # type: ignore[attr-defined]
    page.get_by_test_id("stPageLink").filter(has_text="Image:").first.click()  # type: ignore
    page.get_by_role("button", name="Explain").wait_for(timeout=60_000)  # type: ignore
    assert page.url.endswith("/image"), f"the link opens the image page: {page.url}"  # type: ignore
