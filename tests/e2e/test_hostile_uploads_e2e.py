"""Hostile model uploads on a real server, in Chromium (issue 24): an ONNX whose class names
"live" in a file of the server's working directory is refused in one line and nothing of that
file reaches the page; PUTs to the upload endpoint with a made-up or an already used file id
are refused by the server itself.

Uses the server and browser fixtures of tests/e2e/conftest.py (the server runs in the
repository root, where .streamlit/config.toml is the file the crafted model points at).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import hostile_models as hostile
from tests.e2e.waits import UI_TIMEOUT_MS, choose, rerun, wait_idle

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _open_own_model_panel(page: object, url: str) -> None:
    page.goto(f"{url}/tabular")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Explain").wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    wait_idle(page)
    choose(page, "Model source", "Your model")


def _model_box(page: object) -> object:
    return page.get_by_test_id("stFileUploader").filter(  # type: ignore[attr-defined]
        has_text="Model file").locator("input[type=file]")


def test_an_onnx_reading_a_server_file_is_refused_and_nothing_of_it_is_shown(
        dashboard_url: str, page: object, artifacts: Path, tmp_path: Path) -> None:
    target = ROOT / ".streamlit" / "config.toml"  # in the server's working directory
    secret_words = ("maxUploadSize", "showErrorDetails", "gatherUsageStats")
    upload = tmp_path / "leak.onnx"
    upload.write_bytes(hostile.external_classes(len(target.read_bytes()),
                                                ".streamlit/config.toml"))
    _open_own_model_panel(page, dashboard_url)
    _model_box(page).set_input_files(str(upload))  # type: ignore[attr-defined]
    page.get_by_text(upload.name).first.wait_for(timeout=UI_TIMEOUT_MS)  # type: ignore
    wait_idle(page)
    rerun(page, page.get_by_role("button", name="Load this model").click)  # type: ignore
    alert = page.get_by_test_id("stAlertContentError").filter(  # type: ignore[attr-defined]
        has_text="external files")
    alert.first.wait_for(timeout=UI_TIMEOUT_MS)
    message = alert.first.inner_text()
    assert message.startswith("leak.onnx: The ONNX model keeps tensor data in external files"), \
        message
    shown = page.locator("body").inner_text()  # type: ignore[attr-defined]
    assert not [w for w in secret_words if w in shown], "nothing of config.toml on the page"
    assert page.locator(".stException").count() == 0, "no traceback"  # type: ignore
    page.screenshot(path=str(artifacts / "hostile_external_data.png"),  # type: ignore
                    full_page=True)


def test_the_server_refuses_puts_to_file_ids_it_did_not_issue(
        dashboard_url: str, page: object, tmp_path: Path) -> None:
    def hold_back(route: object) -> None:
        """Keep the browser's own PUT from being sent: its file id stays issued and unused."""
        request = route.request  # type: ignore[attr-defined]
        if request.method == "PUT":
            route.abort()  # type: ignore[attr-defined]
        else:
            route.continue_()  # type: ignore[attr-defined]

    model = tmp_path / "good.onnx"
    model.write_bytes(hostile.linear_classifier(3, 2))
    _open_own_model_panel(page, dashboard_url)
    page.route("**/_stcore/upload_file/**", hold_back)  # type: ignore[attr-defined]
    with page.expect_request(  # type: ignore[attr-defined]
            lambda request: request.method == "PUT" and "/_stcore/upload_file/" in request.url,
            timeout=UI_TIMEOUT_MS) as seen:
        _model_box(page).set_input_files(str(model))  # type: ignore[attr-defined]
    issued = seen.value
    url = issued.url  # type: ignore[attr-defined]
    token = issued.all_headers().get("x-xsrftoken", "")  # type: ignore[attr-defined]

    def put(target: str, size: int) -> int:
        payload = {"file": {"name": "x.onnx", "mimeType": "application/octet-stream",
                            "buffer": b"\0" * size}}
        return int(page.request.put(target, headers={"X-Xsrftoken": token},  # type: ignore
                                    multipart=payload).status)

    made_up = put(url.rsplit("/", 1)[0] + "/made-up-file-id", 2 * 2**20)
    first = put(url, 1024)  # the id the server issued to this session: accepted
    again = put(url, 1024)
    assert first in (200, 204), f"an issued id with a small file is accepted: {first}"
    assert made_up == 403, f"a made-up id is refused: {made_up}"
    assert again == 403, f"an id is used once: {again}"
