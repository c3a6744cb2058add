"""The trial of an uploaded ONNX graph: what runs in the sandbox before the server converts it.

The sandbox's ``"onnx"`` job (:func:`.onnx_jobs.onnx_trial`) checks the graph statically
(:mod:`.onnx_checks`, shape inference included), converts it, runs one row, checks that a batch
of rows gives each row's own output (a graph that sums or normalises over the batch would
explain every row with its neighbours' help, and crashed the page when its output had one row
for many), and measures one row's forward + backward pass: above
:data:`~attribution_core.limits.MAX_UPLOAD_ROW_SECONDS` the model is refused, below it the
dashboard's price of a run (:func:`attribution_core.cost.row_cost`) is measured here too, so the
server never times an unknown model under its device lock. :func:`tried` is the server's side.

The helpers that turn what the graph declares into its input (:func:`image_input`,
:func:`tabular_width`) and run it (:func:`output_width`) are shared with the server, so both
sides say the same thing about the same file.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attribution_core import limits
from attribution_core.models.spec import ModelLoadError

DEFAULT_IMAGE_SIDE = 224  # a graph with dynamic height and width is tried at this size
BATCH_ROWS = 3


def image_input(shape: tuple[int, ...] | list[int], what: str) -> tuple[int, tuple[int, int]]:
    """Channels and (height, width) of an image graph's declared ``[B, C, H, W]`` input."""
    if len(shape) != 4:
        raise ModelLoadError(f"{what} takes input of shape {list(shape) or '?'}; an image "
                             "classifier takes [batch, channels, height, width].")
    channels = int(shape[1]) or 3
    return channels, (int(shape[2]) or DEFAULT_IMAGE_SIDE, int(shape[3]) or DEFAULT_IMAGE_SIDE)


def tabular_width(facts: Mapping[str, Any], named: int | None) -> int:
    """The number of features: the graph's own, else the names given (a reference CSV)."""
    if facts.get("feature_names"):
        return len(facts["feature_names"])
    if facts.get("width"):
        return int(facts["width"])
    if named:
        return int(named)
    raise ModelLoadError("The model does not name its features and has no fixed width: "
                         "upload a reference CSV whose header names them.")


def output_width(module: nn.Module, example: torch.Tensor, what: str) -> int:
    """Outputs per row of ``module`` on ``example`` ([1, ...]); one row out per row in."""
    with torch.no_grad():
        try:
            out = module(example)
        except Exception as error:
            if out_of_memory(error):
                raise
            raise ModelLoadError(f"{what} could not run on {_described(example)} "
                                 f"({type(error).__name__}: {error}).") from error
    if out.shape[0] != example.shape[0]:
        raise ModelLoadError(f"{what} gives {out.shape[0]} output rows for "
                             f"{example.shape[0]} input row(s); each input row needs its own "
                             "output row.")
    return int(out.shape[-1])


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation that failed (the sandbox's memory limit at work):
    such errors go up as they are, so the check reports the memory budget, not the text."""
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and ("allocate memory" in str(error)
                                             or "out of memory" in str(error)))


def _described(example: torch.Tensor) -> str:
    if example.dim() == 4:
        return f"a {example.shape[1]}x{example.shape[2]}x{example.shape[3]} image"
    return f"a row of {example.shape[-1]} features"


def check_rows_independent(module: nn.Module, example: torch.Tensor, what: str) -> None:
    """Refuse a graph whose output for a row depends on the other rows of its batch."""
    generator = torch.Generator().manual_seed(0)
    shape = (BATCH_ROWS, *example.shape[1:])
    rows = torch.rand(shape, generator=generator) if example.dim() == 4 else \
        torch.randn(shape, generator=generator)
    with torch.no_grad():
        try:
            together = module(rows)
        except Exception as error:
            if out_of_memory(error):
                raise
            raise ModelLoadError(
                f"{what} runs on one row but not on a batch of {BATCH_ROWS} "
                f"({type(error).__name__}); export it with a dynamic batch dimension (e.g. "
                "torch.onnx.export(..., dynamic_axes={'input': {0: 'batch'}})).") from error
        alone = torch.cat([module(rows[i:i + 1]) for i in range(BATCH_ROWS)])
    scale = float(alone.abs().nan_to_num(0.0, 0.0, 0.0).max()) if alone.numel() else 0.0
    if together.shape != alone.shape or not torch.allclose(
            together, alone, rtol=1e-3, atol=1e-5 * max(1.0, scale), equal_nan=True):
        raise ModelLoadError(
            f"{what} mixes the rows of a batch: a row's output changes when other rows are "
            "run beside it (a sum, mean or normalisation over the batch axis). Each row has "
            "to be explained on its own; export the model without that step.")


def _gradient_seconds(module: nn.Module, example: torch.Tensor) -> float:
    points = example.clone().requires_grad_(True)
    started = time.perf_counter()
    out = module(points)
    torch.autograd.grad(out[:, 0].sum() if out.dim() == 2 else out.sum(), points,
                        allow_unused=True)
    return time.perf_counter() - started


def module_trial(module: nn.Module, example: torch.Tensor, what: str) -> dict[str, Any]:
    """Run a converted model as the explanations will (one row, a batch, one row's forward
    and backward pass) and price it; JSON-able facts (also the categorical pipelines' rest)."""
    from attribution_core.cost import row_cost

    outputs = output_width(module, example, what)
    if outputs > limits.MAX_MODEL_CLASSES:
        raise ModelLoadError(f"{what} has {outputs:,} outputs; at most "
                             f"{limits.MAX_MODEL_CLASSES:,} are accepted.")
    check_rows_independent(module, example, what)
    _gradient_seconds(module, example)  # warm-up: lazy initialisation is not the cost
    seconds = _gradient_seconds(module, example)
    if seconds > limits.MAX_UPLOAD_ROW_SECONDS:
        raise ModelLoadError(f"{what} takes {seconds:.1f} s for one input's forward and "
                             f"backward pass here; at most {limits.MAX_UPLOAD_ROW_SECONDS:g} s "
                             "are accepted (an explanation needs hundreds of them).")
    rows = 16 if seconds < 0.005 else 4  # the price's timing stays within the budget
    measured = row_cost(module, example, rows=rows)
    return {"outputs": outputs, "input": list(example.shape[1:]),
            "row_cost": dataclasses.asdict(measured), "row_seconds": seconds}


def tried(data: bytes, modality: str, what: str, named: int | None = None) -> dict[str, Any]:
    """The server's side: :func:`trial` in the sandbox; a refusal is a ModelLoadError."""
    from attribution_core.models.sandbox import run_sandboxed

    options = {"modality": modality, "what": what, "named": named,
               "threads": torch.get_num_threads()}
    report = run_sandboxed("onnx", data, options, what=what)
    return {**report.result, "check_seconds": report.seconds,
            "check_peak_bytes": report.peak_extra_bytes}
