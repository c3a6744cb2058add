"""IG2 as a page runs it: preview -> exact run with half-steps companions -> trust summary.

The companion paths (``halving``) give the map's convergence estimate its steps' part; the
references' spread gives the rest. Only the exact run goes through the result cache; the
preview (a quarter of the references, bf16 where supported) never does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from attribution_core.cache import ResultCache
from attribution_core.engine import ForwardFn
from attribution_core.fast_paths import PreviewSummary
from attribution_core.methods.ig2 import (
    DEFAULT_N_STEPS,
    Ig2TrustSummary,
    Representation,
    ig2,
    trust_summary,
)
from attribution_core.methods.ig2_preview import Ig2Preview, preview_ig2, summarise_ig2_preview
from attribution_core.results import IG2Attribution
from attribution_core.validation import check_inputs

Ig2Stage = Literal["preview", "paths"]


@dataclass(frozen=True, eq=False)
class Ig2Request:
    """Everything that decides an IG2 run's numbers (and so its cache key).

    Attributes
    ----------
    forward, inputs, references, representation, target, n_steps, step_size, clip,
    forward_kwargs, reference_kwargs, model_key, halving
        :func:`~attribution_core.methods.ig2.ig2`'s arguments of the same names; ``halving``
        is on by default (the pages' and Evaluate's convergence estimate).
    device : torch.device, optional
        Where the preview decides on bf16; the inputs' device when None.
    """

    forward: ForwardFn
    inputs: torch.Tensor
    references: torch.Tensor
    representation: Representation = None
    target: int | list[int] | torch.Tensor | None = None
    n_steps: int = DEFAULT_N_STEPS
    step_size: float | Literal["auto"] = "auto"
    clip: tuple[Any, Any] | None = None
    forward_kwargs: Mapping[str, Any] | None = None
    reference_kwargs: Mapping[str, Any] | None = None
    model_key: str | None = None
    halving: bool = True
    device: torch.device | None = None

    @property
    def n_references(self) -> int:
        per_explicand = self.references.dim() == self.inputs.dim() + 1
        return int(self.references.shape[1] if per_explicand else self.references.shape[0])


@dataclass(frozen=True)
class Ig2Progress:
    """One progress event of :func:`run_ig2`.

    Attributes
    ----------
    stage : {"preview", "paths"}
        Before the preview, or the exact run's paths.
    n_references : int
        References walked towards (per explicand) by the exact run.
    done, total : int or None
        The engine's path rows finished and planned ("paths" only; None before the preview).
    """

    stage: Ig2Stage
    n_references: int
    done: int | None = None
    total: int | None = None


@dataclass(frozen=True, eq=False)
class Ig2Outcome:
    """What :func:`run_ig2` gives.

    Attributes
    ----------
    result : IG2Attribution
        The exact result on the inputs' device (as cached).
    preview : PreviewSummary or None
        The preview's label, time and deviation from the exact map; None without a preview.
    trust : Ig2TrustSummary
        The first explicand's convergence estimate (its parts) and path reach.
    """

    result: IG2Attribution
    preview: PreviewSummary | None
    trust: Ig2TrustSummary


Ig2ProgressFn = Callable[[Ig2Progress], None]
Ig2PreviewHook = Callable[[Ig2Preview], None]


def run_ig2(request: Ig2Request, *, cache: ResultCache | None = None,
            progress: Ig2ProgressFn | None = None,
            on_preview: Ig2PreviewHook | None = None) -> Ig2Outcome:
    """IG2 as a page shows it: preview, exact run with its convergence, trust summary.

    Parameters
    ----------
    request : Ig2Request
        What to compute: model, explicands, references, representation, target, path steps,
        step size (eta), clipping box, forward kwargs (explicands' and references'), model
        key, and whether companion paths at half the steps run (``halving``).
    cache : ResultCache, optional
        Where the exact run is looked up and stored by content; the preview is never cached.
        Default: None.
    progress : callable, optional
        Receives an :class:`Ig2Progress` before the preview and as the exact run finishes
        path rows. Default: None.
    on_preview : callable, optional
        With it, a labelled preview
        (:func:`~attribution_core.methods.ig2_preview.preview_ig2`, the same steps and eta on
        a quarter of the references) is computed first and handed over before the exact run.
        Default: None (no preview).

    Returns
    -------
    Ig2Outcome
        The exact :class:`~attribution_core.results.IG2Attribution`, the preview's summary
        and the trust summary of the first explicand.
    """
    check_inputs(request.inputs)
    emit = progress if progress is not None else _ignore
    preview = _preview(request, emit, on_preview)
    n_references = request.n_references

    def rows(done: int, total: int) -> None:
        emit(Ig2Progress("paths", n_references, done, total))

    result = ig2(
        request.forward, request.inputs, request.references,
        representation=request.representation, target=request.target,
        n_steps=request.n_steps, step_size=request.step_size, progress=rows,
        forward_kwargs=request.forward_kwargs, reference_kwargs=request.reference_kwargs,
        clip=request.clip, cache=cache, model_key=request.model_key, halving=request.halving)
    return Ig2Outcome(result, summarise_ig2_preview(preview, result), trust_summary(result))


def _preview(request: Ig2Request, emit: Ig2ProgressFn, on_preview: Ig2PreviewHook | None
             ) -> Ig2Preview | None:
    """The labelled preview, handed to ``on_preview`` at once (never cached)."""
    if on_preview is None:
        return None
    emit(Ig2Progress("preview", request.n_references))
    device = request.device if request.device is not None else request.inputs.device
    preview = preview_ig2(
        request.forward, request.inputs, request.references, device,
        representation=request.representation, target=request.target,
        n_steps=request.n_steps, step_size=request.step_size,
        forward_kwargs=request.forward_kwargs, reference_kwargs=request.reference_kwargs,
        clip=request.clip)
    on_preview(preview)
    return preview


def _ignore(_event: Ig2Progress) -> None:
    """No progress callback: events go nowhere."""
