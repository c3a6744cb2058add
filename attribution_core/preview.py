"""The preview: a fast approximate IG map that is shown first and never taken for the answer.

bf16 autocast where the hardware has bf16 units (AVX-512 BF16 or AMX on the CPU, tensor cores
on CUDA), on a quarter of the step count; elsewhere the coarse step count alone in fp32. A
preview is never cached, downloaded or reported; ``preview_deviation`` says how far it was from
the exact map once that is known.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from attribution_core.devices import resolve_device
from attribution_core.forward import ForwardFn
from attribution_core.methods.ig import integrated_gradients
from attribution_core.results import Attribution

PREVIEW_STEP_DIVISOR = 4
PREVIEW_MIN_STEPS = 4
PREVIEW_VARIABLE = "IG_PREVIEW_BF16"  # "0" forces the coarse fp32 fallback, "1" forces bf16


@functools.cache
def _cpu_has_bf16_units() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def bf16_preview_supported(device: torch.device | str) -> bool:
    """Whether bf16 autocast is fast here (the env variable overrides the detection).

    Parameters
    ----------
    device : torch.device or str
        Where the preview would run.

    Returns
    -------
    bool
        ``IG_PREVIEW_BF16`` "1" / "0" if set so; else, on CUDA, whether the GPU supports bf16;
        on the CPU, whether it has AVX-512 BF16 or AMX units and oneDNN is available; False
        on any other device.
    """
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
    """``forward`` under bf16 autocast; outputs come back in float32.

    Parameters
    ----------
    forward : callable
        The model, ``forward(points, **kwargs)``.
    device : torch.device
        Its device; autocast is entered for this device's type.

    Returns
    -------
    callable
        ``wrapped(points, **kwargs)``: the output tensor (or ``.logits``) cast to float32; a
        non-tensor output comes back as the model returned it.
    """
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
    """The preview's step count: a quarter of the exact one, at least 4.

    Parameters
    ----------
    n_steps : int or str
        The exact run's step count; "auto" (any non-int) counts as 64.

    Returns
    -------
    int
        ``max(4, min(n_steps, n_steps // 4))``.
    """
    exact = 64 if not isinstance(n_steps, int) else n_steps
    return max(PREVIEW_MIN_STEPS, min(exact, exact // PREVIEW_STEP_DIVISOR))


def preview_ig(forward: ForwardFn, inputs: torch.Tensor, baselines: torch.Tensor | None,
               target: int | list[int] | torch.Tensor | None, n_steps: int | str,
               device: torch.device, *, forward_kwargs: Mapping[str, Any] | None = None
               ) -> Preview:
    """A preview of IG at ``n_steps`` (see the module docstring); never cached.

    Parameters
    ----------
    forward : callable
        The model, as for ``integrated_gradients``.
    inputs : tensor
        Explicands [N, ...].
    baselines : tensor or None
        The path's start, as for ``integrated_gradients`` (None: zeros).
    target : int, list of int, tensor or None
        The explained output, as for ``integrated_gradients``.
    n_steps : int or str
        The exact run's step count (or "auto"); the preview takes :func:`preview_steps` of it.
    device : torch.device
        Decides whether bf16 autocast is used (:func:`bf16_preview_supported`).
    forward_kwargs : mapping or None, optional
        Extra keyword arguments of ``forward``.

    Returns
    -------
    Preview
        The approximate ``result``, its ``kind`` ("bf16" or "coarse"), the steps used and the
        seconds it took.
    """
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
    top-k |attributions| that the preview also puts in its top k.

    Parameters
    ----------
    preview : tensor
        The preview's map (one explicand's), any shape; compared flattened, in float64.
    exact : tensor
        The exact map, with as many elements as ``preview``.
    k : int, optional
        The top-k size (default 10), capped at the number of elements.

    Returns
    -------
    PreviewDeviation
        ``relative_l2``, ``rank_correlation``, ``top_k_overlap`` (a share in [0, 1]) and the
        ``k`` used.
    """
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
    """What a page keeps of a preview: its label, kind, steps, time and deviation.

    Parameters
    ----------
    preview : Preview or None
        The preview shown, if any.
    exact : Attribution or None
        The exact result, once known.

    Returns
    -------
    PreviewSummary or None
        None without a preview; else the summary, whose ``deviation`` compares the first
        explicand's maps (None until ``exact`` is known).
    """
    if preview is None:
        return None
    deviation = None if exact is None else preview_deviation(preview.result.attributions[0],
                                                             exact.attributions[0])
    return PreviewSummary(preview.label, preview.kind, preview.n_steps, preview.seconds,
                          deviation)
