"""Network definitions of the built-in models (shared by the training scripts and the registry).

Every classifier ends in a linear layer called ``head``: its input is the penultimate
representation IG2 uses by default (``ModelSpec.representation_module = "head"``). Image models
take pixels in [0, 1] directly (no normalisation layer in front), so a black baseline is zeros
and the IG2 input box is [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 grey digits, input ``[B, 1, 8, 8]`` in [0, 1]."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU())
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(self.features(x)))


class ShapesCNN(nn.Module):
    """A small CNN for 32x32 RGB shape scenes, input ``[B, 3, 32, 32]`` in [0, 1]."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.ReLU())
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(self.features(x)))


class TabularMLP(nn.Module):
    """An MLP over standardised features.

    For regression the output is mapped back to the target's raw units by two buffers
    (``output_shift + output_scale * head(h)``), so explanations read in real units while
    training ran on a standardised target.
    """

    def __init__(self, n_features: int, n_outputs: int, hidden: tuple[int, int] = (32, 16)
                 ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_features, hidden[0]), nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
        )
        self.head = nn.Linear(hidden[1], n_outputs)
        self.register_buffer("output_shift", torch.zeros(n_outputs))
        self.register_buffer("output_scale", torch.ones(n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_shift + self.output_scale * self.head(self.body(x))


class CueTransformer(nn.Module):
    """A two-layer transformer encoder over word embeddings with masked mean pooling.

    ``forward(inputs_embeds [B, L, D], attention_mask [B, L]) -> logits [B, C]`` (centred: they
    sum to zero); ``embed`` maps word ids to embeddings (``[PAD]`` is the zero vector).
    Positions are added inside ``forward`` so explanations are taken with respect to the word
    embeddings only.
    """

    def __init__(self, vocab_size: int, n_classes: int = 2, dim: int = 32, max_len: int = 24,
                 n_layers: int = 2, n_heads: int = 4) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, n_heads, dim_feedforward=2 * dim, dropout=0.0,
                                           batch_first=True)
        # The nested-tensor fast path is inference-only; attributions need plain autograd.
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, n_classes)
        self.max_len = max_len

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.word_embeddings(input_ids)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        batch, length, _ = inputs_embeds.shape
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, device=inputs_embeds.device)
        positions = torch.arange(length, device=inputs_embeds.device)
        hidden = inputs_embeds + self.position_embeddings(positions).to(inputs_embeds.dtype)
        keep = attention_mask.to(torch.bool)
        hidden = self.encoder(hidden, src_key_padding_mask=~keep)
        weights = keep.to(hidden.dtype).unsqueeze(-1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        logits = self.head(pooled)
        # Softmax ignores a shift shared by all classes; removing it leaves each logit with only
        # the evidence that tells the classes apart, which is what an explanation should show.
        return logits - logits.mean(dim=-1, keepdim=True)
