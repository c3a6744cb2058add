"""Shared benchmark plumbing: interleaved timing, the forward+backward limit, environment."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from attribution_core.model_outputs import select_target


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Any], device: torch.device) -> float:
    synchronise(device)
    start = time.perf_counter()
    function()
    synchronise(device)
    return time.perf_counter() - start


def interleaved_medians(contenders: Mapping[str, Callable[[], Any]], repeats: int,
                        device: torch.device,
                        warm_up: Mapping[str, Callable[[], Any]] | None = None
                        ) -> dict[str, float]:
    """Median seconds of each contender, run round-robin so drifts in machine load hit all.

    Each contender runs once first (allocator, kernels, lazy init), or ``warm_up``'s shorter
    versions of them when given.
    """
    for function in (warm_up or contenders).values():
        function()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, function in contenders.items():
            samples[name].append(timed(function, device))
    return {name: statistics.median(values) for name, values in samples.items()}


def path_points(inputs: torch.Tensor, baselines: torch.Tensor, alphas: torch.Tensor
                ) -> torch.Tensor:
    """The straight-path points of one explicand, precomputed so the limit times the model only."""
    shape = (-1,) + (1,) * (inputs.dim() - 1)
    return (baselines + alphas.to(inputs.dtype).view(shape) * (inputs - baselines)).detach()


def forward_backward_rows(model: nn.Module, points: torch.Tensor, batch: int, target: int,
                          forward_kwargs: Mapping[str, torch.Tensor] | None = None,
                          backward_passes: int = 1) -> None:
    """The work floor of a gradient method: forward + backward(s) of ``points``, no extras.

    Per-explicand ``forward_kwargs`` (leading dim 1) are expanded to each chunk's rows.
    """
    done, n_rows = 0, points.shape[0]
    while done < n_rows:
        rows = min(batch, n_rows - done)
        chunk = points[done:done + rows].clone().requires_grad_(True)
        kwargs = {k: v.expand(rows, *v.shape[1:]) for k, v in (forward_kwargs or {}).items()}
        selected = select_target(model(chunk, **kwargs), torch.full((rows,), target,
                                                                    device=points.device))
        for index in range(backward_passes):
            torch.autograd.grad(selected.sum(), chunk,
                                retain_graph=index < backward_passes - 1)
        done += rows


def best_batch(model: nn.Module, points: torch.Tensor, target: int, candidates: list[int],
               device: torch.device, forward_kwargs: Mapping[str, torch.Tensor] | None = None,
               backward_passes: int = 1) -> tuple[int, float]:
    """The candidate batch size with the fastest limit run over ``points``, and its seconds."""
    n_rows = points.shape[0]
    timings = {}
    for batch in sorted({min(c, n_rows) for c in candidates}):
        forward_backward_rows(model, points[:batch], batch, target, forward_kwargs,
                              backward_passes)
        timings[batch] = min(
            timed(lambda b=batch: forward_backward_rows(
                model, points, b, target, forward_kwargs, backward_passes), device)
            for _ in range(2))
    best = min(timings, key=timings.__getitem__)
    return best, timings[best]


def environment(device: torch.device) -> dict[str, Any]:
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def dump_report(report: Mapping[str, Any], out: str | None) -> str:
    """The report as indented JSON, also written to ``out`` when given (for partial runs too)."""
    text = json.dumps(report, indent=2)
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return text
