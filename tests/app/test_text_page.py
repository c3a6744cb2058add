"""The text page through AppTest: every built-in model and method, sums, cue words, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.app
PAGE = Path(__file__).resolve().parents[2] / "pages" / "text.py"
MODELS = ("cue_transformer", "minilm_sentiment", "minilm_topic")
METHODS = ("IG", "IG2", "both")
SHORT_TEXT = {"cue_transformer": "the movie was really good .",
              "minilm_sentiment": "A wonderful film.",
              "minilm_topic": "The team won the match."}


def open_text_page(model: str, text: str | None = None, steps: int = 8) -> AppTest:
    """The page on its own (no sidebar), with ``model`` chosen and cheap settings."""
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["selected_model_text"] = model
    at.run()
    assert not at.exception, f"opening the text page with {model} raised: {at.exception}"
    at.checkbox(key="txt_curve").uncheck()
    at.slider(key="txt_steps").set_value(steps)
    at.text_area(key="txt_text").set_value(text or SHORT_TEXT[model]).run()
    assert not at.exception, f"setting the text raised: {at.exception}"
    return at


def explain(at: AppTest, method: str) -> AppTest:
    at.radio(key="txt_method").set_value(method).run()
    if method != "IG":
        at.slider(key="txt_ig2_refs").set_value(2)
        at.slider(key="txt_ig2_steps").set_value(4).run()
    at.button(key="txt_explain").click().run()
    assert not at.exception, f"Explain with {method} raised: {at.exception}"
    assert not at.error, f"Explain with {method} showed errors: {[e.value for e in at.error]}"
    return at


def shown(at: AppTest, quantity: str, method: str) -> float:
    """A figure of the completeness table (rows: quantities, columns: methods)."""
    for frame in at.dataframe:
        table = frame.value
        if "quantity" in table.columns and method in table.columns:
            rows = table[table["quantity"].str.startswith(quantity)]
            if len(rows):
                return float(rows[method].iloc[0])
    raise AssertionError(f"no {quantity!r} for {method} in the completeness table")


def assert_sums_hold(at: AppTest, name: str) -> None:
    """word sum == token sum, and both == f(x) - f(reference) up to the delta shown."""
    words = shown(at, "sum over words", name)
    tokens = shown(at, "sum over tokens", name)
    f_input = shown(at, "f(input)", name)
    f_reference = shown(at, "f(reference)", name)
    delta = shown(at, "delta", name)
    assert abs(words - tokens) <= 1e-9 * (1.0 + abs(tokens)), \
        f"{name}: word sum {words} != token sum {tokens}"
    gap = f_input - f_reference
    assert abs((tokens - gap) - delta) <= 1e-6 * (1.0 + abs(tokens) + abs(f_input)), \
        f"{name}: sum {tokens} - (f(x) - f(ref)) {gap} should be the delta shown {delta}"


def ranked_words(at: AppTest) -> list[list[str]]:
    return [frame.value["word"].tolist() for frame in at.dataframe
            if "word" in frame.value.columns]


@pytest.mark.parametrize("model", MODELS)
def test_each_model_and_method_gives_results_whose_sums_agree(model: str) -> None:
    at = open_text_page(model)
    for method in METHODS:
        explain(at, method)
        names = ("IG", "IG2") if method == "both" else (method,)
        for name in names:
            assert_sums_hold(at, name)
        assert len(ranked_words(at)) == len(names), f"{method}: one ranked list per method"
        assert any("reference sentence" in f.value.columns for f in at.dataframe) == \
            (method != "IG"), f"{method}: IG2's reference sentences are listed iff IG2 ran"
    at.radio(key="txt_level").set_value("tokens").run()
    assert not at.exception, "switching to tokens re-renders without error"
    assert_sums_hold(at, "IG")


@pytest.mark.parametrize("sample", [
    ("the movie was really good .", "good"),
    ("this film seemed terrible in the end .", "terrible"),
    ("our hotel felt wonderful this week .", "wonderful"),
])
def test_planted_cue_words_rank_first(sample: tuple[str, str]) -> None:
    text, cue = sample
    at = explain(open_text_page("cue_transformer", text, steps=32), "IG")
    ranked = ranked_words(at)[0]
    assert ranked[0] == cue, f"the cue {cue!r} ranks first in {ranked}"


def test_negated_cue_puts_both_decisive_words_on_top() -> None:
    at = explain(open_text_page("cue_transformer", "the service was honestly not bad .",
                                steps=32), "IG")
    assert set(ranked_words(at)[0][:2]) == {"not", "bad"}, f"'not bad': {ranked_words(at)}"


def test_empty_text_says_so_and_keeps_the_last_result() -> None:
    at = explain(open_text_page("cue_transformer"), "IG")
    delta = shown(at, "delta", "IG")
    for blank in ("", "   \n  "):
        at.text_area(key="txt_text").set_value(blank).run()
        assert not at.exception, f"{blank!r} raised: {at.exception}"
        assert any("empty" in e.value for e in at.error), f"clear message for {blank!r}"
        assert at.button(key="txt_explain").disabled, "nothing to explain: button disabled"
        assert shown(at, "delta", "IG") == delta, "the previous result stays on screen"
    at.text_area(key="txt_text").set_value("the plot is quite boring .").run()
    explain(at, "IG")
    assert set(ranked_words(at)[0]) == {"the", "plot", "is", "quite", "boring", "."}, \
        f"the new text is explained: {ranked_words(at)}"
    assert_sums_hold(at, "IG")


@pytest.mark.parametrize("model", ["cue_transformer", "minilm_sentiment"])
def test_100000_characters_are_truncated_with_a_count(model: str) -> None:
    text = ("good " * 20_000)[:100_000]
    at = open_text_page(model, text)
    warnings = " ".join(w.value for w in at.warning)
    assert "dropped" in warnings and "tokens" in warnings, f"truncation warning: {warnings!r}"
    explain(at, "IG")
    assert_sums_hold(at, "IG")


@pytest.mark.parametrize("text", ["😀🎉🚀", "Hello мир, 世界 and مرحبا!"])
def test_emoji_and_mixed_scripts_do_not_crash(text: str) -> None:
    at = open_text_page("minilm_sentiment", text)
    explain(at, "IG")
    assert_sums_hold(at, "IG")
    assert len(ranked_words(at)[0]) >= 1, "unknown symbols ([UNK]) are ranked like words"


def test_custom_zero_shot_labels_are_explained() -> None:
    at = open_text_page("minilm_topic", "I love playing chess.")
    at.text_area(key="txt_labels_minilm_topic").set_value(
        "games: This text is about games.\ncooking: This text is about food and recipes.")
    at.button(key="txt_labels_apply_minilm_topic").click().run()
    assert not at.exception and not at.error, f"labels accepted: {[e.value for e in at.error]}"
    classes = [str(c) for frame in at.dataframe if "class" in frame.value.columns
               for c in frame.value["class"]]
    assert any("games" in c for c in classes) and any("cooking" in c for c in classes), \
        f"the new classes are shown: {classes}"
    explain(at, "IG")
    assert_sums_hold(at, "IG")


def test_changing_the_view_does_not_recompute() -> None:
    at = explain(open_text_page("cue_transformer"), "IG")
    runs = dict(at.session_state["txt_runs"])
    at.radio(key="txt_level").set_value("tokens").run()
    at.number_input(key="txt_top_k").set_value(3).run()
    after = dict(at.session_state["txt_runs"])
    assert after.keys() == runs.keys() and all(after[k] is runs[k] for k in runs), \
        "view changes keep the stored runs (same objects: nothing recomputed)"
    assert len(ranked_words(at)) == 0 and len(at.dataframe) >= 1, "token tables are shown"


def _tiny_hugging_face_folder(folder: Path) -> Path:
    """A randomly initialised one-layer BERT classifier saved like a hub checkpoint."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "good",
             "bad", "##s", "."]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, num_labels=2,
                        max_position_embeddings=64, id2label={0: "neg", 1: "pos"},
                        label2id={"neg": 0, "pos": 1})
    BertForSequenceClassification(config).save_pretrained(str(folder))
    return folder


