"""IG2 on the image page: reference selection, the run (the library's flow,
``attribution_core.explain_flow.run_ig2``) and a display summary on the CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attribution_core import explain_flow
from attribution_core.cache import ResultCache
from attribution_core.engine import device_lock
from attribution_core.explain_flow import Ig2Progress, Ig2Request
from attribution_core.fast_paths import PreviewSummary
from attribution_core.methods.ig2 import Ig2TrustSummary
from attribution_core.methods.ig2_preview import Ig2Preview
from attribution_core.models.inputs import output_probabilities
from attribution_core.models.spec import LoadedModel
from dashboard.widgets import ig_runs

RELEVANT_RANKS = (1, 2, 3)  # the 2nd to 4th most likely classes (IG2.md)


@dataclass(frozen=True)
class Ig2Summary:
    """What the page shows of an IG2 result (tensors on the CPU)."""

    attributions: torch.Tensor
    counterfactuals: torch.Tensor
    counterfactual_classes: tuple[int, ...]
    counterfactual_probabilities: tuple[float, ...]
    distance_trace: np.ndarray
    delta: float
    relative_delta: float
    f_input: float
    f_counterfactual_mean: float
    f_reference_mean: float
    reference_indices: tuple[int, ...]
    reference_labels: tuple[int, ...]
    n_evaluations: int
    from_cache: bool
    trust: Ig2TrustSummary | None = None
    # The references' 95 % band per pixel (channels combined), / max |A|: where it is unsure.
    band: np.ndarray | None = None
    preview: PreviewSummary | None = None


def select_references(labels: torch.Tensor, input_probabilities: torch.Tensor | None, target: int,
                      n_references: int, choice: str, seed: int) -> torch.Tensor:
    """Indices into the reference pool: seeded samples of other classes, or of the relevant ones.

    "relevant" draws from the 2nd to 4th most likely classes of the input (less noisy maps);
    it falls back to all other classes when the pool has none of those.
    """
    labels = labels.detach().cpu().long()
    candidates = torch.nonzero(labels != target).flatten()
    if choice == "relevant" and input_probabilities is not None:
        ranked = [int(c) for c in input_probabilities.flatten().argsort(descending=True).tolist()
                  if int(c) != target]
        relevant = [ranked[r - 1] for r in RELEVANT_RANKS if r - 1 < len(ranked)]
        chosen = torch.nonzero(torch.isin(labels, torch.tensor(relevant))).flatten()
        if chosen.numel() > 0:
            candidates = chosen
    if candidates.numel() == 0:
        raise ValueError("The reference pool holds no sample of another class than the target.")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(candidates.numel(), generator=generator)
    return candidates[order[: min(n_references, candidates.numel())]].sort().values


def run_ig2(loaded: LoadedModel, inputs: torch.Tensor, target: int, *, n_references: int,
            choice: str, n_steps: int, step_size: float, representation: str | None, seed: int,
            cache: ResultCache | None, input_probabilities: torch.Tensor | None,
            progress: Callable[[str, float], None],
            clip: tuple[Any, Any] | None = None,
            on_preview: Callable[[Ig2Preview], None] | None = None) -> Ig2Summary:
    """IG2 of one image against seeded references from the model's pool, with its convergence
    estimate (a companion path at half the steps). With ``on_preview``, a labelled preview on a
    quarter of the references is computed and handed over first (never cached)."""
    if loaded.spec.reference_pool is None:
        raise ValueError(f"{loaded.spec.title} has no reference pool, which IG2 needs.")
    pool = loaded.spec.reference_pool()
    indices = select_references(pool.labels, input_probabilities, target, n_references, choice,
                                seed)
    references = pool.inputs.index_select(0, indices).to(inputs.device, inputs.dtype)
    layer = representation or loaded.spec.representation_module
    box = clip if clip is not None else loaded.spec.input_box
    outcome = explain_flow.run_ig2(
        Ig2Request(loaded.forward, inputs, references,
                   representation=_probe_for(loaded, layer), target=target, n_steps=n_steps,
                   step_size=step_size, clip=tuple(box) if box is not None else None,
                   model_key=loaded.weights_hash, device=loaded.device),
        cache=cache, progress=ig_runs.reporter(progress, _ig2_words), on_preview=on_preview)
    summary = dataclasses.replace(summarise(outcome.result, indices, pool.labels),
                                  preview=outcome.preview, trust=outcome.trust)
    with device_lock(loaded.device), torch.no_grad():
        logits = loaded.forward(summary.counterfactuals.to(loaded.device, inputs.dtype))
    confidence = output_probabilities(loaded, logits.detach().double().cpu()).max(dim=-1).values
    return dataclasses.replace(summary, counterfactual_probabilities=tuple(confidence.tolist()))


def _ig2_words(event: Ig2Progress) -> tuple[str, float]:
    if event.stage == "preview":
        return "IG2: a quick preview first", 0.0
    done, total = event.done or 0, event.total or 0
    return (f"IG2: walking {event.n_references} gradient paths towards the references "
            f"({done}/{total})", min(1.0, done / max(total, 1)))


def _probe_for(loaded: LoadedModel, layer: str | None) -> Any:
    """IG2's representation argument: the *input* of ``layer`` when forward is the module."""
    if layer is None:
        return None
    owner = loaded.forward if isinstance(loaded.forward, torch.nn.Module) else getattr(
        loaded.forward, "__self__", None)
    if isinstance(owner, torch.nn.Module):
        return f"{layer}:input"
    # A wrapped forward cannot be hooked by name: the module itself gives its output.
    return dict(loaded.module.named_modules())[layer]


def summarise(result: Any, indices: torch.Tensor, labels: torch.Tensor) -> Ig2Summary:
    """The first explicand's figures from an IG2Attribution, on the CPU."""
    trace = result.distance_trace.detach().cpu().double().numpy()[0]
    band = None
    if getattr(result, "reference_standard_error", None) is not None:
        se = result.reference_standard_error.detach().cpu().double()[0]
        scale = float(result.attributions.detach().cpu().double()[0].abs().max()) or 1.0
        pixels = se.pow(2).sum(0).sqrt() if se.dim() == 3 else se  # independent channels
        band = (1.96 * pixels / scale).numpy()
    return Ig2Summary(
        attributions=result.attributions.detach().cpu()[:1],
        counterfactuals=result.counterfactuals.detach().cpu()[0],
        counterfactual_classes=tuple(int(c) for c in result.counterfactual_classes[0].tolist()),
        counterfactual_probabilities=(),
        distance_trace=trace,
        delta=float(result.delta[0]), relative_delta=float(result.relative_delta[0]),
        f_input=float(result.f_inputs[0]), f_counterfactual_mean=float(
            result.f_counterfactuals[0]),
        f_reference_mean=float(result.f_references_mean[0]),
        reference_indices=tuple(int(i) for i in indices.tolist()),
        reference_labels=tuple(int(labels[i]) for i in indices.tolist()),
        n_evaluations=int(result.n_evaluations[0]),
        from_cache=bool(result.from_cache),
        band=band,
    )
