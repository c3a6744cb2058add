"""Operator plugins on the pages: the linear example explained on the tabular page (IG is
W (x - b) exactly), and a broken plugin listed as not ready without breaking the sidebar."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from attribution_core.models import unregister_spec
from attribution_core.models.plugin_discovery import forget_plugin
from tests.app.conftest import open_app

pytestmark = pytest.mark.app
ROOT = Path(__file__).resolve().parents[2]
LINEAR_PLUGIN = ROOT / "examples" / "plugins" / "linear_tabular.py"
WEIGHTS = np.array([[0.04, -0.08, 0.30], [-0.04, 0.08, -0.30]])


@pytest.fixture
def plugins_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                             ) -> Iterator[str]:
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise ImportError('needs a package this server lacks')\n")
    monkeypatch.setenv("ATTRIBUTION_MODELS", f"{LINEAR_PLUGIN},{broken}")
    yield str(broken)
    unregister_spec("linear_credit")
    forget_plugin(str(LINEAR_PLUGIN))
    forget_plugin(str(broken))


def test_plugin_model_is_explained_on_the_tabular_page(plugins_from_environment: str) -> None:
    at = open_app("tabular")
    picker = at.selectbox(key="sidebar_model_tabular")
    assert "linear_credit" in picker.options or any(
        "Linear credit" in option for option in picker.options), \
        f"the plugin model is in the tabular list: {picker.options}"
    broken = [option for option in picker.options if "broken_plugin.py" in option]
    assert broken and "(not ready)" in broken[0], f"the broken plugin is listed: {picker.options}"
    picker.set_value("linear_credit").run()
    assert not at.exception, f"choosing the plugin model raised: {at.exception}"
    at.slider(key="tab_steps").set_value(16).run()
    at.button(key="tab_explain").click().run()
    assert not at.exception, f"Explain raised: {at.exception}"
    assert not at.error, f"Explain showed errors: {[e.value for e in at.error]}"
    table = next(frame.value for frame in at.dataframe if "attribution" in frame.value.columns)
    values = table.set_index("feature")
    order = ["income", "debt", "years_employed"]
    x = values.loc[order, "value"].to_numpy(dtype=float)
    b = values.loc[order, "baseline value"].to_numpy(dtype=float)
    got = values.loc[order, "attribution"].to_numpy(dtype=float)
    predicted = int(np.argmax(WEIGHTS @ x + np.array([0.5, -0.5])))  # the default target
    expected = WEIGHTS[predicted] * (x - b)
    assert np.allclose(got, expected, atol=1e-4), \
        f"page IG {got} is W[target] (x - b) = {expected} for x={x}, b={b}"


def test_broken_plugin_shows_not_available_on_the_home_page(
        plugins_from_environment: str) -> None:
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, f"the home page with a broken plugin raised: {at.exception}"
    rows = next(frame.value for frame in at.dataframe if "ready" in frame.value.columns)
    mine = rows[rows.astype(str).apply(lambda r: "broken_plugin" in " ".join(r), axis=1)]
    assert len(mine) == 1 and not bool(mine["ready"].iloc[0]), \
        f"the broken plugin is one not-ready row: {rows.to_dict('records')}"
    assert "needs a package" not in " ".join(rows.astype(str).to_numpy().ravel()), \
        "its error goes to the server log, not to strangers"


def test_transformers_sequence_classifier_plugin_on_the_text_page() -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from attribution_core.models import get_spec, register_model
    from attribution_core.models.builtin_text import MODELS_DIR
    from attribution_core.models.word_tokenizer import WordTokenizer
    from tests.app.test_text_page import explain, open_text_page, shown

    tokenizer = WordTokenizer.load(MODELS_DIR / get_spec("cue_transformer").metadata[
        "tokenizer_file"])
    config = BertConfig(vocab_size=len(tokenizer.vocabulary), hidden_size=16,
                        num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        num_labels=2, id2label={0: "negative", 1: "positive"})
    torch.manual_seed(0)
    spec = register_model("tiny_bert_text_plugin", BertForSequenceClassification(config),
                          "text", tokenizer=tokenizer,
                          reference_data=(["a good film", "a bad film", "the food was fine",
                                           "the plot is boring"], [1, 0, 1, 0]))
    try:
        at = open_text_page(spec.name, "the food was wonderful .")
        for method in ("IG", "IG2"):
            explain(at, method)
            delta = shown(at, "delta", method)
            assert delta == delta, f"{method} ran on the plugin model and reports completeness"
    finally:
        unregister_spec(spec.name)


@pytest.fixture
def plugin_without_data() -> Iterator[str]:
    import torch

    from attribution_core.models import register_model

    network = torch.nn.Linear(3, 2)
    with torch.no_grad():
        network.weight.copy_(torch.as_tensor(WEIGHTS))
        network.bias.copy_(torch.tensor([0.5, -0.5]))
    register_model("typed_rows_plugin", network, "tabular",
                   feature_names=["income", "debt", "years_employed"])
    yield "typed_rows_plugin"
    unregister_spec("typed_rows_plugin")


def test_a_plugin_without_data_gets_a_typed_row_and_ig(plugin_without_data: str) -> None:
    at = open_app("tabular")
    at.selectbox(key="sidebar_model_tabular").set_value(plugin_without_data).run()
    assert not at.exception, f"choosing the plugin raised: {at.exception}"
    shown = " ".join(str(i.value) for i in [*at.info, *at.caption, *at.warning])
    assert "upload a CSV instead" not in shown, "no dead end: a row can be typed"
    assert "type the row to explain" in shown, f"the typed row is offered: {shown!r}"
    baseline = at.selectbox(key=f"tab_baseline_{plugin_without_data}")
    assert list(baseline.options) == ["zeros (raw units)", "a row you type (raw units)"], \
        f"only baselines this model can give: {baseline.options}"
    assert not at.button(key="tab_explain").disabled, "Explain is enabled for IG"
    at.slider(key="tab_steps").set_value(16).run()
    at.button(key="tab_explain").click().run()
    assert not at.exception and not at.error, \
        f"IG from zeros ran: {at.exception} {[e.value for e in at.error]}"
    assert any("attribution" in frame.value.columns for frame in at.dataframe), "a result"
    at.radio(key="tab_method").set_value("IG2").run()
    warnings = " ".join(str(w.value) for w in at.warning)
    assert "IG2 needs reference rows" in warnings, f"said when IG2 is asked for: {warnings!r}"
    assert at.button(key="tab_explain").disabled, "and Explain waits for a method that can run"
