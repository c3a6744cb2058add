"""Units of a perturbation metric (features grouped into patches, tokens or single features)
and the evaluator that runs lazily built perturbed rows through the model in chunks."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from attribution_core.devices import device_lock, model_device
from attribution_core.engine import GradientEngine, evaluate_in_chunks
from attribution_core.forward import ForwardFn
from attribution_core.methods._gradients import TargetLike
from attribution_core.model_outputs import normalise_target
from attribution_core.validation import (
    check_batch_size,
    check_groups,
    check_positive_int,
    check_unit_ids,
)


def patch_groups(height: int, width: int, patch: int) -> torch.Tensor:
    """Unit ids [height, width] of ``patch`` x ``patch`` squares, row-major (edges may be cut).

    Parameters
    ----------
    height, width : int
        The image's size in pixels, each >= 1.
    patch : int
        The side of a square unit in pixels, >= 1; the last row and column of squares are cut
        short where ``patch`` does not divide the size.

    Returns
    -------
    tensor
        Long [height, width]: every pixel's unit id, numbered row by row from 0, to pass as
        ``groups`` (it broadcasts over the channels of a [C, H, W] row).
    """
    for name, value in (("height", height), ("width", width), ("patch", patch)):
        check_positive_int(name, value)
    per_row = math.ceil(width / patch)
    rows = torch.arange(height).div(patch, rounding_mode="floor")
    cols = torch.arange(width).div(patch, rounding_mode="floor")
    return rows.view(-1, 1) * per_row + cols.view(1, -1)


def token_groups(n_tokens: int) -> torch.Tensor:
    """Unit ids [n_tokens, 1]: one unit per token, shared by its whole embedding vector.

    Parameters
    ----------
    n_tokens : int
        The sequence length L, >= 1.

    Returns
    -------
    tensor
        Long [n_tokens, 1]: token i is unit i; it broadcasts over an [L, E] embedding row.
    """
    check_positive_int("n_tokens", n_tokens)
    return torch.arange(n_tokens).view(-1, 1)


def _unit_map(inputs: torch.Tensor, groups: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """Per-explicand unit id of every flattened feature [B or 1, F], and the unit count K."""
    feature_shape = tuple(inputs.shape[1:])
    n_features = math.prod(feature_shape)
    if groups is None:
        return torch.arange(n_features, device=inputs.device).view(1, -1), n_features
    check_groups(groups)
    try:
        if groups.dim() == inputs.dim():
            expanded = torch.broadcast_to(groups, (groups.shape[0], *feature_shape))
            if groups.shape[0] not in (1, inputs.shape[0]):
                raise RuntimeError("leading dimension")
        else:
            expanded = torch.broadcast_to(groups, feature_shape).unsqueeze(0)
    except RuntimeError as error:
        raise ValueError(
            f"groups of shape {tuple(groups.shape)} do not broadcast to input rows of shape "
            f"{feature_shape} (nor to the inputs {tuple(inputs.shape)})."
        ) from error
    flat = expanded.reshape(expanded.shape[0], -1).to(inputs.device, torch.long)
    return flat, check_unit_ids(flat)


def _unit_scores(attributions: torch.Tensor, unit_map: torch.Tensor, n_units: int
                 ) -> torch.Tensor:
    flat = attributions.reshape(attributions.shape[0], -1)
    index = unit_map.expand(flat.shape[0], -1)
    return torch.zeros(flat.shape[0], n_units, dtype=flat.dtype, device=flat.device
                       ).scatter_add_(1, index, flat)


def _ranks_from_scores(scores: torch.Tensor) -> torch.Tensor:
    """rank[b, u] = position of unit u when sorted by score descending (stable: ties by id)."""
    order = torch.argsort(-scores, dim=1, stable=True)
    return torch.argsort(order, dim=1)


class _RowEvaluator:
    """Target outputs of lazily built perturbed rows, ``batch_size`` rows per model call."""

    def __init__(self, forward: ForwardFn, inputs: torch.Tensor, target: TargetLike,
                 forward_kwargs: Mapping[str, Any] | None, batch_size: int | None) -> None:
        check_batch_size(batch_size)
        self.device = model_device(forward, inputs.device)
        n = inputs.shape[0]
        self.engine = GradientEngine(forward, n, self.device,
                                     target=normalise_target(target, n, self.device),
                                     forward_kwargs=forward_kwargs)
        self.batch_size = batch_size

    def run(self, n_rows: int,
            build: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        values: list[torch.Tensor] = []
        rows = self.batch_size
        if rows is None:
            rows = self.engine.plan_batch(*build(0, 1)).rows

        def evaluate(start: int, stop: int) -> torch.Tensor:
            return self.engine.outputs(*build(start, stop))

        def consume(_start: int, _stop: int, chunk: torch.Tensor) -> None:
            values.append(chunk)

        with device_lock(self.device):
            evaluate_in_chunks(n_rows, rows, self.device, evaluate, consume)
        return torch.cat(values)
