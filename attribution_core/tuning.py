"""Exact fast paths: cheaper gradients that do not change the answer.

Gradients are taken with respect to the inputs only (the engine freezes parameters while it
runs: ``devices.frozen_parameters``). Convolution models can be switched to channels_last once,
where a measurement says it is faster; torch.compile is offered per loaded model; the intra-op
thread count can be chosen by measurement at start-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from attribution_core.devices import frozen_parameters

CHANNELS_LAST_MIN_GAIN = 0.05


def prefer_channels_last(module: nn.Module, sample: torch.Tensor, target: int = 0,
                         repeats: int = 3) -> bool:
    """Switch ``module`` to channels_last when a measured forward + backward of ``sample`` is
    at least CHANNELS_LAST_MIN_GAIN faster that way; call once, before sharing the module.

    Parameters
    ----------
    module : nn.Module
        The model; switched in place when channels_last wins.
    sample : tensor
        A batch of images [N, C, H, W] to time on; anything not 4-D, or a model without
        ``nn.Conv2d``, is left alone.
    target : int, optional
        The output column whose sum is backpropagated when timing (default 0).
    repeats : int, optional
        Timed runs per layout; their median is compared (default 3).

    Returns
    -------
    bool
        True when ``module`` is now channels_last; False when it stays contiguous.
    """
    if sample.dim() != 4 or not any(isinstance(m, nn.Conv2d) for m in module.modules()):
        return False

    def measure(points: torch.Tensor) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            leaf = points.detach().requires_grad_(True)
            with frozen_parameters(module), torch.enable_grad():
                out = module(leaf)
                out[:, target].sum().backward()
            times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2]

    plain = measure(sample)
    module.to(memory_format=torch.channels_last)
    faster = measure(sample.contiguous(memory_format=torch.channels_last))
    if faster <= plain * (1 - CHANNELS_LAST_MIN_GAIN):
        return True
    module.to(memory_format=torch.contiguous_format)
    return False


def compile_for_attribution(module: nn.Module, sample: torch.Tensor, target: int = 0,
                            forward_kwargs: Mapping[str, Any] | None = None
                            ) -> tuple[Callable[..., Any] | None, float, str]:
    """``torch.compile`` the module and warm it up on ``sample`` (forward + input gradient).

    Returns (compiled callable or None, compile seconds, why it was not used). Compiled code is
    reused across requests by keeping the returned callable with the loaded model; a failure at
    any point falls back to eager.

    Parameters
    ----------
    module : nn.Module
        The model to compile (``dynamic=False``).
    sample : tensor
        A batch to warm up on, [N, ...].
    target : int, optional
        The output column whose sum is differentiated in the warm-up (default 0).
    forward_kwargs : mapping or None, optional
        Extra keyword arguments of the model; tensors are expanded to the sample's first
        dimension.

    Returns
    -------
    tuple of (callable or None, float, str)
        The compiled callable (None on failure), the seconds spent, and the error that made it
        fall back ("" on success).
    """
    started = time.perf_counter()
    try:
        compiled = torch.compile(module, dynamic=False)
        leaf = sample.detach().requires_grad_(True)
        with frozen_parameters(module), torch.enable_grad():
            out = compiled(leaf, **{k: v.expand(leaf.shape[0], *v.shape[1:])
                                    if isinstance(v, torch.Tensor) else v
                                    for k, v in (forward_kwargs or {}).items()})
            torch.autograd.grad(out[:, target].sum(), leaf)
    except Exception as error:  # no compiler, unsupported op: eager stays the answer
        return None, time.perf_counter() - started, f"{type(error).__name__}: {error}"[:300]
    return compiled, time.perf_counter() - started, ""


def best_thread_count(run: Callable[[], Any], candidates: Sequence[int], repeats: int = 3
                      ) -> tuple[int, dict[int, float]]:
    """Time ``run`` at each intra-op thread count (median of ``repeats``) and keep the fastest.

    torch's thread count is process-wide: call this once at start-up, not per request. Returns
    the chosen count (now in effect) and the seconds measured for each candidate.

    Parameters
    ----------
    run : callable
        The workload, ``run()``; it runs once untimed and ``repeats`` times timed per
        candidate.
    candidates : sequence of int
        Thread counts to try.
    repeats : int, optional
        Timed runs per candidate (default 3).

    Returns
    -------
    tuple of (int, dict of int to float)
        The fastest count (set with ``torch.set_num_threads``) and the median seconds of each.
    """
    measured: dict[int, float] = {}
    for threads in candidates:
        torch.set_num_threads(threads)
        run()  # warm-up at this thread count
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        measured[threads] = sorted(times)[len(times) // 2]
    chosen = min(measured, key=measured.__getitem__)
    torch.set_num_threads(chosen)
    return chosen, measured
