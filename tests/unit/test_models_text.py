"""Text models: the planted-cue transformer explained with IG, and the MiniLM zero-shot chain."""

from __future__ import annotations

import pytest
import torch

from attribution_core import integrated_gradients
from attribution_core.datasets.cue_corpus import generate_corpus
from attribution_core.models import ModelLoadError, get_spec, load_model, register_spec
from attribution_core.models.assets import MODELS_DIR, read_metadata, sha256_file
from attribution_core.models.builtin_text import SENTIMENT_LABELS, zero_shot_spec


def test_planted_cue_words_rank_first_under_ig() -> None:
    model = load_model("cue_transformer", "cpu")
    corpus = generate_corpus(80, 2024)  # fresh sentences, neither training nor held-out seed
    batch = model.tokenizer([s.text for s in corpus])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    labels = torch.tensor([s.label for s in corpus])
    embeddings = model.embed(ids).detach()
    pad = model.embed(torch.full_like(ids, model.tokenizer.pad_token_id)).detach()
    result = integrated_gradients(model.forward, embeddings, baselines=pad, target=labels,
                                  n_steps=64, forward_kwargs={"attention_mask": mask})
    assert float(result.relative_delta.max()) < 0.05, "IG should be nearly complete here"
    assert float(result.f_baselines.abs().max()) < 0.5, "the [PAD] baseline should be neutral"
    per_token = result.attributions.sum(-1)
    top_is_decisive, shares = 0, []
    for i, sentence in enumerate(corpus):
        tokens = model.tokenizer.convert_ids_to_tokens(ids[i])
        decisive = torch.tensor([t in sentence.decisive_words for t in tokens]) & (mask[i] == 1)
        best = int(per_token[i].masked_fill(mask[i] == 0, float("-inf")).argmax())
        top_is_decisive += bool(decisive[best])
        # Share of f(x) - f(baseline) carried by the decisive words (cue, and "not" if negated).
        shares.append(float(per_token[i][decisive].sum() / per_token[i].sum()))
    assert top_is_decisive >= 0.95 * len(corpus), f"top word decisive in {top_is_decisive}/80"
    assert min(shares) > 0.6, f"decisive words carry only {min(shares):.2f} of one output"
    assert sum(share > 0.8 for share in shares) >= 0.9 * len(corpus), (
        f"decisive words should carry most of the output change: {sorted(shares)[:10]}")
    negated = sum(len(s.decisive_words) == 2 for s in corpus)
    assert negated >= 15, f"the corpus should hold negated sentences, got {negated}"


def test_cue_tokenizer_round_trip_and_special_ids() -> None:
    model = load_model("cue_transformer", "cpu")
    metadata = read_metadata("cue_transformer")
    assert sha256_file(MODELS_DIR / metadata["tokenizer_file"]) == metadata["tokenizer_sha256"], (
        "the tokenizer JSON next to the weights is not the one the model was trained with")
    batch = model.preprocess("The movie was NOT good.")
    tokens = model.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    assert tokens == ["the", "movie", "was", "not", "good", "."], tokens
    assert model.tokenizer(["zzz"])["input_ids"][0, 0] == model.tokenizer.unk_token_id, "unk"
    logits = model.forward(model.embed(batch["input_ids"]), attention_mask=batch["attention_mask"])
    assert int(logits.argmax(1)) == 0, "'not good' must read as negative"


def test_minilm_zero_shot_sentiment_chain() -> None:
    model = load_model("minilm_sentiment", "cpu")
    assert model.weights_hash == read_metadata("minilm_sentiment")["sha256"], "stale metadata"
    texts = ["What a wonderful, delightful day.", "This was awful and I hated it."]
    batch = model.tokenizer(texts, return_tensors="pt", padding=True)
    embeddings = model.embed(batch["input_ids"]).detach()
    logits = model.forward(embeddings, attention_mask=batch["attention_mask"])
    positive = model.spec.class_names.index("positive")
    assert logits.argmax(1).tolist() == [positive, 1 - positive], f"logits {logits}"
    result = integrated_gradients(model.forward, embeddings[:1], target=positive, n_steps=32,
                                  forward_kwargs={"attention_mask": batch["attention_mask"][:1]})
    assert result.attributions.shape == embeddings[:1].shape, "attribution per embedding value"
    assert torch.isfinite(result.attributions).all(), "gradients flow through the encoder"
    assert float(result.relative_delta[0]) < 0.1, f"completeness {result.relative_delta}"


def test_zero_shot_label_sets_are_editable_and_hashed() -> None:
    edited = dict(SENTIMENT_LABELS, positive="A cheerful review about happiness.")
    spec = zero_shot_spec("minilm_custom_test", edited)
    assert spec.weights_sha256 != get_spec("minilm_sentiment").weights_sha256, (
        "changing a label description must change the content hash")
    register_spec(spec, replace=True)
    loaded = load_model("minilm_custom_test", "cpu")
    assert loaded.weights_hash == spec.weights_sha256, "loaded hash matches the spec"
    assert loaded.extras["label_descriptions"] == edited, "descriptions kept"
    with pytest.raises(ModelLoadError):
        zero_shot_spec("bad", {"only": "one label"})