def test_hugging_face_classifier_from_a_local_folder(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_DASHBOARD_MODEL_DIRS", str(tmp_path))  # the operator shares it
    folder = _tiny_hugging_face_folder(tmp_path / "tiny")
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["selected_model_text"] = "cue_transformer"
    at.run()
    at.radio(key="txt_model_source").set_value("Hugging Face classifier").run()
    at.text_input(key="txt_hf_source").set_value(str(folder))
    at.button(key="txt_hf_load").click().run()
    assert not at.exception and not at.error, f"the folder loads: {[e.value for e in at.error]}"
    at.checkbox(key="txt_curve").uncheck()
    at.slider(key="txt_steps").set_value(8)
    at.text_area(key="txt_text").set_value("the movie was goods .").run()
    explain(at, "IG")
    assert_sums_hold(at, "IG")
    tokens = [u for frame in at.dataframe if "word" in frame.value.columns
              for u in frame.value["word"]]
    assert "goods" in tokens, f"'good' + '##s' is one word in the ranked list: {tokens}"
    at.text_input(key="txt_hf_source").set_value(str(tmp_path / "missing"))
    at.button(key="txt_hf_load").click().run()
    assert not at.exception, f"a missing folder raised: {at.exception}"
    assert any("Could not load" in e.value for e in at.error), "a clear message"


def test_uploaded_txt_file_is_explained_and_bad_bytes_are_refused() -> None:
    at = open_text_page("cue_transformer")
    at.radio(key="txt_input_mode").set_value("Upload .txt").run()
    at.file_uploader(key="txt_upload").set_value(
        ("review.txt", b"the plot is quite boring .", "text/plain")).run()
    explain(at, "IG")
    assert_sums_hold(at, "IG")
    at.file_uploader(key="txt_upload").set_value(
        ("binary.txt", b"\xff\xfe\xfa\x00", "text/plain")).run()
    assert not at.exception, f"binary bytes raised: {at.exception}"
    assert any("not UTF-8" in e.value for e in at.error), "a clear message for binary bytes"


def test_page_figures_match_the_core_called_directly() -> None:
    import torch

    from attribution_core import integrated_gradients
    from attribution_core.models import load_model

    text = "our hotel felt wonderful this week ."
    at = explain(open_text_page("cue_transformer", text, steps=32), "IG")
    loaded = load_model("cue_transformer", "cpu")
    assert loaded.preprocess is not None and loaded.embed is not None, "a text model"
    batch = loaded.preprocess(text)
    with torch.no_grad():
        x = loaded.embed(batch["input_ids"])
        # The [PAD] baseline: every token replaced by [PAD] (this tokenizer adds no specials).
        baseline = loaded.embed(torch.full_like(batch["input_ids"], loaded.tokenizer.pad_token_id))
        target = int(loaded.forward(x, attention_mask=batch["attention_mask"]).argmax())
    core = integrated_gradients(loaded.forward, x, baselines=baseline, target=target, n_steps=32,
                                forward_kwargs={"attention_mask": batch["attention_mask"]})
    word_scores = core.attributions[0].double().sum(-1)
    ranked = next(f.value for f in at.dataframe if "word" in f.value.columns)
    for word, score in zip(ranked["word"], ranked["attribution"], strict=True):
        position = text.split().index(word)
        assert abs(float(score) - float(word_scores[position])) <= 1e-6, \
            f"{word}: page {score}, core {float(word_scores[position])}"
    assert abs(shown(at, "delta", "IG") - float(core.delta[0])) <= 1e-6, "delta agrees"
