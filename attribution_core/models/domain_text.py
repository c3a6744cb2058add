"""Is this text like the model's reference texts? Three cheap measures, said in words.

The text counterpart of :mod:`.domain` (images and tables), calibrated the same way: a text is
*far* on a measure when it exceeds :data:`~.domain.MARGIN` times the reference pool's own 99th
percentile of that measure.

- **unknown tokens**: the share of the text's tokens the tokenizer maps to its unknown token
  (``[UNK]``): words the model has never had a vector for. Because a short text's share moves
  in large steps (one word of five is 20 %), the line is never below
  :data:`MIN_UNKNOWN_SHARE`;
- **length**: the tokens the whole text needs, against the reference texts' lengths (a model
  trained on short reviews reading a long contract);
- **the model's own features**: the distance from the input of its representation layer (where
  the spec names one) to the nearest reference text's, against the reference texts' own
  nearest-neighbour distances (leave-one-out).

Models without reference texts (or with fewer than :data:`MIN_TEXTS`) get no check.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from attribution_core.modalities import text as text_io
from attribution_core.models.domain import MARGIN, PERCENTILE, _nearest
from attribution_core.models.spec import LoadedModel

MIN_TEXTS = 8
MIN_UNKNOWN_SHARE = 0.2
# Reference texts used for the profile (a random subset beyond). Sentences are cheap to embed
# and a generated corpus has many near-twins: 512 of the planted-cue model's 1000 held-out
# sentences called 4 of 1000 new ones far, all 1000 called 1.
MAX_TEXTS = 2048


@dataclass(frozen=True)
class TextProfile:
    unknown_limit: float
    unknown_typical: float  # the pool's 99th percentile of unknown shares
    length_limit: float
    length_median: float
    embeddings: torch.Tensor | None  # [N, E]
    embedding_limit: float | None


@dataclass(frozen=True)
class TextDomainCheck:
    """The verdict for one text: far or not, each measure against its line, and a sentence for
    the page (None when the text looks like the reference texts)."""

    far: bool
    unknown_share: float
    unknown_limit: float
    length: int
    length_limit: float
    embedding_distance: float | None
    embedding_limit: float | None
    message: str | None


_PROFILES: weakref.WeakKeyDictionary[nn.Module, TextProfile] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def unknown_share(tokenizer: object, input_ids: torch.Tensor, mask: torch.Tensor
                  ) -> torch.Tensor:
    """``[B]`` share of each row's ordinary tokens (mask on, not [CLS]/[SEP]/...) that are the
    tokenizer's unknown token; 0 when the tokenizer has none."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    special = torch.tensor(sorted(text_io.special_ids_of(tokenizer)), dtype=torch.long)
    ids = input_ids.cpu().long()
    content = mask.cpu().bool() & ~torch.isin(ids, special)
    if unknown is None:
        return torch.zeros(ids.shape[0], dtype=torch.float64)
    hits = (content & (ids == int(unknown))).sum(-1).double()
    return hits / content.sum(-1).clamp_min(1).double()


def _features(loaded: LoadedModel, inputs: torch.Tensor, mask: torch.Tensor,
              batch: int = 64) -> torch.Tensor | None:
    """The input of the representation layer for token embeddings ``inputs`` [B, L, D]."""
    layer = loaded.representation()
    if layer is None:
        return None
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured.append(args[0].detach().reshape(args[0].shape[0], -1).cpu().double())

    handle = layer.register_forward_pre_hook(keep)
    try:
        with torch.no_grad():
            for start in range(0, inputs.shape[0], batch):
                loaded.forward(inputs[start:start + batch].to(loaded.device),
                               attention_mask=mask[start:start + batch].to(loaded.device))
    finally:
        handle.remove()
    return torch.cat(captured) if captured else None


