"""The exact fast path and the preview: cheaper gradients that do not change the answer, and a
fast approximate map that is shown first and never taken for the answer.

Exact: gradients are taken with respect to the inputs only (the engine freezes parameters while
it runs: ``engine.frozen_parameters``). Convolution models can be switched to channels_last
once, where a measurement says it is faster; torch.compile is offered per loaded model.

Preview: bf16 autocast where the hardware has bf16 units (AVX-512 BF16 or AMX on the CPU,
tensor cores on CUDA), on a quarter of the step count; elsewhere the coarse step count alone in
fp32. A preview is never cached, downloaded or reported; ``preview_deviation`` says how far it
was from the exact map once that is known.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from attribution_core.engine import ForwardFn, frozen_parameters, resolve_device
from attribution_core.methods.ig import integrated_gradients
from attribution_core.results import Attribution

PREVIEW_STEP_DIVISOR = 4
PREVIEW_MIN_STEPS = 4
PREVIEW_VARIABLE = "IG_PREVIEW_BF16"  # "0" forces the coarse fp32 fallback, "1" forces bf16
CHANNELS_LAST_MIN_GAIN = 0.05

@functools.cache
def _cpu_has_bf16_units() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def bf16_preview_supported(device: torch.device | str) -> bool:
    """Whether bf16 autocast is fast here (the env variable overrides the detection)."""
    forced = os.environ.get(PREVIEW_VARIABLE)
    if forced in ("0", "1"):
        return forced == "1"
    device = resolve_device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return _cpu_has_bf16_units() and torch.backends.mkldnn.is_available()
    return False


def autocast_forward(forward: ForwardFn, device: torch.device) -> ForwardFn:
    """``forward`` under bf16 autocast; outputs come back in float32."""
    def wrapped(points: torch.Tensor, **kwargs: Any) -> Any:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            output = forward(points, **kwargs)
        logits = getattr(output, "logits", output)
        return logits.float() if isinstance(logits, torch.Tensor) else output
    return wrapped


@dataclass(frozen=True)
class Preview:
    """A fast, approximate IG map; ``kind`` is "bf16" or "coarse"."""

    result: Attribution
    kind: Literal["bf16", "coarse"]
    n_steps: int
    seconds: float

    @property
    def label(self) -> str:
        how = "bf16 autocast" if self.kind == "bf16" else "fp32"
        return f"Preview: {how}, {self.n_steps} steps (the exact result replaces it)"


def preview_steps(n_steps: int | str) -> int:
    exact = 64 if not isinstance(n_steps, int) else n_steps
    return max(PREVIEW_MIN_STEPS, min(exact, exact // PREVIEW_STEP_DIVISOR))


def preview_ig(forward: ForwardFn, inputs: torch.Tensor, baselines: torch.Tensor | None,
               target: int | list[int] | torch.Tensor | None, n_steps: int | str,
               device: torch.device, *, forward_kwargs: Mapping[str, Any] | None = None
               ) -> Preview:
    """A preview of IG at ``n_steps`` (see the module docstring); never cached."""
    started = time.perf_counter()
    steps = preview_steps(n_steps)
    use_bf16 = bf16_preview_supported(device)
    model = autocast_forward(forward, device) if use_bf16 else forward
    result = integrated_gradients(model, inputs, baselines=baselines, target=target,
                                  n_steps=steps, forward_kwargs=forward_kwargs, cache=None)
    return Preview(result, "bf16" if use_bf16 else "coarse", steps,
                   time.perf_counter() - started)


@dataclass(frozen=True)
class PreviewDeviation:
    """How far the preview's map was from the exact one (first explicand)."""

    relative_l2: float
    rank_correlation: float
    top_k_overlap: float
    k: int


def preview_deviation(preview: torch.Tensor, exact: torch.Tensor, k: int = 10
                      ) -> PreviewDeviation:
    """Relative L2 ||p - e|| / ||e||, Spearman of the values, and the share of the exact
    top-k |attributions| that the preview also puts in its top k."""
    from attribution_core.metrics_checks import rank_correlation

    p = preview.detach().to("cpu", torch.float64).reshape(-1)
    e = exact.detach().to("cpu", torch.float64).reshape(-1)
    relative = float((p - e).norm() / e.norm().clamp_min(1e-300))
    correlation = float(rank_correlation(p.view(1, -1), e.view(1, -1))[0])
    k = min(k, e.numel())
    top_exact = set(e.abs().topk(k).indices.tolist())
    top_preview = set(p.abs().topk(k).indices.tolist())
    return PreviewDeviation(relative, correlation, len(top_exact & top_preview) / k, k)


@dataclass(frozen=True)
class PreviewSummary:
    """What a page keeps of a preview once the exact result is known (never the map itself:
    only the exact map is cached, downloaded and reported)."""

    label: str
    kind: str
    n_steps: int
    seconds: float
    deviation: PreviewDeviation | None


def summarise_preview(preview: Preview | None, exact: Attribution | None
                      ) -> PreviewSummary | None:
    if preview is None:
        return None
    deviation = None if exact is None else preview_deviation(preview.result.attributions[0],
                                                             exact.attributions[0])
    return PreviewSummary(preview.label, preview.kind, preview.n_steps, preview.seconds,
                          deviation)


def prefer_channels_last(module: nn.Module, sample: torch.Tensor, target: int = 0,
                         repeats: int = 3) -> bool:
    """Switch ``module`` to channels_last when a measured forward + backward of ``sample`` is
    at least CHANNELS_LAST_MIN_GAIN faster that way; call once, before sharing the module."""
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
