"""The out-of-domain notice for texts: held-out texts of the built-in models pass, texts of
unknown words, far too long or unlike the reference texts are called far, in words."""

from __future__ import annotations

import pytest
import torch

from attribution_core.datasets.cue_corpus import generate_corpus
from attribution_core.modalities import text as text_io
from attribution_core.models import load_model
from attribution_core.models.domain_text import TextDomainCheck, check_text, text_profile
from attribution_core.models.spec import LoadedModel

CODE = ("SELECT id, name FROM users WHERE created_at > NOW() - INTERVAL '7 days' "
        "ORDER BY name LIMIT 50;")


def _check(loaded: LoadedModel, text: str) -> TextDomainCheck:
    limit = text_io.max_length_of(loaded.tokenizer, loaded.extras.get("max_length"))
    encoded = text_io.encode_text(loaded.tokenizer, text, limit, loaded.preprocess)
    check = check_text(loaded, encoded)
    assert check is not None, f"{loaded.spec.name} has reference texts to compare with"
    return check


def test_new_sentences_of_the_planted_cue_corpus_are_not_called_far() -> None:
    loaded = load_model("cue_transformer", device="cpu")
    held_out = [s.text for s in generate_corpus(200, 7)]  # a seed the pool was not drawn with
    pool = set(loaded.spec.reference_pool().extras["texts"])
    fresh = [t for t in held_out if t not in pool]
    assert len(fresh) >= 100, f"most generated sentences are new: {len(fresh)}"
    flagged = [t for t in fresh if _check(loaded, t).far]
    assert len(flagged) <= 0.01 * len(fresh), \
        f"{len(flagged)} of {len(fresh)} held-out sentences called far: {flagged[:3]}"


@pytest.mark.parametrize("name", ["minilm_sentiment", "minilm_topic"])
def test_reference_sentences_of_the_minilm_models_are_not_called_far(name: str) -> None:
    loaded = load_model(name, device="cpu")
    texts = [str(s.value) for s in loaded.spec.samples()]
    flagged = [t for t in texts if _check(loaded, t).far]  # each against the others
    assert not flagged, f"{name}: reference sentences called far: {flagged}"


def test_unknown_words_are_far_for_the_planted_cue_model_and_said_in_words() -> None:
    loaded = load_model("cue_transformer", device="cpu")
    check = _check(loaded, "Quarterly revenue of the semiconductor division exceeded "
                           "analyst expectations.")
    assert check.far and check.unknown_share > check.unknown_limit, f"unknown words: {check}"
    assert check.embedding_distance is not None and check.embedding_limit is not None and \
        check.embedding_distance > check.embedding_limit, f"and far in its features: {check}"
    assert check.message is not None and "[UNK]" in check.message and \
        "unlike the data" in check.message and "own features" in check.message, check.message
    typical = _check(loaded, "the movie was really good .")
    assert not typical.far and typical.message is None, f"a corpus-like sentence: {typical}"


def test_emoji_and_long_code_are_far_for_minilm() -> None:
    loaded = load_model("minilm_sentiment", device="cpu")
    emoji = _check(loaded, "😀🎉🚀 😀🎉🚀 😀🎉🚀")
    assert emoji.far and emoji.unknown_share == 1.0 and "[UNK]" in (emoji.message or ""), emoji
    code = _check(loaded, CODE)
    assert code.far and code.length > code.length_limit and \
        "tokens where the reference texts need" in (code.message or ""), code
    review = _check(loaded, "The food was wonderful and the staff were friendly.")
    assert not review.far, f"an ordinary review is not far: {review}"


def test_a_model_without_reference_texts_gets_no_check() -> None:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    from attribution_core.models.plugin_specs import build_spec

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16))
    spec = build_spec("no_reference_text", model, "text", tokenizer=tokenizer)
    loaded = spec.loader(torch.device("cpu"))
    encoded = text_io.encode_text(tokenizer, "a b zzz", 16, loaded.preprocess)
    assert text_profile(loaded) is None and check_text(loaded, encoded) is None, \
        "nothing to compare with"