def _limit(values: torch.Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return MARGIN * float(torch.quantile(finite, PERCENTILE)) if finite.numel() else float("inf")


def text_profile(loaded: LoadedModel) -> TextProfile | None:
    """The reference texts' statistics for ``loaded`` (once per loaded module), or None."""
    if loaded.spec.modality != "text" or loaded.spec.reference_pool is None or \
            loaded.tokenizer is None:
        return None
    with _LOCK:
        known = _PROFILES.get(loaded.module)
    if known is not None:
        return known
    try:
        pool = loaded.spec.reference_pool()
    except Exception:  # e.g. a label set a user typed: no labelled texts to compare with
        return None
    texts = list(pool.extras.get("texts") or ())
    ids, mask = pool.extras.get("input_ids"), pool.extras.get("attention_mask")
    if len(texts) < MIN_TEXTS or ids is None or mask is None:
        return None
    chosen = torch.arange(len(texts))
    if len(texts) > MAX_TEXTS:
        chosen = torch.randperm(len(texts),
                                generator=torch.Generator().manual_seed(0))[:MAX_TEXTS]
    ids, mask = ids[chosen].cpu(), mask[chosen].cpu()
    shares = unknown_share(loaded.tokenizer, ids, mask)
    lengths = torch.tensor([text_io.count_tokens(loaded.tokenizer, texts[int(i)])
                            for i in chosen], dtype=torch.float64)
    embeddings = _features(loaded, pool.inputs[chosen].float(), mask)
    embedding_limit = None if embeddings is None else _limit(
        _nearest(embeddings, embeddings, leave_one_out=True))
    made = TextProfile(
        unknown_limit=max(MIN_UNKNOWN_SHARE, _limit(shares)),
        unknown_typical=float(torch.quantile(shares, PERCENTILE)),
        length_limit=_limit(lengths), length_median=float(lengths.median()),
        embeddings=embeddings, embedding_limit=embedding_limit)
    with _LOCK:
        _PROFILES[loaded.module] = made
    return made


def check_text(loaded: LoadedModel, encoded: text_io.EncodedText) -> TextDomainCheck | None:
    """Whether the encoded text is far from the model's reference texts; None when the model
    has none to compare with."""
    found = text_profile(loaded)
    if found is None:
        return None
    share = float(unknown_share(loaded.tokenizer, encoded.input_ids,
                                encoded.attention_mask)[0])
    length = int(encoded.n_tokens_full)
    distance = None
    if found.embeddings is not None and loaded.embed is not None:
        with torch.no_grad():
            inputs = loaded.embed(encoded.input_ids.to(loaded.device)).detach().float()
        features = _features(loaded, inputs, encoded.attention_mask)
        if features is not None:
            distance = float(_nearest(features, found.embeddings, False)[0])
    reasons: list[str] = []
    if share > found.unknown_limit:
        unknown = round(share * encoded.n_content_tokens)
        reasons.append(
            f"{unknown} of its {encoded.n_content_tokens} tokens ({100 * share:.0f} %) are "
            f"unknown to the tokenizer ([UNK]), where the reference texts have at most "
            f"{100 * found.unknown_typical:.0f} % (99 % of them)")
    if length > found.length_limit:
        reasons.append(
            f"it needs {length} tokens where the reference texts need {found.length_median:.0f}"
            f" (median); {length / found.length_limit * MARGIN:.1f}x as long as 99 % of them")
    if distance is not None and found.embedding_limit is not None and \
            distance > found.embedding_limit:
        reasons.append(
            f"in the model's own features it is {distance / found.embedding_limit * MARGIN:.1f}x"
            " farther from the nearest reference text than 99 % of the reference texts are "
            "from theirs")
    message = None
    if reasons:
        message = (f"This text is unlike the data {loaded.spec.title} was made for: "
                   + "; ".join(reasons) + ". The prediction, and so its explanation, may mean "
                   "little here.")
    return TextDomainCheck(
        far=bool(reasons), unknown_share=share, unknown_limit=found.unknown_limit,
        length=length, length_limit=found.length_limit, embedding_distance=distance,
        embedding_limit=found.embedding_limit, message=message)
