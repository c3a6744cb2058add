"""Instant, then exact, for IG2: a labelled preview on a quarter of the references (bf16
autocast where the hardware has bf16 units), shown while the exact result is computed and never
cached, downloaded or reported.

The path is sequential in its steps, so the preview saves on what runs in parallel instead:
the rows (references) and the arithmetic (bf16). Its steps and eta are the exact run's, so its
paths have the same length; only the average over references and the precision differ.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from attribution_core.engine import ProgressFn
from attribution_core.forward import ForwardFn
from attribution_core.methods.ig2 import Norm, Representation, Rule, auto_step_size, ig2
from attribution_core.preview import PreviewSummary, bf16_preview_supported, preview_deviation
from attribution_core.results import IG2Attribution

PREVIEW_REFERENCE_DIVISOR = 4


@dataclass(frozen=True)
class Ig2Preview:
    """A fast, approximate IG2 map; ``kind`` is "bf16" or "fewer references" (fp32)."""

    result: IG2Attribution
    kind: Literal["bf16", "fewer references"]
    n_references: int
    n_steps: int
    seconds: float

    @property
    def label(self) -> str:
        how = "bf16 autocast, " if self.kind == "bf16" else "fp32, "
        return (f"IG2 preview: {how}{self.n_references} reference"
                f"{'s' if self.n_references != 1 else ''}, {self.n_steps} steps "
                "(the exact result replaces it)")


def preview_references(n_references: int) -> int:
    """A quarter of the references, at least one."""
    return max(1, math.ceil(n_references / PREVIEW_REFERENCE_DIVISOR))


def preview_ig2(forward: ForwardFn, inputs: torch.Tensor, references: torch.Tensor,
                device: torch.device, *, representation: Representation = None,
                target: int | list[int] | torch.Tensor | None = None, n_steps: int = 64,
                step_size: float | Literal["auto"] = "auto", norm: Norm = "l2",
                rule: Rule = "trapezoid", forward_kwargs: Mapping[str, Any] | None = None,
                reference_kwargs: Mapping[str, Any] | None = None,
                clip: tuple[Any, Any] | None = None, progress: ProgressFn | None = None
                ) -> Ig2Preview:
    """IG2 on the first quarter of ``references`` (the exact run's own, in its order), bf16
    autocast where :func:`bf16_preview_supported`; never cached.

    "auto" eta is computed from the exact run's references, so both walk paths of one length
    (for one explicand, or several with equal eta; else from the kept references).
    """
    started = time.perf_counter()
    per_explicand = references.dim() == inputs.dim() + 1
    total = references.shape[1] if per_explicand else references.shape[0]
    keep = preview_references(total)
    chosen = references[:, :keep] if per_explicand else references[:keep]
    if step_size == "auto":
        full = references if per_explicand else references.unsqueeze(0).expand(
            inputs.shape[0], *references.shape)
        sizes = auto_step_size(inputs, full, n_steps, norm)
        step_size = float(sizes[0]) if bool((sizes == sizes[0]).all()) else "auto"
    kept_kwargs = None if reference_kwargs is None else {
        name: _first_references(value, keep, per_explicand, inputs.shape[0], total)
        for name, value in reference_kwargs.items()}
    use_bf16 = bf16_preview_supported(device)
    result = ig2(forward, inputs, chosen, representation=representation, target=target,
                 n_steps=n_steps, step_size=step_size, norm=norm, rule=rule,
                 forward_kwargs=forward_kwargs, reference_kwargs=kept_kwargs, clip=clip,
                 progress=progress, autocast=torch.bfloat16 if use_bf16 else None, cache=None)
    return Ig2Preview(result, "bf16" if use_bf16 else "fewer references", keep, n_steps,
                      time.perf_counter() - started)


def _first_references(value: Any, keep: int, per_explicand: bool, n_explicands: int,
                      total: int) -> Any:
    """The references' kwargs cut like the references: [N, B, ...] or [B, ...] tensors."""
    if not isinstance(value, torch.Tensor):
        return value
    if value.dim() > 1 and value.shape[:2] == (n_explicands, total):
        return value[:, :keep]
    if value.dim() > 0 and value.shape[0] == total and not per_explicand:
        return value[:keep]
    return value


def summarise_ig2_preview(preview: Ig2Preview | None, exact: IG2Attribution | None
                          ) -> PreviewSummary | None:
    """What a page keeps once the exact map is known (never the preview's map itself)."""
    if preview is None:
        return None
    deviation = None if exact is None else preview_deviation(preview.result.attributions[0],
                                                             exact.attributions[0])
    return PreviewSummary(preview.label, preview.kind, preview.n_steps, preview.seconds,
                          deviation)


PreviewCallback = Callable[[Ig2Preview], None]
