"""attribution_core.modalities.text: word grouping, exact sums, truncation counts, baselines."""

from __future__ import annotations

import math

import pytest
import torch

from attribution_core.modalities import text as text_io
from attribution_core.models.word_tokenizer import SPECIAL_TOKENS, WordTokenizer


class PieceTokenizer:
    """A WordPiece-like tokenizer: [CLS] pieces [SEP], words over 4 letters split in two."""

    pad_token_id, unk_token_id, mask_token_id, cls_id, sep_id = 0, 1, 2, 3, 4
    all_special_ids = (0, 1, 2, 3, 4)
    model_max_length = 512

    def __init__(self) -> None:
        self.vocab = ["[PAD]", "[UNK]", "[MASK]", "[CLS]", "[SEP]"]

    def _id(self, piece: str) -> int:
        if piece not in self.vocab:
            self.vocab.append(piece)
        return self.vocab.index(piece)

    def _pieces(self, text: str) -> list[str]:
        pieces = []
        for word in text.lower().split():
            pieces.extend([word[:4], "##" + word[4:]] if len(word) > 4 else [word])
        return pieces

    def __call__(self, text: str, return_tensors: str | None = None, truncation: bool = True,
                 max_length: int | None = None, add_special_tokens: bool = True
                 ) -> dict[str, list[int] | torch.Tensor]:
        ids = [self.cls_id, *[self._id(p) for p in self._pieces(text)], self.sep_id]
        if truncation and max_length is not None and len(ids) > max_length:
            ids = [*ids[: max_length - 1], self.sep_id]
        if return_tensors == "pt":
            tensor = torch.tensor([ids])
            return {"input_ids": tensor, "attention_mask": torch.ones_like(tensor)}
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self.vocab[i] for i in ids]


def test_wordpiece_tokens_join_into_words_and_specials_stay_alone() -> None:
    tokens = ["[CLS]", "unbe", "##liev", "##able", "film", "!", "[SEP]"]
    special = [True, False, False, False, False, False, True]
    words = text_io.group_words(tokens, special)
    assert [w.text for w in words] == ["[CLS]", "unbelievable", "film", "!", "[SEP]"], \
        f"WordPiece continuations join their word: {[w.text for w in words]}"
    assert words[1].token_indices == (1, 2, 3), "the word covers its three pieces"
    assert words[0].special and words[-1].special and not words[1].special, "special flags kept"


def test_bpe_and_sentencepiece_markers_start_words() -> None:
    tokens = ["<s>", "Ġgood", "Ġmo", "vie", "</s>"]
    words = text_io.group_words(tokens, [True, False, False, False, True])
    assert [w.text for w in words] == ["<s>", "good", "movie", "</s>"], \
        f"Ġ starts a word, an unmarked piece continues it: {[w.text for w in words]}"
    pieces = ["▁New", "▁Yor", "k"]
    assert [w.text for w in text_io.group_words(pieces, [False] * 3)] == ["New", "York"], \
        "SentencePiece ▁ marks word starts"


def test_word_ids_override_the_heuristics() -> None:
    words = text_io.group_words(["a", "b", "c"], [False] * 3, word_ids=[0, 0, 1])
    assert [w.token_indices for w in words] == [(0, 1), (2,)], "word_ids decide the grouping"


def test_word_scores_are_plain_sums_and_preserve_the_total_exactly() -> None:
    # Dyadic values: every partial sum is exact in float64, so equality must be exact.
    scores = torch.tensor([0.5, -0.25, 0.125, 1.0, -2.0, 0.75, 0.0625], dtype=torch.float64)
    tokens = ["[CLS]", "unbe", "##liev", "##able", "film", "!", "[SEP]"]
    special = [True, False, False, False, False, False, True]
    words = text_io.word_scores(scores, text_io.group_words(tokens, special))
    assert words[1].score == -0.25 + 0.125 + 1.0, "a word's score is the sum of its pieces"
    assert text_io.total(words) == float(scores.sum()), "word total equals token total exactly"


def test_word_sum_matches_token_sum_on_random_attributions() -> None:
    generator = torch.Generator().manual_seed(3)
    attributions = torch.randn(1, 9, 16, generator=generator, dtype=torch.float64)
    tokens = ["[CLS]", "a", "##b", "##c", "d", "e", "##f", "g", "[SEP]"]
    special = [True] + [False] * 7 + [True]
    scores = text_io.token_scores(attributions)
    assert torch.allclose(scores, attributions[0].sum(-1)), "token score = sum over embedding"
    words = text_io.word_scores(scores, text_io.group_words(tokens, special))
    tokens_total = text_io.total(text_io.token_units(scores, tokens, special))
    assert math.isclose(text_io.total(words), tokens_total, rel_tol=0, abs_tol=1e-12), \
        "grouping never changes the total"
    assert math.isclose(tokens_total, float(attributions.sum()), rel_tol=1e-12), \
        "the token total is the attribution total"


