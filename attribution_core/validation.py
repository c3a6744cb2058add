"""The one input contract every method shares (explicands, positive counts, batch sizes).

Methods validate here first and then hand over to a private worker, so that reading a public
function tells what it accepts; messages say what was given.
"""

from __future__ import annotations

from typing import Any

import torch


def check_inputs(inputs: Any) -> None:
    """A floating point tensor with a leading batch dimension holding at least one explicand."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1:
        raise TypeError("inputs must be a tensor with a leading batch dimension.")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be floating point, got {inputs.dtype}.")
    if inputs.shape[0] == 0:
        raise ValueError("inputs holds no explicand (batch dimension is 0).")


def check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def check_batch_size(batch_size: Any) -> None:
    """None (planned from memory) or a positive int."""
    if batch_size is not None and (not isinstance(batch_size, int)
                                   or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}.")
