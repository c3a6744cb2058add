"""Module wrappers that put every user model into the model-input space the core explains in.

Image classifiers get their normalisation inside the module, so the model input is pixels in
[0, 1]: the black baseline is zeros, the IG2 box is [0, 1], and paths and gradients live in the
same space (IG2.md's pitfall with normalised tensors cannot happen). Text classifiers take
``inputs_embeds`` and ``attention_mask``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from attribution_core.model_outputs import as_output_tensor


class NormalisedImageClassifier(nn.Module):
    """``model((x - mean) / std)`` for pixels ``x`` in [0, 1]; the inner model is ``.model``."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(shape),
                             persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(shape),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalised = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return as_output_tensor(self.model(normalised))


class HFImageClassifier(nn.Module):
    """A Hugging Face image classifier on normalised ``pixel_values``, returning logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return as_output_tensor(self.model(pixel_values=pixel_values))


class HFTextClassifier(nn.Module):
    """``forward(inputs_embeds, attention_mask) -> logits`` over a Hugging Face classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        embeddings: Any = self.model.get_input_embeddings()  # type: ignore[operator]
        return embeddings(input_ids)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        return as_output_tensor(self.model(inputs_embeds=inputs_embeds,
                                           attention_mask=attention_mask))


def last_linear_name(module: nn.Module) -> str | None:
    """Name of the last ``nn.Linear`` in registration order (the usual classifier head)."""
    name = None
    for child_name, child in module.named_modules():
        if isinstance(child, nn.Linear):
            name = child_name
    return name
