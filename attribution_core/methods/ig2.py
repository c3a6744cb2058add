"""IG2: Integrated Gradients on an Iterative Gradient Path (Zhuo & Ge, TPAMI 2024; docs/IG2.md).

Each reference r gets a path g_0 = x, g_{j+1} = clip(g_j - eta * d_j / ||d_j||) descending the
representation distance D_r; its end is the counterfactual GradCF_r. Attributions integrate the
explicand gradient df/dz along every path and average over references.

Cost: all (explicand, reference) rows advance together, one path point per model call (chunked
by memory). One forward pass at a point serves both gradients: the representation is caught by
a hook on the very pass that yields f, and the retained graph is walked twice (df/dz, dD/dz).
Where a row needs only one of them (the last point; the "middle" rule's midpoints, which ride in
the same call as the next path point) one backward pass of the masked sum gives it, since rows
are independent. The path is never stored: attributions and traces accumulate as it advances.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import nn

from attribution_core.cache import ResultCache, lookup
from attribution_core.devices import device_lock, frozen_parameters, model_device
from attribution_core.engine import ProgressFn
from attribution_core.forward import ForwardFn, module_behind
from attribution_core.methods._ig2_model import RepresentationProbe, resolve_representation
from attribution_core.methods._ig2_path import Bound, PathRunner, WalkSettings
from attribution_core.methods._ig2_trust import (  # noqa: F401 (the public trust API)
    SHORT_PATH_REACH,
    Ig2TrustSummary,
    trust_summary,
)
from attribution_core.results import IG2Attribution, to_device
from attribution_core.validation import (
    check_choice,
    check_inputs,
    check_positive_int,
    check_positive_number,
    check_references,
    check_step_size,
    check_step_size_tensor,
)

Rule = Literal["trapezoid", "middle", "left"]
Norm = Literal["l2", "l1"]
RULES: tuple[str, ...] = ("trapezoid", "middle", "left")
NORMS: tuple[str, ...] = ("l2", "l1")
DEFAULT_N_STEPS = 64
AUTO_PATH_LENGTH = 1.0  # "auto" eta: path length = mean straight-line distance to the references
Representation = str | nn.Module | Callable[..., torch.Tensor] | None


def ig2(
    forward: ForwardFn,
    inputs: torch.Tensor,
    references: torch.Tensor,
    representation: Representation = None,
    target: int | list[int] | torch.Tensor | None = None,
    n_steps: int = DEFAULT_N_STEPS,
    step_size: float | Literal["auto"] | torch.Tensor = "auto",
    norm: Norm = "l2",
    rule: Rule = "trapezoid",
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    *,
    forward_kwargs: Mapping[str, Any] | None = None,
    reference_kwargs: Mapping[str, Any] | None = None,
    clip: tuple[Bound, Bound] | None = None,
    eps: float = 1e-12,
    early_stop: bool = False,
    halving: bool = False,
    autocast: torch.dtype | None = None,
    cache: ResultCache | None = None,
    model_key: str | None = None,
) -> IG2Attribution:
    """IG2 attributions of ``forward``'s target output for explicands ``inputs`` [N, ...].

    Each reference is walked towards the explicand along the gradient of the distance in a
    representation layer (GradPath); the gradients on the way are integrated as in IG.

    Parameters
    ----------
    forward : callable
        The model: an ``nn.Module``, a bound method of one, or any callable
        ``forward(points, **forward_kwargs)`` returning a tensor [rows, classes] or [rows] (or a
        tuple whose first item is, or an object with ``.logits``). Its parameters are frozen
        while it runs; the device is that of its first parameter (else the inputs').
    inputs : tensor
        Explicands [N, ...], floating point, N >= 1; the result comes back on their device.
    references : tensor
        [B, ...] shared by every explicand, or [N, B, ...] one set per explicand (B >= 1).
    representation : str, module, callable or None, optional
        Where the distance is measured: a module name from ``named_modules()`` (its output;
        ``"name:input"`` for its input), a module, or ``representation(z, **kwargs)``; None
        takes the input of the last registered ``nn.Linear``.
    target : int, list of int, tensor or None, optional
        The explained output: one class for all explicands or one per explicand, checked to be
        in 0..C-1. None for a model with one output per row.
    n_steps : int, optional
        Path steps T per reference.
    step_size : float, "auto" or tensor, optional
        eta, in input units in the chosen norm: "auto" is mean_r ||x - x_r|| / n_steps (a path
        as long as the straight line to the references); a tensor [N] gives one per explicand.
    norm : str, optional
        "l2" (default) or another of ``NORMS``, for the step and the distance.
    rule : str, optional
        "trapezoid" (default), "middle", or "left" (the authors' code).
    batch_size : int or None, optional
        Rows per model call. None (default) plans it from one row's measured activation memory
        (one extra forward pass, memoised per model and row shape); an int is honoured exactly.
        The result does not depend on it.
    progress : callable or None, optional
        ``progress(done, total)`` after every chunk of rows (model calls), from the calling
        thread.
    forward_kwargs : mapping or None, optional
        Extra keyword arguments of ``forward``. The per-row rule: a tensor whose first dimension
        is the number of explicands N belongs to the explicands (an attention mask) and follows
        each explicand through every row made from it; anything else is passed unchanged to
        every call.
    reference_kwargs : mapping or None, optional
        Forward kwargs of the references (e.g. their attention masks); by default the
        explicand's are used.
    clip : (lo, hi) or None, optional
        The valid input box, scalars or tensors broadcastable to one input.
    eps : float, optional
        Guard against division by a zero gradient norm (positive).
    early_stop : bool, optional
        Freeze a reference's path once its distance stops falling.
    halving : bool, optional
        Measure the steps' part of ``convergence`` with a companion path per reference in
        T // 2 steps (about 50 % more rows) instead of every other point of the same path.
    autocast : torch.dtype or None, optional
        Run the model under autocast (a preview); never cached.
    cache, model_key : optional
        As for :func:`integrated_gradients`.

    Returns
    -------
    IG2Attribution
        A frozen result: ``attributions`` [N, ...]; ``counterfactuals`` [N, B, ...] (GradCF of
        each reference) with their ``counterfactual_classes`` and ``counterfactual_logits``
        [N, B]; ``distance_trace`` and ``f_path`` [N, B, T + 1] along each path;
        ``f_inputs`` and ``f_counterfactuals`` [N]; ``delta`` and ``relative_delta`` [N]
        (completeness against the counterfactuals); ``f_references`` and
        ``reference_classes`` [N, B]; ``steps_taken`` [N, B]; ``n_evaluations`` [N];
        ``step_sizes`` [N] (eta per explicand); ``convergence`` [N] with its references' and
        steps' parts; ``rule``, ``norm``, ``n_steps``, ``representation``, ``params`` and
        ``from_cache``.
    """
    _validate(inputs, references, n_steps, step_size, norm, rule, eps)
    n_explicands = inputs.shape[0]
    refs = references if references.dim() == inputs.dim() + 1 else \
        references.unsqueeze(0).expand(n_explicands, *references.shape)
    probe = resolve_representation(forward, representation)
    step_sizes = _step_sizes(step_size, inputs, refs, n_steps, norm)
    if autocast is not None:
        cache = None  # a preview is never cached
    key, hit = _lookup(cache, forward, model_key, inputs, refs, probe, target, n_steps,
                       step_sizes, norm, rule, forward_kwargs, reference_kwargs, clip, eps,
                       early_stop, halving)
    if hit is not None:
        return hit
    device = model_device(forward, inputs.device)
    settings = WalkSettings(n_steps, step_sizes, norm, rule, eps, early_stop, progress,
                            autocast, halving)
    runner = PathRunner(forward, probe, inputs.detach().to(device), refs.detach().to(device),
                        target, forward_kwargs, reference_kwargs, clip, device, settings)
    with device_lock(device), frozen_parameters(module_behind(forward)), \
            probe.attached() as capture:
        runner.capture = capture
        runner.plan_rows(batch_size)
        runner.reference_pass()
        runner.walk()
    result = runner.result(probe.name, references.dim() == inputs.dim() + 1)
    result = to_device(result, inputs.device)
    if cache is not None and key is not None:
        cache.put(key, result)
    return result


def _step_sizes(step_size: float | str | torch.Tensor, inputs: torch.Tensor,
                refs: torch.Tensor, n_steps: int, norm: str) -> torch.Tensor:
    """eta per explicand [N] (float64, CPU)."""
    n_explicands = inputs.shape[0]
    if isinstance(step_size, torch.Tensor):
        sizes = step_size.detach().to("cpu", torch.float64).reshape(-1)
        check_step_size_tensor(sizes, n_explicands, tuple(step_size.shape))
        return sizes.clone()
    if step_size == "auto":
        return auto_step_size(inputs, refs, n_steps, norm)
    return torch.full((n_explicands,), float(step_size), dtype=torch.float64)


def auto_step_size(inputs: torch.Tensor, refs: torch.Tensor, n_steps: int, norm: str
                   ) -> torch.Tensor:
    """Per explicand [N] (float64, CPU): AUTO_PATH_LENGTH x the mean distance (l2 or l1) from
    that explicand to its own references / T.

    Averaging over the explicand's references only keeps its attributions independent of which
    other explicands share the batch.
    """
    gaps = (refs - inputs.unsqueeze(1)).flatten(2).detach().cpu().double()
    sizes = gaps.norm(dim=2) if norm == "l2" else gaps.abs().sum(2)
    means = sizes.mean(1)
    # Every reference equals its explicand: any eta gives a zero path.
    return torch.where(means == 0, torch.full_like(means, 1e-3),
                       AUTO_PATH_LENGTH * means / n_steps)


def _validate(inputs: torch.Tensor, references: torch.Tensor, n_steps: int,
              step_size: float | str | torch.Tensor,
              norm: str, rule: str, eps: float) -> None:
    check_inputs(inputs)
    check_references(inputs, references)
    check_positive_int("n_steps", n_steps)
    check_step_size(step_size)
    check_choice("norm", norm, NORMS)
    check_choice("rule", rule, RULES)
    check_positive_number("eps", eps)


def _lookup(cache: ResultCache | None, forward: ForwardFn, model_key: str | None,
            inputs: torch.Tensor, refs: torch.Tensor, probe: RepresentationProbe, target: Any,
            n_steps: int, step_sizes: torch.Tensor, norm: str, rule: str,
            forward_kwargs: Mapping[str, Any] | None, reference_kwargs: Mapping[str, Any] | None,
            clip: tuple[Bound, Bound] | None, eps: float, early_stop: bool, halving: bool
            ) -> tuple[str | None, IG2Attribution | None]:
    return lookup(
        cache, "ig2", forward, model_key, tensors={"inputs": inputs, "references": refs},
        params={"target": target, "n_steps": n_steps, "step_size": step_sizes, "norm": norm,
                "rule": rule, "eps": eps, "early_stop": early_stop,
                "representation": probe.name, "kwargs": dict(forward_kwargs or {}),
                "reference_kwargs": None if reference_kwargs is None else dict(reference_kwargs),
                "clip": clip, "halving": halving},
        device=inputs.device)
