"""Your own model in a real browser: a zipped DistilBERT classifier uploaded on the text page and
a sentence explained; a safetensors MLP uploaded on the tabular page and audited on Evaluate
(reached through the menu, so the browser session and its upload stay the same).

Uses the app server and browser fixtures of tests/e2e/conftest.py. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from safetensors.torch import save

from tests.app.test_evaluate_own_models import wine_mlp
from tests.app.test_own_tabular_model import reference_csv
from tests.e2e.test_text_tabular_e2e import _explain, _no_traceback
from tests.e2e.waits import (
    RESULT_TIMEOUT_MS,
    UI_TIMEOUT_MS,
    choose,
    pick,
    rerun,
    wait_drawn,
    wait_idle,
)
from tests.model_zips import save_tiny_classifier, zip_folder

pytestmark = pytest.mark.e2e


def _upload(page: object, label: str, path: Path) -> None:
    """Give ``path`` to the file uploader whose label starts with ``label``."""
    uploader = page.get_by_test_id("stFileUploader").filter(has_text=label)  # type: ignore
    uploader.locator("input[type=file]").set_input_files(str(path))
    page.get_by_text(path.name).first.wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    wait_idle(page)


def _load(page: object) -> None:
    button = page.get_by_role("button", name="Load this model")  # type: ignore[attr-defined]
    # Enabled once the run after the last upload has seen every file; under load that run can
    # start after the file's name is already shown.
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => [...document.querySelectorAll('button')].some("
        "b => b.innerText.trim() === 'Load this model' && !b.disabled)",
        timeout=RESULT_TIMEOUT_MS)
    rerun(page, button.click)
    page.get_by_text("yours: other sessions do not see it").first.wait_for(  # type: ignore
        timeout=UI_TIMEOUT_MS)


def test_a_zipped_text_classifier_explains_a_sentence(dashboard_url: str, page: object,
                                                      artifacts: Path, tmp_path: Path) -> None:
    folder = save_tiny_classifier(tmp_path / "tiny", kind="distilbert")
    archive = tmp_path / "my_distilbert.zip"
    archive.write_bytes(zip_folder(folder, top="my_distilbert"))
    page.goto(f"{dashboard_url}/text")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Explain").wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    wait_idle(page)
    choose(page, "Model source", "Your model")
    _upload(page, "Model folder as a .zip", archive)
    _load(page)
    assert page.get_by_text(re.compile(r"Your text classifier \(my_distilbert\.zip, "
                                       r"distilbert, 2 classes\)")).count() >= 1, \
        "the page names the uploaded model"  # type: ignore[attr-defined]
    box = page.get_by_label("Text to explain")  # type: ignore[attr-defined]
    box.fill("the movie was goods .")
    rerun(page, lambda: box.press("Control+Enter"))
    assert page.get_by_text("1: positive").count() >= 1, "class names from id2label"  # type: ignore
    _explain(page, "IG", "Completeness")
    chips = page.locator("span[title^='word']")  # type: ignore[attr-defined]
    assert chips.count() >= 5, f"every word highlighted: {chips.count()}"
    title = chips.filter(has_text="goods").first.get_attribute("title")
    assert title is not None and "goods = " in title, f"'good' + '##s' is one word: {title}"
    _no_traceback(page)
    page.screenshot(path=str(artifacts / "text_own_model.png"), full_page=True)  # type: ignore


def test_an_uploaded_mlp_is_audited_on_evaluate(dashboard_url: str, page: object,
                                               artifacts: Path, tmp_path: Path) -> None:
    holder, config = wine_mlp()
    weights, config_file, rows = (tmp_path / "wine_mlp.safetensors", tmp_path / "config.json",
                                  tmp_path / "wine_reference.csv")
    weights.write_bytes(save(holder.state_dict()))
    config_file.write_text(json.dumps(config))
    rows.write_bytes(reference_csv())
    page.goto(f"{dashboard_url}/tabular")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Explain").wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    wait_idle(page)
    choose(page, "Model source", "Your model")
    choose(page, "Format", "safetensors MLP + JSON config")
    # The ONNX format's "Model file" box is on the page until the run for the new format has
    # drawn the MLP's boxes (its config box last): a file given before that lands in the ONNX
    # box, which that run replaces with an empty one.
    page.get_by_test_id("stFileUploader").filter(has_text="Config (.json)").wait_for(  # type: ignore
        timeout=UI_TIMEOUT_MS)
    wait_idle(page)
    _upload(page, "Model file", weights)
    _upload(page, "Config (.json)", config_file)
    _upload(page, "Reference rows", rows)
    _load(page)

    menu = page.get_by_test_id("stSidebarNav")  # type: ignore[attr-defined]
    menu.get_by_role("link", name="Evaluate").click()  # the same session: no reload
    page.get_by_role("button", name="Run evaluation").wait_for(  # type: ignore
        timeout=UI_TIMEOUT_MS)
    wait_idle(page)
    choose(page, "Modality", "Tabular")
    pick(page, page.get_by_test_id("stSelectbox").filter(has_text="Model").first,  # type: ignore
         re.compile(r"wine_mlp\.safetensors.*yours"))
    assert page.get_by_text("Your reference data", exact=True).count() == 1, \
        "the upload's reference rows are offered as cases"  # type: ignore[attr-defined]
    count = page.get_by_role("spinbutton", name="Number of cases")  # type: ignore[attr-defined]
    count.fill("5")
    rerun(page, lambda: count.press("Enter"))
    page.get_by_text("5 cases ready (your reference data)").first.wait_for(  # type: ignore
        timeout=UI_TIMEOUT_MS)
    rerun(page, page.get_by_role("button", name="Run evaluation").click)  # type: ignore
    page.get_by_role("heading", name="Summary per method").wait_for(  # type: ignore
        timeout=RESULT_TIMEOUT_MS)
    wait_idle(page)
    assert page.get_by_text(re.compile(r"wine_mlp\.safetensors")).count() >= 1, \
        "the result names the uploaded model"  # type: ignore[attr-defined]
    wait_drawn(page, 4)
    page.get_by_role("button", name="HTML report").wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    _no_traceback(page)
    page.screenshot(path=str(artifacts / "evaluate_own_mlp.png"), full_page=True)  # type: ignore
