"""The one input contract: every argument check of the library's public functions.

Methods, metrics, references, quadrature and the engine validate here first and then hand over
to a private worker, so that reading a public function tells what it accepts; messages say
what was given. A check raises ``ValueError`` for a wrong value and ``TypeError`` for a wrong
kind of thing, with a one-line message naming the argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- tensors --------------------------------------------------------------------------------------

def check_inputs(inputs: Any) -> None:
    """A floating point tensor with a leading batch dimension holding at least one explicand."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1:
        raise TypeError("inputs must be a tensor with a leading batch dimension.")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be floating point, got {inputs.dtype}.")
    if inputs.shape[0] == 0:
        raise ValueError("inputs holds no explicand (batch dimension is 0).")


def check_attributions(inputs: torch.Tensor, attributions: Any) -> None:
    """Attributions shaped exactly like the inputs they explain."""
    if not isinstance(attributions, torch.Tensor) or \
            tuple(attributions.shape) != tuple(inputs.shape):
        shape = tuple(attributions.shape) if isinstance(attributions, torch.Tensor) \
            else type(attributions).__name__
        raise ValueError(f"attributions {shape} must have the inputs' shape "
                         f"{tuple(inputs.shape)}.")


def check_attribution_batch(attributions: Any) -> None:
    """A tensor [B, ...] with at least one feature dimension."""
    if not isinstance(attributions, torch.Tensor) or attributions.dim() < 2:
        raise ValueError("attributions must be a tensor [B, ...].")


def check_baselines(inputs: torch.Tensor, baselines: Any) -> None:
    """None, a number, or a tensor that broadcasts to the inputs' shape."""
    if baselines is None or isinstance(baselines, int | float):
        return
    if not isinstance(baselines, torch.Tensor):
        raise TypeError(f"baselines must be a tensor, a number or None, got {type(baselines)}.")
    try:
        ok = torch.broadcast_shapes(tuple(baselines.shape), tuple(inputs.shape)) \
            == tuple(inputs.shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"baselines of shape {tuple(baselines.shape)} do not broadcast to "
                         f"inputs of shape {tuple(inputs.shape)}.")


def check_reference_rows(inputs: torch.Tensor, baselines: Any) -> None:
    """A tensor [R, ...] of R >= 1 reference rows shaped like one input row each."""
    if not isinstance(baselines, torch.Tensor) or baselines.dim() != inputs.dim() \
            or tuple(baselines.shape[1:]) != tuple(inputs.shape[1:]) or baselines.shape[0] < 1:
        raise ValueError(
            "baselines must be a tensor [R, ...] of reference rows shaped like the inputs' rows "
            f"{tuple(inputs.shape[1:])}; got "
            f"{tuple(baselines.shape) if isinstance(baselines, torch.Tensor) else baselines!r}.")


def check_references(inputs: torch.Tensor, references: Any) -> None:
    """IG2's references: [B, ...] shared by every explicand or [N, B, ...], with B >= 1."""
    if not isinstance(references, torch.Tensor) or references.dim() not in (
            inputs.dim(), inputs.dim() + 1):
        raise ValueError("references must be a tensor [B, ...] or [N, B, ...] matching inputs.")
    if references.shape[references.dim() - inputs.dim()] == 0:
        raise ValueError("references holds no reference (B is 0).")
    n = inputs.shape[0]
    per_explicand = references.dim() == inputs.dim() + 1
    rows_shape = references.shape[2:] if per_explicand else references.shape[1:]
    if (per_explicand and references.shape[0] != n) or rows_shape != inputs.shape[1:]:
        raise ValueError(f"references of shape {tuple(references.shape)} do not match inputs of "
                         f"shape {tuple(inputs.shape)}: use [B, ...] or [N, B, ...].")


def check_same_shape(what: str, first: torch.Tensor, second: torch.Tensor) -> None:
    """Two tensors of one shape (``what`` says which, e.g. two results' attributions)."""
    if tuple(first.shape) != tuple(second.shape):
        raise ValueError(what)


# -- numbers --------------------------------------------------------------------------------------

def check_positive_int(name: str, value: Any) -> None:
    """An int >= 1 (not a bool)."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def check_int_at_least(name: str, value: Any, minimum: int) -> None:
    """An int >= ``minimum`` (not a bool)."""
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")


def check_int_in_range(name: str, value: Any, low: int, high: int) -> None:
    """An int in ``low..high`` (both included)."""
    if not _is_int(value) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in {low}..{high}, got {value!r}.")


def check_int(name: str, value: Any) -> None:
    """Any int (a seed), not a bool."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}.")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}.")


