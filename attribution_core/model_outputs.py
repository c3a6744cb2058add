"""Model outputs and targets: what a model returned, the explained scalar of every row, and
which forward kwargs belong to which rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from attribution_core.validation import check_target_count, check_target_range


def as_output_tensor(output: Any) -> torch.Tensor:
    """Accept a tensor, a tuple whose first item is the output, or an object with ``.logits``.

    Parameters
    ----------
    output : object
        What the model returned: a tensor, an object with a tensor ``.logits``, or a tuple or
        list whose first item is a tensor. Anything else raises TypeError.

    Returns
    -------
    tensor
        The output tensor itself (not a copy).
    """
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"The model returned {type(output).__name__}; expected a tensor [rows, classes] or [rows]."
    )


def select_target(output: Any, target_rows: torch.Tensor | None) -> torch.Tensor:
    """The explained scalar of every row: output[row, target[row]], or the output if scalar.

    Parameters
    ----------
    output : object
        What the model returned (see :func:`as_output_tensor`).
    target_rows : tensor or None
        Long [rows]: the class explained in each row, each in 0..C-1 (output [rows, C]);
        None for a model with one output per row ([rows] or [rows, 1]).

    Returns
    -------
    tensor
        The explained output of every row, [rows].
    """
    out = as_output_tensor(output)
    if target_rows is None:
        if out.dim() == 2 and out.shape[1] == 1:
            return out[:, 0]
        if out.dim() == 1:
            return out
        raise ValueError(
            f"The model has {out.shape[1] if out.dim() > 1 else '?'} outputs per row: "
            "pass target= to choose the output to explain."
        )
    if out.dim() != 2:
        raise ValueError(
            f"target= needs an output of shape [rows, classes], got {tuple(out.shape)}."
        )
    check_target_range(target_rows, out.shape[1])
    return out.gather(1, target_rows.view(-1, 1)).squeeze(1)


def normalise_target(target: int | torch.Tensor | list[int] | None, n: int, device: torch.device
                     ) -> torch.Tensor | None:
    """Turn an int / list / tensor target into a [n] long tensor on ``device`` (None stays None).

    Parameters
    ----------
    target : int, tensor, list of int or None
        One class for every explicand or one per explicand.
    n : int
        The number of explicands.
    device : torch.device
        Where the result lives.

    Returns
    -------
    tensor or None
        Long [n] (a single class repeated n times), or None when ``target`` is None.
    """
    if target is None:
        return None
    tensor = torch.as_tensor(target, dtype=torch.long, device=device).reshape(-1)
    check_target_count(tensor, n)
    return tensor.expand(n).clone() if tensor.numel() == 1 else tensor


def is_per_row(value: Any, rows: int) -> bool:
    """The one rule for forward kwargs: a tensor whose leading dimension is ``rows`` belongs to
    those rows (an attention mask per explicand); anything else is shared by every row.

    Parameters
    ----------
    value : object
        A forward keyword argument's value.
    rows : int
        The number of rows (explicands).

    Returns
    -------
    bool
        True for a tensor of at least one dimension whose first dimension is ``rows``.
    """
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == rows


def split_forward_kwargs(forward_kwargs: Mapping[str, Any] | None, n: int
                         ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Per-explicand tensors (:func:`is_per_row`) and the shared rest.

    Parameters
    ----------
    forward_kwargs : mapping or None
        The extra keyword arguments of the model; None is empty.
    n : int
        The number of explicands.

    Returns
    -------
    tuple of (dict, dict)
        The per-explicand tensors by name, and every other argument by name.
    """
    per_row: dict[str, torch.Tensor] = {}
    shared: dict[str, Any] = {}
    for name, value in (forward_kwargs or {}).items():
        if is_per_row(value, n):
            per_row[name] = value
        else:
            shared[name] = value
    return per_row, shared
