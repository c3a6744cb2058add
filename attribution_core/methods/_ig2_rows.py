"""Small row helpers of IG2's path walk (``_ig2_path``): the row view, gradients, classes,
clip bounds and the references' forward kwargs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from attribution_core.model_outputs import is_per_row

Bound = float | torch.Tensor | None


class RowView:
    """The rows evaluated at one path point: all of them (no gathers, the common case) or the
    subset still active after early stops."""

    def __init__(self, idx: torch.Tensor, n_total: int) -> None:
        self.idx, self.n, self.full = idx, idx.numel(), idx.numel() == n_total

    def take(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.full else tensor.index_select(0, self.idx)

    def add(self, tensor: torch.Tensor, values: torch.Tensor) -> None:
        if self.full:
            tensor.add_(values)
        else:
            tensor.index_add_(0, self.idx, values)

    def put(self, tensor: torch.Tensor, values: torch.Tensor) -> None:
        if self.full:
            tensor.copy_(values)
        else:
            tensor.index_copy_(0, self.idx, values)


def gradient_of(objective: torch.Tensor, z: torch.Tensor, retain: bool) -> torch.Tensor:
    if not objective.requires_grad:  # the model ignores its input: every gradient is zero
        return torch.zeros_like(z)
    (grad,) = torch.autograd.grad(objective, z, retain_graph=retain, allow_unused=True)
    return torch.zeros_like(z) if grad is None else grad


def classes_of(output: torch.Tensor) -> torch.Tensor:
    if output.dim() == 2 and output.shape[1] > 1:
        return output.detach().argmax(1)
    return torch.full((output.shape[0],), -1, dtype=torch.long, device=output.device)


def clip_bound(value: Bound, x: torch.Tensor) -> torch.Tensor | None:
    if value is None:
        return None
    bound = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    try:
        torch.broadcast_shapes(bound.shape, x.shape[1:])
    except RuntimeError as error:
        raise ValueError(f"clip bound of shape {tuple(bound.shape)} does not broadcast to one "
                         f"input of shape {tuple(x.shape[1:])}.") from error
    return bound


def reference_kwargs_per_row(kwargs: Mapping[str, Any], n_refs: int, n_rows: int,
                             device: torch.device
                             ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors with a leading dim of B (shared references) or N*B / [N, B] become per row."""
    per_row: dict[str, torch.Tensor] = {}
    shared: dict[str, Any] = {}
    n_explicands = n_rows // n_refs
    for name, value in kwargs.items():
        if isinstance(value, torch.Tensor) and value.dim() > 1 and \
                value.shape[:2] == (n_explicands, n_refs):
            per_row[name] = value.reshape(n_rows, *value.shape[2:]).to(device)
        elif is_per_row(value, n_refs):
            per_row[name] = value.to(device).repeat(n_explicands, *([1] * (value.dim() - 1)))
        else:
            shared[name] = value
    return per_row, shared
