"""Strangers share one server process: what one session defines or loads stays in that session,
a shared-cache hit is not announced, and the Home page shows no server path."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from attribution_core.models import registry
from attribution_core.models.spec import ModelSpec, ModelStatus
from dashboard.text.inputs import HF_MODEL_KEY
from dashboard.widgets import catalog
from tests.app.conftest import open_app
from tests.app.test_text_page import _tiny_hugging_face_folder, open_text_page
from tests.app.test_text_page import explain as explain_text

pytestmark = pytest.mark.app
TEXT_PAGE = Path(__file__).resolve().parents[2] / "pages" / "text.py"
LABELS = "quokka: This text is about quokkas.\nzeppelin: This text is about airships."
# An absolute POSIX path of at least two parts, e.g. /root/.cache or /home/x/model.safetensors
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/[\w.-]+/[\w.-]+")


def _shown_text(at: AppTest) -> list[str]:
    """Every piece of text an AppTest shows: messages, markdown, captions, table cells."""
    texts: list[str] = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "text", "title",
                 "subheader", "header"):
        texts.extend(str(element.value) for element in at.get(kind))
    for frame in at.dataframe:
        texts.extend(str(cell) for column in frame.value.columns
                     for cell in frame.value[column])
    return texts


def _text_model_options(at: AppTest) -> list[str]:
    """The titles the Evaluate page offers for text models (after choosing the modality)."""
    at.radio(key="eval_modality").set_value("text").run()
    assert not at.exception, f"choosing text on Evaluate raised: {at.exception}"
    return [str(option) for option in at.selectbox(key="eval_model_text").options]


def _hugging_face_panel() -> AppTest:
    """The text page on its own with the Hugging Face source chosen."""
    at = AppTest.from_file(str(TEXT_PAGE), default_timeout=120)
    at.session_state["selected_model_text"] = "cue_transformer"
    at.run()
    at.radio(key="txt_model_source").set_value("Hugging Face classifier").run()
    assert not at.exception, f"the Hugging Face panel raised: {at.exception}"
    return at


def _define_labels(at: AppTest) -> None:
    at.text_area(key="txt_labels_minilm_topic").set_value(LABELS)
    at.button(key="txt_labels_apply_minilm_topic").click().run()
    assert not at.exception and not at.error, f"labels accepted: {[e.value for e in at.error]}"


def test_zero_shot_labels_stay_in_the_session_that_typed_them() -> None:
    first = open_app("text")
    first.selectbox(key="sidebar_model_text").set_value("minilm_topic").run()
    _define_labels(first)
    classes = [str(c) for frame in first.dataframe if "class" in frame.value.columns
               for c in frame.value["class"]]
    assert any("quokka" in c for c in classes), f"the labels are in use for A: {classes}"
    first.run()  # the sidebar is drawn before the page: it lists the new model on the next run
    sidebar_a = [str(o) for o in first.selectbox(key="sidebar_model_text").options]
    assert any("quokka" in o for o in sidebar_a), f"A's sidebar lists A's model: {sidebar_a}"
    first.switch_page("../pages/evaluate.py").run()
    assert any("quokka" in o for o in _text_model_options(first)), \
        "A's Evaluate page offers A's own label model"
    own_name = next(iter(first.session_state["session_model_specs"]))
    first.selectbox(key="eval_model_text").set_value(own_name).run()
    assert not first.exception, f"choosing A's model raised: {first.exception}"
    assert own_name in first.session_state["session_loaded_models"], \
        "A's Evaluate page loads A's model into A's session (bundled cases: none for it)"

    assert not any("quokka" in spec.title or "quokka" in spec.description
                   or "quokka" in str(spec.metadata) for spec in registry.list_specs()), \
        "the process-wide registry holds no user label set"
    second = open_app("text")
    sidebar_b = [str(o) for o in second.selectbox(key="sidebar_model_text").options]
    assert sidebar_b and not any("quokka" in o for o in sidebar_b), \
        f"B's model list has built-ins only: {sidebar_b}"
    second.switch_page("../pages/evaluate.py").run()
    options_b = _text_model_options(second)
    assert options_b and not any("quokka" in o for o in options_b), \
        f"B's Evaluate page does not offer A's labels: {options_b}"
    assert not any("quokka" in t for t in _shown_text(second)), "nothing of A's labels on B's page"


def test_hugging_face_models_stay_in_the_session_that_loaded_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_DASHBOARD_MODEL_DIRS", str(tmp_path))
    folder = _tiny_hugging_face_folder(tmp_path / "tiny")
    first, second = _hugging_face_panel(), _hugging_face_panel()
    first.text_input(key="txt_hf_source").set_value(str(folder))
    first.button(key="txt_hf_load").click().run()
    assert not first.exception and not first.error, f"A loads: {[e.value for e in first.error]}"
    assert HF_MODEL_KEY in first.session_state, "A holds its model in its session"
    second.run()
    assert HF_MODEL_KEY not in second.session_state, "B does not hold A's model"
    assert not any("tiny" in t for t in _shown_text(second)), "B's page does not name A's model"
    second.text_input(key="txt_hf_source").set_value(str(folder))
    second.button(key="txt_hf_load").click().run()
    assert second.session_state[HF_MODEL_KEY][1] is not first.session_state[HF_MODEL_KEY][1], \
        "B loads its own copy: no process-wide cache lists or hands out A's load"


def test_refused_sources_read_alike_on_the_page(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_DASHBOARD_MODEL_DIRS", str(tmp_path / "shared"))
    (tmp_path / "shared").mkdir()
    at = _hugging_face_panel()
    messages = {}
    for source in ("/etc/passwd", str(Path.home() / ".ssh"), str(tmp_path / "missing"),
                   str(tmp_path / "shared" / ".." / "x")):
        at.text_input(key="txt_hf_source").set_value(source)
        at.button(key="txt_hf_load").click().run()
        assert not at.exception, f"{source} raised: {at.exception}"
        messages[source] = tuple(e.value for e in at.error)
    assert len(set(messages.values())) == 1 and all(len(m) == 1 for m in messages.values()), \
        f"one identical one-line message for every refused source: {messages}"


def test_a_shared_cache_hit_is_not_announced() -> None:
    first = explain_text(open_text_page("cue_transformer", "the plot was good ."), "IG")
    second = explain_text(open_text_page("cue_transformer", "the plot was good ."), "IG")
    run = next(iter(second.session_state["txt_runs"].values()))
    assert run.ig.from_cache, "B's identical request is served by the shared result cache"
    mentions = [t for t in _shown_text(second) if "cache" in t.lower()]
    assert not mentions, f"B is not told that someone else explained this input: {mentions}"
    assert not first.exception, "A's session is unaffected"


def _model_needing_files(detail: str) -> ModelSpec:
    return ModelSpec(name="isolation_probe_model", title="Probe", modality="image",
                     output_kind="classification", class_names=("a",),
                     loader=lambda device: None,  # type: ignore[arg-type, return-value]
                     status=lambda: ModelStatus(False, detail))


def test_home_page_shows_readiness_but_no_server_path() -> None:
    detail = "needs weights: put w.pth in /srv/models/checkpoints (operator only)"
    catalog.register_temporary(_model_needing_files(detail))
    try:
        at = open_app()
    finally:
        catalog.unregister_temporary("isolation_probe_model")
    assert not at.exception, f"Home raised: {at.exception}"
    table = next(frame.value for frame in at.dataframe if "ready" in frame.value.columns)
    assert "isolation_probe_model" in set(table["name"]), "the model needing files is listed"
    assert set(table["status"]) <= {"ready", catalog.NOT_AVAILABLE}, \
        f"statuses say ready or not, nothing else: {set(table['status'])}"
    leaks = [t for t in _shown_text(at) if ABSOLUTE_PATH.search(t)]
    assert not leaks, f"no filesystem path on the Home page: {leaks}"


def test_set_up_details_go_to_the_server_log(caplog: pytest.LogCaptureFixture) -> None:
    detail = "needs weights: put w.pth in /srv/other/checkpoints (operator only)"
    spec = _model_needing_files(detail)
    with caplog.at_level(logging.WARNING, logger="dashboard.models"):
        status = catalog.status_of(spec)
    assert catalog.public_status(status) == catalog.NOT_AVAILABLE, "users see 'not available'"
    assert any(detail in record.getMessage() for record in caplog.records), \
        f"the operator finds the details in the log: {[r.getMessage() for r in caplog.records]}"


def test_configured_login_comes_before_every_page() -> None:
    import importlib.util

    from tests.app.conftest import APP

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback",
                          "cookie_secret": "test only", "client_id": "dashboard",
                          "client_secret": "test only",
                          "server_metadata_url": "https://id.example/.well-known/"
                                                 "openid-configuration"}
    at.run()
    assert not at.exception, f"the login gate raised: {at.exception}"
    assert not at.dataframe and not at.get("page_link"), "no page content before logging in"
    if importlib.util.find_spec("authlib") is not None:
        assert [b.label for b in at.button] == ["Log in"], "only a log-in button is offered"
    else:  # configured but unusable: closed, with a one-line message
        assert len(at.error) == 1 and not at.button, f"closed: {[e.value for e in at.error]}"
    open_home = open_app()
    assert open_home.dataframe, "without [auth] in secrets.toml the pages are open (local use)"
