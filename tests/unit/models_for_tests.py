"""Small float64 models shared by the unit tests (deterministic weights from fixed seeds)."""

from __future__ import annotations

import torch
from torch import nn


def mlp(seed: int = 0, n_in: int = 10, n_out: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(n_in, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, n_out)
    ).double().eval()


def small_cnn(seed: int = 0, channels: int = 1, n_out: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, n_out),
    ).double().eval()


class MaskedEmbeddingClassifier(nn.Module):
    """Token embeddings [B, L, E] + attention mask [B, L] -> class logits (masked mean pool)."""

    def __init__(self, embed_dim: int = 8, n_out: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.mix = nn.Linear(embed_dim, 16)
        self.head = nn.Linear(16, n_out)

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.mix(embeds))
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.head(pooled)


class CountingModule(nn.Module):
    """Wraps a model and counts calls and rows, to prove how the engine batches."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.rows: list[int] = []

    def forward(self, inputs: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows.append(int(inputs.shape[0]))
        return self.inner(inputs, **kwargs)
