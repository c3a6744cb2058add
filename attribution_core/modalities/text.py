"""Text in, token embeddings for the core; token attributions out, as tokens and whole words.

No Streamlit here: the dashboard's text page and the tests call the same functions.

* :func:`encode_text` tokenizes with the model's tokenizer, truncates to the model's maximum and
  counts the tokens that were dropped (so the page can say so).
* :func:`group_words` joins sub-word tokens into words (``##`` WordPiece continuations, ``Ġ`` /
  ``▁`` word starts, or the fast tokenizers' ``word_ids``); special tokens stay on their own.
* :func:`word_scores` sums the token scores of each word. It never normalises: the sum over words
  is the sum over tokens, so the completeness identity holds at every level.
* :func:`text_baseline` builds the [PAD] / [MASK] / [UNK] / zero-embedding baselines, keeping the
  special tokens ([CLS], [SEP], ...) as they are in the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from attribution_core.limits import (
    MAX_LABEL_CHARS,
    MAX_LABEL_DESCRIPTION_CHARS,
    MAX_ZERO_SHOT_LABELS,
)

BASELINE_KINDS = ("pad", "mask", "unk", "zero")
BASELINE_LABELS = {
    "pad": "[PAD] embeddings", "mask": "[MASK] embeddings", "unk": "[UNK] embeddings",
    "zero": "zero embedding",
}
MAX_CHARACTERS = 200_000  # beyond this even counting the dropped tokens gets slow
CONTINUATION_PREFIX = "##"  # WordPiece: the token continues the previous word
WORD_START_MARKERS = ("Ġ", "▁")  # byte-level BPE / SentencePiece: the token starts a word


class TextInputError(ValueError):
    """The text cannot be explained; the message says why in words a user can act on."""


def check_label_count(count: int) -> None:
    """Every zero-shot label is embedded by the model, for every run: the count is bounded
    (500 long labels took 25 s and 2.2 GB)."""
    if count > MAX_ZERO_SHOT_LABELS:
        raise TextInputError(f"{count:,} labels were given; at most {MAX_ZERO_SHOT_LABELS} "
                             "are accepted.")


def check_label(label: str, description: str) -> None:
    """One zero-shot label and its description, within their lengths."""
    if len(label) > MAX_LABEL_CHARS:
        raise TextInputError(f"The label {label[:30]!r}… has {len(label):,} characters; at "
                             f"most {MAX_LABEL_CHARS} are accepted.")
    if len(description) > MAX_LABEL_DESCRIPTION_CHARS:
        raise TextInputError(f"The description of {label[:30]!r} has {len(description):,} "
                             f"characters; at most {MAX_LABEL_DESCRIPTION_CHARS} are accepted.")


@dataclass(frozen=True)
class EncodedText:
    """One text as the model sees it (after truncation) and what truncation cost."""

    input_ids: torch.Tensor  # [1, L] long
    attention_mask: torch.Tensor  # [1, L] long
    tokens: tuple[str, ...]  # L token strings
    special: tuple[bool, ...]  # L flags: special tokens ([CLS], [SEP], [PAD], ...)
    n_tokens_full: int  # tokens the whole text would need (special tokens included)
    n_dropped: int  # tokens cut by truncation
    max_length: int

    @property
    def length(self) -> int:
        return len(self.tokens)

    @property
    def n_content_tokens(self) -> int:
        return sum(1 for flag in self.special if not flag)


@dataclass(frozen=True)
class WordSpan:
    """A word: its text, the token positions it covers, and whether it is a special token."""

    text: str
    token_indices: tuple[int, ...]
    special: bool


@dataclass(frozen=True)
class ScoredUnit:
    """A token or a word with its attribution (same units as the model's output)."""

    position: int
    text: str
    score: float
    special: bool


@dataclass(frozen=True)
class RankedUnit:
    rank: int
    text: str
    score: float
    share: float  # score / sum of |scores| over the ranked units (signed)
    position: int


def max_length_of(tokenizer: Any, declared: int | None = None, ceiling: int = 512) -> int:
    """The model's maximum sequence length: the declared one, else the tokenizer's (bounded)."""
    if declared:
        return int(declared)
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value <= 100_000:
        return min(value, ceiling)
    return ceiling


def check_text(text: Any) -> str:
    """The text, or a clear error for nothing to explain / too much to handle."""
    if not isinstance(text, str):
        raise TextInputError(f"Expected text, got {type(text).__name__}.")
    if not text.strip():
        raise TextInputError("The text is empty: type or paste a sentence to explain.")
    if len(text) > MAX_CHARACTERS:
        raise TextInputError(f"The text has {len(text):,} characters; at most "
                             f"{MAX_CHARACTERS:,} are accepted (only the first tokens are "
                             "explained anyway).")
    return text


def special_ids_of(tokenizer: Any) -> set[int]:
    """Structural special tokens ([CLS], [SEP], [PAD], ...). [UNK] is not one of them: it stands
    for a real word (an emoji, a rare script) that must be attributed like any other."""
    special = {int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])}
    unknown = getattr(tokenizer, "unk_token_id", None)
    return special - ({int(unknown)} if unknown is not None else set())


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens the whole text needs, special tokens included (no truncation)."""
    split = getattr(tokenizer, "split", None)
    if callable(split):  # the word-level tokenizer truncates in __call__; count its words
        return len(split(text))
    encoded = tokenizer(text, truncation=False, add_special_tokens=True)
    return len(encoded["input_ids"])


def encode_text(tokenizer: Any, text: str, max_length: int,
                preprocess: Callable[[str], dict[str, torch.Tensor]] | None = None
                ) -> EncodedText:
    """Tokenize ``text`` for the model (``preprocess`` when the model has one), truncated."""
    check_text(text)
    if preprocess is not None:
        batch = preprocess(text)
    else:
        batch = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)
    input_ids = torch.as_tensor(batch["input_ids"]).reshape(1, -1).long()
    mask = batch.get("attention_mask")
    attention_mask = (torch.ones_like(input_ids) if mask is None
                      else torch.as_tensor(mask).reshape(1, -1).long())
    kept = int(input_ids.shape[1])
    if kept == 0 or int(attention_mask.sum()) == 0:
        raise TextInputError("The text gives no tokens the model knows; try other words.")
    special_ids = special_ids_of(tokenizer)
    ids = [int(i) for i in input_ids[0].tolist()]
    tokens = tuple(str(t) for t in tokenizer.convert_ids_to_tokens(ids))
    full = max(count_tokens(tokenizer, text), kept)
    return EncodedText(
        input_ids=input_ids, attention_mask=attention_mask, tokens=tokens,
        special=tuple(i in special_ids for i in ids), n_tokens_full=full,
        n_dropped=full - kept, max_length=int(max_length))


def encode_to_length(tokenizer: Any, texts: Sequence[str], length: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and masks ``[B, length]``: each text truncated or padded to ``length``.

    IG2 walks from the explicand towards references of the same shape, so reference sentences
    are cut or padded to the explicand's token count (padding is masked out).
    """
    pad_id = int(getattr(tokenizer, "pad_token_id", 0) or 0)
    ids = torch.full((len(texts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(texts), length), dtype=torch.long)
    for row, text in enumerate(texts):
        encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=length)
        row_ids = torch.as_tensor(encoded["input_ids"]).reshape(-1)[:length]
        ids[row, : row_ids.numel()] = row_ids
        mask[row, : row_ids.numel()] = 1
    return ids, mask


