"""Train the planted-cue transformer:
``python -m attribution_core.train.cue_transformer [--seed S] [--epochs E]``.

Data: the generated corpus of :mod:`attribution_core.datasets.cue_corpus` (training sentences from
generator seed 0, held-out sentences from seed 1). The word-level tokenizer's vocabulary is
saved as ``assets/models/cue_transformer.tokenizer.json`` next to the weights.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from attribution_core.datasets.cue_corpus import (
    CLASS_NAMES,
    NEGATION,
    NEGATIVE_CUES,
    POSITIVE_CUES,
    generate_corpus,
    vocabulary_words,
)
from attribution_core.models.architectures import CueTransformer
from attribution_core.models.assets import MODELS_DIR, sha256_file
from attribution_core.models.word_tokenizer import SPECIAL_TOKENS, WordTokenizer
from attribution_core.train.common import (
    TrainConfig,
    accuracy,
    fit,
    parse_args,
    save_model,
    seed_everything,
)

NAME = "cue_transformer"
TRAIN_SET = (4000, 0)  # (count, generator seed)
HELD_OUT = (1000, 1)
MAX_LENGTH = 24
DEFAULT = TrainConfig(seed=0, epochs=15, batch_size=64, lr=3e-3, weight_decay=1e-4)
TOKENIZER_FILE = MODELS_DIR / f"{NAME}.tokenizer.json"


def make_tokenizer() -> WordTokenizer:
    return WordTokenizer([*SPECIAL_TOKENS, *vocabulary_words()], max_length=MAX_LENGTH)


def encode(tokenizer: WordTokenizer, n: int, seed: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    corpus = generate_corpus(n, seed)
    batch = tokenizer([s.text for s in corpus])
    labels = torch.tensor([s.label for s in corpus], dtype=torch.long)
    return batch["input_ids"], batch["attention_mask"], labels


def augment(tokenizer: WordTokenizer, ids: torch.Tensor, mask: torch.Tensor,
            labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teach the ground truth explicitly: fillers carry no evidence, and no cue means neutral.

    Adds (1) copies with the cue blanked to ``[PAD]`` (the zero embedding) and all-``[PAD]``
    rows, both with 50/50 targets, so the zero / ``[PAD]`` baseline is neutral; (2) copies with
    30% of the filler words blanked, same label, so the model cannot lean on fillers. Without
    them the model is free to route evidence through neighbouring fillers, and IG (correctly)
    credits those fillers.
    """
    cue_ids = torch.tensor(tokenizer.encode(" ".join((*POSITIVE_CUES, *NEGATIVE_CUES))))
    kept_ids = torch.tensor(tokenizer.encode(f"{NEGATION} ."))
    is_cue = torch.isin(ids, cue_ids)
    blanked = ids.masked_fill(is_cue, tokenizer.pad_token_id)
    empty = torch.full_like(ids, tokenizer.pad_token_id)
    generator = torch.Generator().manual_seed(seed)
    filler = ~is_cue & ~torch.isin(ids, kept_ids) & (mask == 1)
    dropped = ids.masked_fill(filler & (torch.rand(ids.shape, generator=generator) < 0.3),
                              tokenizer.pad_token_id)
    targets = torch.nn.functional.one_hot(labels, len(CLASS_NAMES)).float()
    neutral = torch.full_like(targets, 1.0 / len(CLASS_NAMES))
    half = len(ids) // 2  # half as many all-[PAD] rows keeps the extra cost small
    return (torch.cat([ids, blanked, empty[:half], dropped]),
            torch.cat([mask, mask, mask[:half], mask]),
            torch.cat([targets, neutral, neutral[:half], targets]))


class _TrainingView(nn.Module):
    """Token ids in, logits out (training needs the embedding inside the graph)."""

    def __init__(self, model: CueTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(self.model.embed(input_ids), attention_mask)


def train(config: TrainConfig = DEFAULT, n_train: int = TRAIN_SET[0]
          ) -> tuple[CueTransformer, WordTokenizer, dict[str, float]]:
    seed_everything(config.seed)
    tokenizer = make_tokenizer()
    ids, mask, targets = augment(tokenizer, *encode(tokenizer, n_train, TRAIN_SET[1]),
                                 seed=config.seed)
    model = CueTransformer(len(tokenizer), n_classes=len(CLASS_NAMES), max_len=MAX_LENGTH)
    view = _TrainingView(model)
    fit(view, ids, targets, config, nn.functional.cross_entropy,
        forward_kwargs={"attention_mask": mask})
    test_ids, test_mask, test_labels = encode(tokenizer, *HELD_OUT)
    return model, tokenizer, {"accuracy": accuracy(view, test_ids, test_labels,
                                                   attention_mask=test_mask),
                              "n_test": HELD_OUT[0]}


def main() -> None:
    config = parse_args(__doc__ or NAME, DEFAULT)
    start = time.perf_counter()
    model, tokenizer, metrics = train(config)
    tokenizer.save(TOKENIZER_FILE)
    path = save_model(
        NAME, model, config, f"attribution_core.train.{NAME}",
        f"generated planted-cue corpus: {TRAIN_SET[0]} training sentences (seed {TRAIN_SET[1]}),"
        f" {HELD_OUT[0]} held-out (seed {HELD_OUT[1]}); one cue word per sentence, negated by "
        "'not' with probability 0.35; augmented with cue-blanked and all-[PAD] rows (50/50 "
        "targets, so the zero baseline is neutral) and 30% filler dropout (same label)",
        metrics, {"class_names": list(CLASS_NAMES), "tokenizer_file": TOKENIZER_FILE.name,
                  "tokenizer_sha256": sha256_file(TOKENIZER_FILE),
                  "max_length": MAX_LENGTH, "vocab_size": len(tokenizer),
                  "architecture": {"dim": 32, "layers": 2, "heads": 4}},
        time.perf_counter() - start)
    print(f"{NAME}: held-out accuracy {metrics['accuracy']:.4f}; weights at {path}")


if __name__ == "__main__":
    main()
