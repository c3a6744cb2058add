"""Every page loads; the image page explains a bundled sample like the core does directly."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from streamlit.testing.v1 import AppTest

from attribution_core import attribution_change, integrated_gradients
from attribution_core.methods.ig2 import ig2
from dashboard.image.ig2 import select_references
from dashboard.widgets import catalog
from dashboard.widgets.navigation import PageInfo, existing_pages
from dashboard.widgets.sidebar import HELP
from tests.app.conftest import DIGITS, open_app
from tests.app.helpers import chart_titles, explain, metric, region_tables

pytestmark = pytest.mark.app


def test_home_page_loads_with_links_and_models() -> None:
    at = open_app()
    assert not at.exception, f"home raised: {at.exception}"
    assert any("Integrated Gradients" in m.value for m in at.markdown), "IG is introduced"
    models = [frame for frame in at.dataframe if "status" in frame.value.columns]
    assert models and DIGITS in list(models[0].value["name"]), "the models table lists digits"


def test_image_page_loads_without_a_run() -> None:
    at = open_app("image")
    assert not at.exception, f"image page raised: {at.exception}"
    assert at.button(key="img_explain") is not None, "the Explain button is there"
    assert "Press **Explain**" in " ".join(i.value for i in at.info), "asks for Explain"


def _use_first_sample(at: AppTest) -> object:
    at.radio(key="img_source").set_value("Bundled sample").run()
    spec = catalog.get_spec(DIGITS)
    assert spec.samples is not None, "digits has bundled samples"
    samples = list(spec.samples())
    assert samples, "at least one digits sample is bundled"
    at.selectbox(key=f"img_sample_{DIGITS}").set_value(samples[0].name).run()
    assert not at.exception, f"choosing a sample raised: {at.exception}"
    return samples[0]


def _core_inputs(sample: object) -> tuple[object, torch.Tensor, int]:
    loaded = catalog.load(DIGITS, torch.device("cpu"))
    x = loaded.preprocess(sample.value)  # type: ignore[attr-defined]
    with torch.no_grad():
        target = int(loaded.forward(x).argmax(dim=1)[0])
    return loaded, x, target


def _assert_close(shown: float, exact: float, what: str, digits: int = 6) -> None:
    """The page prints ``digits`` significant digits: agree to that rounding."""
    tolerance = 0.5 * 10.0 ** (1 - digits)
    assert shown == pytest.approx(exact, rel=tolerance, abs=1e-9), \
        f"{what}: page {shown}, core {exact}"


@pytest.mark.parametrize("method", ["IG", "IG2", "both"])
def test_image_page_matches_the_core(image_page: Callable[[str], AppTest], method: str) -> None:
    at = image_page(DIGITS)
    sample = _use_first_sample(at)
    explain(at, method)
    titles = chart_titles(at)
    wanted = {"IG": ["IG"], "IG2": ["IG2"], "both": ["IG", "IG2"]}[method]
    for name in wanted:
        assert f"{name}: attribution (channels summed)" in titles, f"{name} heatmap in {titles}"
        assert f"{name}: over the model input" in titles, f"{name} overlay in {titles}"
        assert f"{name}: relative error" in titles, f"{name} gauge in {titles}"
    assert len(region_tables(at)) == len(wanted), "one ranked list of regions per method"
    assert len(region_tables(at)[0].value) == 8, "the default top-k is 8 regions"

    loaded, x, target = _core_inputs(sample)
    if "IG" in wanted:
        exact = integrated_gradients(loaded.forward, x, baselines=torch.zeros_like(x),
                                     target=target, n_steps=300, method="gausslegendre")
        _assert_close(metric(at, "IG delta"), float(exact.delta[0]), "IG delta")
        _assert_close(metric(at, "IG relative error"), 100 * float(exact.relative_delta[0]),
                      "IG relative error in %", digits=4)
        half = integrated_gradients(loaded.forward, x, baselines=torch.zeros_like(x),
                                    target=target, n_steps=150, method="gausslegendre")
        _assert_close(metric(at, "IG map convergence"),
                      100 * float(attribution_change(exact, half)[0]),
                      "IG map convergence in % (300 vs 150 steps)", digits=3)
    if "IG2" in wanted:
        pool = loaded.spec.reference_pool()
        with torch.no_grad():
            probs = torch.softmax(loaded.forward(x), dim=1)[0]
        chosen = select_references(pool.labels, probs, target, 8, "other classes", 0)
        exact2 = ig2(loaded.forward, x, pool.inputs[chosen], representation="head:input",
                     target=target, n_steps=32, step_size=loaded.spec.ig2_step_size,
                     clip=(0.0, 1.0))
        _assert_close(metric(at, "IG2 delta"), float(exact2.delta[0]), "IG2 delta")


def test_view_options_do_not_recompute(image_page: Callable[[str], AppTest]) -> None:
    at = image_page(DIGITS)
    _use_first_sample(at)
    explain(at, "IG")
    runs_before = list(at.session_state["img_runs"])
    shown_before = at.session_state["img_current"]
    delta_before = metric(at, "IG delta")
    at.selectbox(key="img_cmap").set_value("Viridis").run()
    at.slider(key="img_clip").set_value(95.0).run()
    at.radio(key="img_view").set_value("absolute").run()
    assert not at.exception, f"view changes raised: {at.exception}"
    assert list(at.session_state["img_runs"]) == runs_before, "no new run for a view change"
    assert at.session_state["img_current"] == shown_before, "the shown run is unchanged"
    assert metric(at, "IG delta") == delta_before, "the same result stays on screen"
    assert not any("inputs changed" in i.value for i in at.info), "view options are not inputs"


def test_auto_steps_draw_the_refinement_curve(image_page: Callable[[str], AppTest]) -> None:
    at = image_page(DIGITS)
    _use_first_sample(at)
    at.checkbox(key="img_auto_steps").set_value(True).run()
    explain(at, "IG")
    assert metric(at, "IG relative error") <= 1.0, "auto stops at the 1 % tolerance"
    run = at.session_state["img_runs"][at.session_state["img_current"]]
    assert len(run.curve) >= 2, f"the refinement history is the curve: {run.curve}"
    errors = [p.relative_delta for p in run.curve]
    assert errors[-1] <= 0.01 and errors[-1] < errors[0], f"the error falls: {errors}"
    assert metric(at, "IG map convergence") <= 1.0, "auto also stops on the map's convergence"


@pytest.mark.parametrize("baseline", ["white", "blurred", "noise", "mean"])
def test_every_baseline_runs_and_reports_f_baseline(image_page: Callable[[str], AppTest],
                                                    baseline: str) -> None:
    at = image_page(DIGITS)
    _use_first_sample(at)
    at.selectbox(key="img_baseline").set_value(baseline).run()
    notes = [c.value for c in at.caption] + [w.value for w in at.warning]
    assert any("f(baseline) =" in n for n in notes), f"f(baseline) is always shown: {notes}"
    explain(at, "IG")
    run = at.session_state["img_runs"][at.session_state["img_current"]]
    assert run.settings.baseline == baseline, "the chosen baseline was used"
    assert float(run.ig.f_baselines[0]) == pytest.approx(run.baseline_check.f_baseline,
                                                         rel=1e-4, abs=1e-5), "same f(baseline)"


def test_uploaded_baseline_and_bad_baseline_file(image_page: Callable[[str], AppTest]) -> None:
    from tests.app import image_files as files

    at = image_page(DIGITS)
    _use_first_sample(at)
    at.selectbox(key="img_baseline").set_value("uploaded").run()
    assert "Upload a baseline image" in " ".join(e.value for e in at.error), "asks for one"
    uploader = at.file_uploader(key="img_baseline_upload")
    uploader.set_value(("b.png", files.text_file_as_png(), "image/png")).run()
    assert not at.exception and any("not an image" in e.value for e in at.error), "clear"
    at.file_uploader(key="img_baseline_upload").set_value(
        ("b.png", files.png_bytes(8, 8), "image/png")).run()
    explain(at, "IG")
    assert metric(at, "IG relative error") >= 0, "explained against the uploaded baseline"


@pytest.mark.parametrize("page", [p for p in existing_pages() if p.url_path != "home"],
                         ids=lambda p: p.url_path)
def test_every_page_loads_without_exception(page: PageInfo) -> None:
    at = open_app(page.file.removesuffix(".py"))
    assert not at.exception, f"{page.title} raised: {at.exception}"
    assert at.title, f"{page.title} shows a title"
    help_text = " ".join(m.value for m in at.sidebar.markdown)
    assert HELP[page.url_path] in help_text, f"the sidebar explains the {page.title} page"


def test_switching_models_keeps_each_models_result(image_page: Callable[[str], AppTest]) -> None:
    at = image_page(DIGITS)
    _use_first_sample(at)
    explain(at, "IG")
    digits_delta = metric(at, "IG delta")
    at.selectbox(key="sidebar_model_image").set_value("shapes_cnn").run()
    assert not at.exception, f"switching to shapes raised: {at.exception}"
    assert not any(m.label == "IG delta" for m in at.metric), "no digits result on shapes"
    explain(at, "IG")  # an RGB model, through its own first sample
    assert metric(at, "IG delta") != digits_delta, "the shapes result is its own"
    at.selectbox(key="sidebar_model_image").set_value(DIGITS).run()
    assert metric(at, "IG delta") == digits_delta, "back on digits, its result is still there"


def test_sessions_do_not_share_results(image_page: Callable[[str], AppTest]) -> None:
    first = image_page(DIGITS)
    _use_first_sample(first)
    explain(first, "IG")
    second = image_page(DIGITS)
    _use_first_sample(second)
    assert not any(m.label == "IG delta" for m in second.metric), "B does not see A's result"
    explain(second, "IG")
    assert metric(second, "IG delta") == metric(first, "IG delta"), "same inputs, same figures"
    run = second.session_state["img_runs"][second.session_state["img_current"]]
    assert run.ig.from_cache, "B's run is served by the process-wide result cache"


def _cache_entries() -> int:
    from dashboard.widgets import resources

    return len(resources.shared_result_cache())


@pytest.mark.parametrize("preview_on", [True, False])
def test_preview_first_then_exact_and_never_cached(image_page: Callable[[str], AppTest],
                                                   preview_on: bool) -> None:
    from dashboard.widgets import resources

    resources.shared_result_cache().clear()  # the same sample may have been explained before
    at = image_page(DIGITS)
    at.toggle(key="preview_first").set_value(preview_on).run()
    sample = _use_first_sample(at)
    before = _cache_entries()  # Home's example may have been computed on the way here
    explain(at, "IG")
    captions = " ".join(c.value for c in at.caption)
    assert ("Against the exact map: relative L2" in captions) is preview_on, \
        f"the preview summary shows exactly when the preview is on: {captions[:300]}"
    assert "PREVIEW" not in captions, "the exact result has taken the preview's place"
    assert _cache_entries() - before == 4, \
        f"IG and its 3-run curve are cached, never the preview: {_cache_entries() - before}"
    loaded, x, target = _core_inputs(sample)
    exact = integrated_gradients(loaded.forward, x, baselines=torch.zeros_like(x),
                                 target=target, n_steps=300, method="gausslegendre")
    _assert_close(metric(at, "IG delta"), float(exact.delta[0]), "the map shown is the exact one")