def clean_token(token: str) -> str:
    """A token as people read it: without WordPiece / BPE / SentencePiece markers."""
    if token.startswith(CONTINUATION_PREFIX) and len(token) > len(CONTINUATION_PREFIX):
        return token[len(CONTINUATION_PREFIX):]
    for marker in WORD_START_MARKERS:
        if token.startswith(marker):
            return token[len(marker):] or token
    return token


def group_words(tokens: Sequence[str], special: Sequence[bool],
                word_ids: Sequence[int | None] | None = None) -> list[WordSpan]:
    """Split token positions into words; every position lands in exactly one word.

    With ``word_ids`` (fast tokenizers) consecutive tokens of one word id form a word. Otherwise
    a token continues the previous word when it starts with ``##``, or, for tokenizers that mark
    word starts (``Ġ`` / ``▁`` seen anywhere), when it lacks that marker.
    """
    if len(tokens) != len(special):
        raise ValueError(f"{len(tokens)} tokens but {len(special)} special flags.")
    marks_starts = any(t.startswith(WORD_START_MARKERS) for t in tokens)
    spans: list[list[int]] = []
    previous_word: int | None = None
    for index, token in enumerate(tokens):
        if special[index]:
            spans.append([index])
            previous_word = None
            continue
        if word_ids is not None:
            word = word_ids[index]
            continues = word is not None and word == previous_word and bool(spans)
            previous_word = word
        else:
            continues = bool(spans) and not special[spans[-1][-1]] and (
                (token.startswith(CONTINUATION_PREFIX) and len(token) > 2)
                or (marks_starts and not token.startswith(WORD_START_MARKERS)))
        if continues:
            spans[-1].append(index)
        else:
            spans.append([index])
    words = []
    for span in spans:
        is_special = len(span) == 1 and bool(special[span[0]])
        text = tokens[span[0]] if is_special else "".join(clean_token(tokens[i]) for i in span)
        words.append(WordSpan(text, tuple(span), is_special))
    return words


