"""IG as a page runs it: preview -> exact run -> step ladder -> convergence estimate.

The ladder re-runs IG at fewer steps (e.g. 1/8, 1/4 and 1/2 of them): each point of the
convergence curve is a real run, and the nearest coarser one gives the exact result its
per-feature convergence estimate (:func:`attribution_core.methods.ig.with_convergence`).
Only exact runs go through the result cache; the preview never does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from attribution_core.cache import ResultCache
from attribution_core.engine import ForwardFn
from attribution_core.fast_paths import Preview, PreviewSummary, preview_ig, summarise_preview
from attribution_core.methods.ig import integrated_gradients, with_convergence
from attribution_core.results import Attribution
from attribution_core.validation import check_inputs, check_positive_int

IgStage = Literal["preview", "exact", "ladder"]


@dataclass(frozen=True, eq=False)
class IgRequest:
    """Everything that decides an IG run's numbers (and so its cache keys).

    The fields are :func:`~attribution_core.methods.ig.integrated_gradients`' arguments of the
    same names, plus ``ladder`` (the smaller step counts of the convergence curve, ascending,
    each below ``n_steps``; repeats are run again, as a page asks) and ``device`` (where the
    preview decides on bf16; the inputs' device when None).
    """

    forward: ForwardFn
    inputs: torch.Tensor
    baselines: torch.Tensor | None = None
    target: int | list[int] | torch.Tensor | None = None
    n_steps: int | Literal["auto"] = 64
    method: str = "gausslegendre"
    tolerance: float = 0.01
    ladder: tuple[int, ...] = ()
    forward_kwargs: Mapping[str, Any] | None = None
    model_key: str | None = None
    device: torch.device | None = None

    @property
    def span(self) -> int:
        """Steps of every run together (the exact one counts 0 when adaptive)."""
        own = self.n_steps if isinstance(self.n_steps, int) else 0
        return own + sum(self.ladder)


@dataclass(frozen=True)
class IgProgress:
    """One progress event of :func:`run_ig`.

    ``stage`` is "preview" (before the preview), "exact" or "ladder"; ``done`` and ``total``
    are the engine's rows of the current run (both None when the run starts); ``steps`` is
    the current run's step count, ``offset`` the steps of the runs before it and ``span``
    the steps of all runs (:attr:`IgRequest.span`).
    """

    stage: IgStage
    steps: int | Literal["auto"]
    offset: int
    span: int
    done: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class LadderRun:
    """One run of the step ladder: its steps, gradient evaluations and relative completeness
    error per explicand."""

    steps: int
    n_evaluations: int
    relative_delta: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class IgOutcome:
    """What :func:`run_ig` gives: the exact result (with its convergence estimate when a
    ladder ran), the ladder's runs in order, and the preview's summary (None without one)."""

    result: Attribution
    ladder: tuple[LadderRun, ...]
    preview: PreviewSummary | None


IgProgressFn = Callable[[IgProgress], None]
IgPreviewHook = Callable[[Preview], None]


def run_ig(request: IgRequest, *, cache: ResultCache | None = None,
           progress: IgProgressFn | None = None,
           on_preview: IgPreviewHook | None = None) -> IgOutcome:
    """Integrated Gradients as a page shows it: preview, exact run, ladder, convergence.

    Parameters
    ----------
    request : IgRequest
        What to compute: model, explicands, baselines, target, steps, quadrature, tolerance
        (for ``n_steps="auto"``), the ladder's step counts, forward kwargs and model key.
    cache : ResultCache, optional
        Where the exact run and each ladder run are looked up and stored by content. The
        preview is never cached. Default: None (every run computes).
    progress : callable, optional
        Receives an :class:`IgProgress` at the start of the preview and of every run, and
        as the engine finishes rows of a run. Default: None.
    on_preview : callable, optional
        With it, a labelled preview (:func:`~attribution_core.fast_paths.preview_ig`) is
        computed first and handed over before the exact run starts, to be shown meanwhile.
        Default: None (no preview).

    Returns
    -------
    IgOutcome
        ``result``: the exact :class:`~attribution_core.results.Attribution` on the inputs'
        device, carrying ``convergence`` against the last (nearest) ladder run when the ladder
        is not empty; ``ladder``: one :class:`LadderRun` per ladder step, in order;
        ``preview``: the preview's :class:`~attribution_core.fast_paths.PreviewSummary`
        (its deviation from the exact map), None without ``on_preview``.
    """
    check_inputs(request.inputs)
    _check_ladder(request.n_steps, request.ladder)
    emit = progress if progress is not None else _ignore
    preview = _preview(request, emit, on_preview)
    result = _exact(request, request.n_steps, "exact", 0, cache, emit)
    runs: list[LadderRun] = []
    nearest: Attribution | None = None
    offset = request.n_steps if isinstance(request.n_steps, int) else 0
    for steps in request.ladder:
        nearest = _exact(request, steps, "ladder", offset, cache, emit)
        runs.append(LadderRun(steps, int(nearest.n_evaluations[0]),
                              tuple(float(v) for v in nearest.relative_delta.tolist())))
        offset += steps
    if nearest is not None:  # the ladder ascends: its last run is the nearest coarser one
        result = with_convergence(result, nearest)
    return IgOutcome(result, tuple(runs), summarise_preview(preview, result))


def _check_ladder(n_steps: int | str, ladder: tuple[int, ...]) -> None:
    if not ladder:
        return
    if not isinstance(n_steps, int):
        raise ValueError("A step ladder needs a fixed step count (auto records its own "
                         "refinement history).")
    for steps in ladder:
        check_positive_int("ladder step", steps)
    if list(ladder) != sorted(ladder) or ladder[-1] >= n_steps:
        raise ValueError(f"The ladder's step counts must ascend and stay below n_steps = "
                         f"{n_steps}, got {ladder}.")


def _preview(request: IgRequest, emit: IgProgressFn, on_preview: IgPreviewHook | None
             ) -> Preview | None:
    """The labelled preview, handed to ``on_preview`` at once (never cached)."""
    if on_preview is None:
        return None
    emit(IgProgress("preview", request.n_steps, 0, request.span))
    device = request.device if request.device is not None else request.inputs.device
    preview = preview_ig(request.forward, request.inputs, request.baselines, request.target,
                         request.n_steps, device, forward_kwargs=request.forward_kwargs)
    on_preview(preview)
    return preview


def _exact(request: IgRequest, steps: int | Literal["auto"], stage: IgStage, offset: int,
           cache: ResultCache | None, emit: IgProgressFn) -> Attribution:
    """One cached IG run at ``steps``, its rows reported as ``stage`` events."""
    span = request.span
    emit(IgProgress(stage, steps, offset, span))

    def rows(done: int, total: int) -> None:
        emit(IgProgress(stage, steps, offset, span, done, total))

    return integrated_gradients(
        request.forward, request.inputs, baselines=request.baselines, target=request.target,
        n_steps=steps, method=request.method, progress=rows,
        forward_kwargs=request.forward_kwargs, tolerance=request.tolerance, cache=cache,
        model_key=request.model_key)


def _ignore(_event: IgProgress) -> None:
    """No progress callback: events go nowhere."""