def check_batch_size(batch_size: Any) -> None:
    """None (planned from memory) or a positive int."""
    if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}.")


def check_positive_number(name: str, value: Any) -> None:
    """A number > 0 (NaN fails)."""
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}.")


def check_non_negative_number(name: str, value: Any) -> None:
    """An int or float >= 0 (a standard deviation)."""
    if not _is_number(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}.")


def check_open_unit_interval(name: str, value: Any) -> None:
    """A number strictly between 0 and 1 (a tolerance)."""
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value}.")


def check_step_count(n_steps: Any, *, auto: bool) -> None:
    """IG's ``n_steps``: an int, or "auto" where ``auto`` allows it."""
    if auto and n_steps == "auto":
        return
    if not _is_int(n_steps):
        raise TypeError(f"n_steps must be an int or 'auto', got {n_steps!r}." if auto
                        else f"n_steps must be an int, got {type(n_steps).__name__}.")


def check_step_size(step_size: Any) -> None:
    """IG2's ``step_size``: "auto", a positive number or a tensor (checked per explicand)."""
    if not isinstance(step_size, torch.Tensor) and step_size != "auto" and \
            not (_is_number(step_size) and step_size > 0):
        raise ValueError(f"step_size must be positive, got {step_size!r}.")


def check_step_size_tensor(sizes: torch.Tensor, n_explicands: int, shape: tuple[int, ...]
                           ) -> None:
    """One positive eta per explicand (``shape``: the tensor as given)."""
    if sizes.numel() != n_explicands or not bool((sizes > 0).all()):
        raise ValueError(f"a step_size tensor needs {n_explicands} positive entries (one "
                         f"per explicand), got {shape}.")


# -- choices and counts ---------------------------------------------------------------------------

def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """``value`` is one of ``choices``; ``name`` is what the message calls it."""
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {', '.join(choices)}.")


def check_count(what: str, given: int, expected: int, per: str) -> None:
    """``given`` entries of ``what`` where ``expected`` (one per ``per``) are needed."""
    if given != expected:
        raise ValueError(f"{given} {what} for {expected} {per}.")


def check_requirement(holds: bool, message: str) -> None:
    """A rule between arguments (one needs or excludes another): ``message`` says which."""
    if not holds:
        raise ValueError(message)


def check_target_count(target: torch.Tensor, n: int) -> None:
    """A target tensor with one entry, or one per input."""
    if target.numel() not in (1, n):
        raise ValueError(f"target has {target.numel()} entries for {n} inputs.")


def check_target_range(target_rows: torch.Tensor, n_outputs: int) -> None:
    """Raise a ValueError naming the target and the class count when 0 <= target < C fails.

    Checked before ``gather``: on CUDA an out-of-range index is a device-side assert that breaks
    the CUDA context of every session in the process, not only this request.
    """
    if target_rows.numel() == 0:
        return
    low, high = int(target_rows.min()), int(target_rows.max())
    if low < 0 or high >= n_outputs:
        bad = low if low < 0 else high
        raise ValueError(f"target {bad} is out of range: the model has {n_outputs} outputs "
                         f"(valid targets are 0 to {n_outputs - 1}).")


def check_subset_sizes(ns: Sequence[int], n_units: int) -> tuple[int, ...]:
    """Sensitivity-n's subset sizes, each in 1..n_units; returns them as ints."""
    sizes = tuple(int(size) for size in ns)
    if not sizes or any(size < 1 or size > n_units for size in sizes):
        raise ValueError(f"ns must hold subset sizes in 1..{n_units}, got {ns!r}.")
    return sizes


def check_groups(groups: Any) -> None:
    """An integer tensor of unit ids (None is checked by the caller: one unit per feature)."""
    if not isinstance(groups, torch.Tensor) or groups.is_floating_point() or groups.is_complex():
        raise TypeError("groups must be an integer tensor of unit ids.")


def check_unit_ids(flat: torch.Tensor) -> int:
    """Unit ids [rows, F] that are >= 0 and use every id 0..K-1 in each row; returns K."""
    if int(flat.min()) < 0:
        raise ValueError("groups must hold non-negative unit ids.")
    n_units = int(flat.max()) + 1
    for row in flat:
        if int((torch.bincount(row, minlength=n_units) == 0).sum()) > 0:
            raise ValueError(f"groups must use every unit id 0..{n_units - 1}.")
    return n_units


def check_feature_indices(indices: torch.Tensor, n_features: int) -> None:
    if indices.numel() == 0 or int(indices.min()) < 0 or int(indices.max()) >= n_features:
        raise ValueError(f"expected feature indices must lie in 0..{n_features - 1}.")