def token_scores(attributions: torch.Tensor) -> torch.Tensor:
    """Per-token attribution: the sum over the embedding dimension, float64 ``[L]``."""
    values = attributions.detach().cpu().double()
    if values.dim() == 3:
        values = values[0]
    if values.dim() != 2:
        raise ValueError(f"Expected token attributions [1, L, D] or [L, D], got "
                         f"{tuple(attributions.shape)}.")
    return values.sum(dim=-1)


def token_units(scores: torch.Tensor, tokens: Sequence[str], special: Sequence[bool]
                ) -> list[ScoredUnit]:
    values = scores.tolist()
    return [ScoredUnit(i, tokens[i], float(values[i]), bool(special[i]))
            for i in range(len(tokens))]


def word_scores(scores: torch.Tensor, words: Sequence[WordSpan]) -> list[ScoredUnit]:
    """Each word's score is the plain sum of its tokens' scores (never normalised)."""
    values = scores.tolist()
    covered = sorted(i for word in words for i in word.token_indices)
    if covered != list(range(len(values))):
        raise ValueError("The words must cover every token position exactly once.")
    return [ScoredUnit(word.token_indices[0], word.text,
                       math.fsum(values[i] for i in word.token_indices), word.special)
            for word in words]


def total(units: Sequence[ScoredUnit]) -> float:
    return math.fsum(unit.score for unit in units)


def special_share(units: Sequence[ScoredUnit]) -> tuple[float, float]:
    """(sum of the special tokens' scores, their share of the total |attribution|)."""
    special_sum = math.fsum(u.score for u in units if u.special)
    magnitude = math.fsum(abs(u.score) for u in units)
    special_magnitude = math.fsum(abs(u.score) for u in units if u.special)
    return special_sum, (special_magnitude / magnitude if magnitude > 0 else 0.0)


def ranked(units: Sequence[ScoredUnit], include_special: bool = False,
           top_k: int | None = None) -> list[RankedUnit]:
    """Units ordered by |score| (largest first; ties by position), optionally without specials."""
    chosen = [u for u in units if include_special or not u.special]
    magnitude = math.fsum(abs(u.score) for u in chosen)
    order = sorted(chosen, key=lambda u: (-abs(u.score), u.position))
    if top_k is not None:
        order = order[:top_k]
    return [RankedUnit(rank, u.text, u.score, u.score / magnitude if magnitude > 0 else 0.0,
                       u.position) for rank, u in enumerate(order, start=1)]


def baseline_token_id(tokenizer: Any, kind: str) -> int:
    """The token id that replaces every ordinary token for the [PAD] / [MASK] / [UNK] baseline."""
    attribute = {"pad": "pad_token_id", "mask": "mask_token_id", "unk": "unk_token_id"}[kind]
    value = getattr(tokenizer, attribute, None)
    if value is None:
        raise TextInputError(f"This model's tokenizer has no {kind.upper()} token; choose "
                             "another baseline.")
    return int(value)


def text_baseline(kind: str, encoded: EncodedText, tokenizer: Any,
                  embed: Callable[[torch.Tensor], torch.Tensor], inputs_embeds: torch.Tensor
                  ) -> torch.Tensor:
    """Baseline embeddings ``[1, L, D]``; special tokens keep their input embeddings."""
    if kind not in BASELINE_KINDS:
        raise TextInputError(f"Unknown text baseline {kind!r}; choose one of "
                             f"{', '.join(BASELINE_KINDS)}.")
    keep = torch.tensor(encoded.special, dtype=torch.bool, device=inputs_embeds.device)
    keep = keep.view(1, -1, 1)
    if kind == "zero":
        return torch.where(keep, inputs_embeds, torch.zeros_like(inputs_embeds))
    replacement = baseline_token_id(tokenizer, kind)
    ids = encoded.input_ids.clone().to(inputs_embeds.device)
    ids[:, ~keep.view(-1)] = replacement
    with torch.no_grad():
        replaced = embed(ids).to(inputs_embeds.dtype)
    return torch.where(keep, inputs_embeds, replaced)


def truncation_message(encoded: EncodedText) -> str | None:
    """The warning to show when the text was cut, else None."""
    if encoded.n_dropped <= 0:
        return None
    return (f"The text needs {encoded.n_tokens_full:,} tokens but the model reads at most "
            f"{encoded.max_length:,}: {encoded.n_dropped:,} tokens at the end were dropped and "
            "are not explained.")