def test_word_scores_refuse_spans_that_miss_a_token() -> None:
    spans = [text_io.WordSpan("a", (0,), False)]
    with pytest.raises(ValueError, match="every token"):
        text_io.word_scores(torch.tensor([1.0, 2.0]), spans)


def test_special_share_and_ranking() -> None:
    units = [text_io.ScoredUnit(0, "[CLS]", 1.0, True), text_io.ScoredUnit(1, "good", 3.0, False),
             text_io.ScoredUnit(2, "film", -4.0, False), text_io.ScoredUnit(3, "[SEP]", 0.0, True)]
    special_sum, share = text_io.special_share(units)
    assert special_sum == 1.0 and share == pytest.approx(1 / 8), \
        f"specials carry 1 of 8 units of |attribution|: {special_sum}, {share}"
    ranked = text_io.ranked(units)
    assert [r.text for r in ranked] == ["film", "good"], "by |score|, specials left out"
    assert ranked[0].share == pytest.approx(-4 / 7), "share is signed over the ranked units"


def test_encode_counts_the_dropped_tokens() -> None:
    tokenizer = PieceTokenizer()
    text = " ".join(["cat"] * 30)
    encoded = text_io.encode_text(tokenizer, text, max_length=10)
    assert encoded.length == 10, f"truncated to the maximum: {encoded.length}"
    assert encoded.n_tokens_full == 32 and encoded.n_dropped == 22, \
        f"30 words + [CLS] + [SEP] = 32 tokens, 22 dropped: {encoded}"
    message = text_io.truncation_message(encoded)
    assert message is not None and "22 tokens" in message, f"the warning says how many: {message}"
    short = text_io.encode_text(tokenizer, "a cat", max_length=10)
    assert short.n_dropped == 0 and text_io.truncation_message(short) is None, "nothing dropped"


def test_encode_counts_words_for_the_word_level_tokenizer() -> None:
    tokenizer = WordTokenizer([*SPECIAL_TOKENS, "good", "film"], max_length=4)
    encoded = text_io.encode_text(tokenizer, "good film good film good film", max_length=4)
    assert encoded.length == 4 and encoded.n_dropped == 2, f"6 words, 4 kept: {encoded}"
    assert encoded.special == (False,) * 4, "no special tokens in this tokenizer's output"


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(text_io.TextInputError, match="empty"):
        text_io.encode_text(PieceTokenizer(), text, max_length=10)


def test_too_long_text_is_refused_before_tokenizing() -> None:
    with pytest.raises(text_io.TextInputError, match="characters"):
        text_io.check_text("x" * (text_io.MAX_CHARACTERS + 1))


def test_baselines_replace_ordinary_tokens_and_keep_specials() -> None:
    tokenizer = PieceTokenizer()
    encoded = text_io.encode_text(tokenizer, "nice movie", max_length=10)
    table = torch.nn.Embedding(len(tokenizer.vocab), 4)
    inputs = table(encoded.input_ids).detach()
    for kind, token_id in (("pad", 0), ("unk", 1), ("mask", 2)):
        baseline = text_io.text_baseline(kind, encoded, tokenizer, table, inputs)
        expected = table(torch.tensor([token_id])).detach()[0]
        for position, is_special in enumerate(encoded.special):
            if is_special:
                assert torch.equal(baseline[0, position], inputs[0, position]), \
                    f"{kind}: special token {position} kept"
            else:
                assert torch.equal(baseline[0, position], expected), \
                    f"{kind}: token {position} replaced by id {token_id}"
    zero = text_io.text_baseline("zero", encoded, tokenizer, table, inputs)
    assert float(zero[0, 1:-1].abs().sum()) == 0.0, "zero baseline: ordinary tokens are zero"
    assert torch.equal(zero[0, 0], inputs[0, 0]), "zero baseline keeps [CLS]"


def test_encode_to_length_pads_and_truncates() -> None:
    tokenizer = PieceTokenizer()
    ids, mask = text_io.encode_to_length(tokenizer, ["a", "a b c d e f g"], 5)
    assert ids.shape == (2, 5) and mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], \
        f"short texts are padded (masked), long ones cut: {mask.tolist()}"
    assert ids[0, 3:].tolist() == [0, 0], "padding uses the pad id"


def test_unknown_token_is_content_not_a_special_token() -> None:
    special = text_io.special_ids_of(PieceTokenizer())
    assert special == {0, 2, 3, 4}, f"[UNK] (id 1) is attributed like a word: {special}"
