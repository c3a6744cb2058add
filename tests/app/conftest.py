"""AppTest fixtures: the dashboard on a chosen page, with a memory-only result cache."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Memory-only cache: tests must not read results another run left on disk.
os.environ.setdefault("IG_DASHBOARD_CACHE_DIR", "")

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
DIGITS = "digits_cnn"


def open_app(page: str | None = None) -> AppTest:
    """The app after its first run, switched to ``pages/<page>.py`` and run again."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if page is not None:
        at.switch_page(f"../pages/{page}.py")
        at.run()
    return at


@pytest.fixture
def image_page() -> Callable[[str], AppTest]:
    """Open the image page with the model ``name`` chosen in the sidebar."""

    def make(name: str = DIGITS) -> AppTest:
        at = open_app("image")
        at.selectbox(key="sidebar_model_image").set_value(name).run()
        assert not at.exception, f"choosing {name} raised: {at.exception}"
        assert at.selectbox(key="sidebar_model_image").value == name, f"{name} is chosen"
        return at

    return make
