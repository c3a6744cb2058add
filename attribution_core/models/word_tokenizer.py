"""A tiny word-level tokenizer with the slice of the Hugging Face tokenizer interface we use.

Lower-cased words and punctuation marks are tokens; unknown words map to ``[UNK]``. The vocabulary
is a JSON list saved next to the model's weights.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[MASK]")
_WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


class WordTokenizer:
    """``tokenizer(text, return_tensors="pt")`` -> ``{"input_ids", "attention_mask"}``."""

    def __init__(self, vocabulary: Sequence[str], max_length: int = 24) -> None:
        if tuple(vocabulary[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"The vocabulary must start with {SPECIAL_TOKENS}.")
        self.vocabulary = list(vocabulary)
        self.index = {word: i for i, word in enumerate(self.vocabulary)}
        self.model_max_length = max_length
        self.pad_token_id, self.unk_token_id, self.mask_token_id = 0, 1, 2
        self.pad_token, self.unk_token, self.mask_token = SPECIAL_TOKENS
        self.all_special_ids = [0, 1, 2]
        self.all_special_tokens = list(SPECIAL_TOKENS)

    @staticmethod
    def split(text: str) -> list[str]:
        return _WORD.findall(text.lower())

    def encode(self, text: str) -> list[int]:
        ids = [self.index.get(word, self.unk_token_id) for word in self.split(text)]
        return ids[: self.model_max_length]

    def __call__(self, texts: str | Sequence[str], return_tensors: str | None = "pt",
                 padding: bool = True, truncation: bool = True,
                 max_length: int | None = None) -> dict[str, torch.Tensor]:
        batch = [texts] if isinstance(texts, str) else list(texts)
        encoded = [self.encode(text)[: max_length or self.model_max_length] for text in batch]
        width = max(1, max(len(ids) for ids in encoded))
        input_ids = torch.zeros(len(batch), width, dtype=torch.long)
        attention_mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def convert_ids_to_tokens(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [self.vocabulary[int(i)] for i in values]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        return " ".join(t for t in self.convert_ids_to_tokens(ids) if t != self.pad_token)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"vocabulary": self.vocabulary,
                                    "max_length": self.model_max_length}, indent=0) + "\n")

    @classmethod
    def load(cls, path: Path) -> WordTokenizer:
        content = json.loads(path.read_text())
        return cls(content["vocabulary"], content["max_length"])
