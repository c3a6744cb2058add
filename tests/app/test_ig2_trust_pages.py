"""IG2's map convergence and path reach beside its completeness gauge on the image, text and
tabular pages, equal to the core's own figures, with IG2's preview summarised."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from streamlit.testing.v1 import AppTest

from attribution_core.methods.ig2 import ig2
from dashboard.image.ig2 import select_references
from dashboard.widgets import catalog
from tests.app.conftest import DIGITS
from tests.app.helpers import explain as explain_image
from tests.app.helpers import metric
from tests.app.test_tabular_page import explain as explain_tabular
from tests.app.test_tabular_page import open_tabular_page
from tests.app.test_text_page import explain as explain_text
from tests.app.test_text_page import open_text_page

pytestmark = pytest.mark.app


def _captions(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption) + " ".join(m.value for m in at.markdown)


def test_image_page_shows_the_cores_ig2_convergence_and_reach(
        image_page: Callable[[str], AppTest]) -> None:
    at = image_page(DIGITS)
    at.radio(key="img_source").set_value("Bundled sample").run()
    spec = catalog.get_spec(DIGITS)
    sample = next(iter(spec.samples()))  # type: ignore[misc]
    at.selectbox(key=f"img_sample_{DIGITS}").set_value(sample.name).run()
    explain_image(at, "IG2")
    loaded = catalog.load(DIGITS, torch.device("cpu"))
    x = loaded.preprocess(sample.value)
    with torch.no_grad():
        probs = torch.softmax(loaded.forward(x), dim=1)[0]
    target = int(probs.argmax())
    pool = loaded.spec.reference_pool()
    chosen = select_references(pool.labels, probs, target, 8, "other classes", 0)
    exact = ig2(loaded.forward, x, pool.inputs[chosen], representation="head:input",
                target=target, n_steps=32, step_size=loaded.spec.ig2_step_size,
                clip=(0.0, 1.0), halving=True)
    shown = metric(at, "IG2 map convergence")
    expected = 100 * float(exact.convergence[0])
    assert shown == pytest.approx(expected, rel=5e-3), f"page {shown} %, core {expected} %"
    words = _captions(at)
    assert "GradPath reach" in words and "references (95 % bound" in words, words[-600:]
    reach = [frame for frame in at.dataframe if "reach D(GradCF)/D(x)" in frame.value.columns]
    assert reach and len(reach[0].value) == 8, "one reach row per reference"
    values = [float(v) for v in reach[0].value["reach D(GradCF)/D(x)"]]
    torch.testing.assert_close(torch.tensor(values, dtype=torch.float64),
                               exact.path_reach[0].double(), atol=1e-4, rtol=0,
                               msg="the page's reach is the core's D(GradCF)/D(x)")
    assert any("IG2 preview" in c.value for c in at.caption), "the preview is summarised"


def test_text_and_tabular_pages_show_ig2_convergence_beside_the_gauge() -> None:
    text = explain_text(open_text_page("cue_transformer"), "IG2")
    run = text.session_state["txt_runs"][text.session_state["txt_current"]]
    assert metric(text, "IG2 map convergence") == pytest.approx(
        100 * float(run.ig2.result.convergence[0]), rel=5e-3), "text: the run's own estimate"
    assert "GradPath reach" in _captions(text), "text: the reach line"
    table = open_tabular_page("wine_mlp")
    explain_tabular(table, "both")
    value = metric(table, "IG2 map convergence")
    assert math.isfinite(value) and value > 0, f"tabular: IG2 convergence {value}"
    assert metric(table, "IG map convergence") is not None, "IG keeps its own"
    rows = [f for f in table.dataframe if "reach D(GradCF)/D(x)" in f.value.columns]
    assert rows, "tabular: reach per reference row"
