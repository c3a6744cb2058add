"""Uploads through the image page: good files explain, bad files give a message, never a crash."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from tests.app import image_files as files
from tests.app.conftest import DIGITS
from tests.app.helpers import explain, metric

pytestmark = pytest.mark.app

REJECTED = [
    ("truncated.png", files.truncated_png, "truncated"),
    ("notes.png", files.text_file_as_png, "not an image"),
    ("dot.png", files.one_pixel_png, "1x1"),
    ("huge.png", files.bomb_png, "12000x12000"),
]
CONVERTED = [
    ("animated.gif", files.animated_gif, "first frame"),
    ("print.jpg", files.cmyk_jpeg, "CMYK"),
    ("scan.png", files.sixteen_bit_png, "16-bit"),
]


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.radio(key="img_source").set_value("Upload").run()
    at.file_uploader(key="img_upload").set_value((name, data, "application/octet-stream")).run()
    assert not at.exception, f"uploading {name} raised: {at.exception}"
    return at


@pytest.fixture
def explained(image_page: Callable[[str], AppTest]) -> AppTest:
    """The image page after a good upload has been explained with IG."""
    at = _upload(image_page(DIGITS), "good.png", files.png_bytes(40, 30))
    return explain(at, "IG")


@pytest.mark.parametrize("name, builder, words", REJECTED, ids=[r[0] for r in REJECTED])
def test_bad_upload_gives_a_message_and_keeps_everything(
        explained: AppTest, name: str, builder: Callable[[], bytes], words: str) -> None:
    delta = metric(explained, "IG delta")
    steps = explained.slider(key="img_steps").value
    at = _upload(explained, name, builder())
    errors = " ".join(e.value for e in at.error)
    assert name in errors and words in errors, f"clear message for {name}: {errors!r}"
    assert metric(at, "IG delta") == delta, "the previous result stays on screen"
    assert at.slider(key="img_steps").value == steps, "other inputs keep their values"
    assert any("last good image" in i.value for i in at.info), "falls back to the last image"
    at.button(key="img_explain").click().run()
    assert not at.exception, f"the page stays usable after {name}: {at.exception}"
    assert metric(at, "IG delta") == delta, "explaining again uses the last good image"


@pytest.mark.parametrize("name, builder, words", CONVERTED, ids=[c[0] for c in CONVERTED])
def test_unusual_uploads_are_converted_and_explained(
        image_page: Callable[[str], AppTest], name: str, builder: Callable[[], bytes],
        words: str) -> None:
    at = _upload(image_page(DIGITS), name, builder())
    assert not at.error, f"{name} should be accepted: {[e.value for e in at.error]}"
    captions = " ".join(c.value for c in at.caption)
    assert words in captions, f"the conversion of {name} is stated: {captions!r}"
    explain(at, "IG")
    assert abs(metric(at, "IG relative error")) < 100, "a completeness figure is shown"


def test_bad_upload_before_any_result_asks_for_another(
        image_page: Callable[[str], AppTest]) -> None:
    at = _upload(image_page(DIGITS), "notes.png", files.text_file_as_png())
    assert any("not an image" in e.value for e in at.error), "clear message"
    assert any("Upload an image" in i.value for i in at.info), "asks for another image"
    _upload(at, "good.png", files.png_bytes(40, 30))
    assert not at.error, "a good file after a bad one is accepted"
    explain(at, "IG")
    assert metric(at, "IG relative error") >= 0, "and explained"
