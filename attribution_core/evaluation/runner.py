"""Run every chosen method and metric over a set of cases, batch by batch, stoppable.

Cases of one shape are stacked into batches of ``settings.cases_per_batch`` explicands, so each
method and each perturbation curve costs a few large model calls per batch instead of many
small ones; progress is reported and a stop request honoured between batches, and every
finished case is handed to ``on_case`` at once (a stopped run loses nothing it finished).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import torch

from attribution_core.cache import ResultCache
from attribution_core.devices import describe_device, device_lock
from attribution_core.evaluation.cases import expected_area_share
from attribution_core.evaluation.ig2_method import run_ig2, run_ig2_best_path
from attribution_core.evaluation.types import (
    KNOWN_METHODS,
    METHOD_GRAD_X_INPUT,
    METHOD_GRADIENT_SHAP,
    METHOD_IG,
    METHOD_IG2,
    METHOD_IG2_BEST_PATH,
    METHOD_SALIENCY,
    METHOD_SMOOTHGRAD,
    REFERENCE_METHODS,
    UNSIGNED_METHODS,
    CaseOutcome,
    EvalCase,
    EvaluationInputError,
    EvaluationResult,
    EvaluationSettings,
    MethodOutcome,
)
from attribution_core.explain_flow import IgRequest, run_ig
from attribution_core.methods.gradient_shap import gradient_shap
from attribution_core.methods.gradient_x_input import gradient_x_input
from attribution_core.methods.ig2 import SHORT_PATH_REACH
from attribution_core.methods.ig2_tuning import TunedIg2
from attribution_core.methods.saliency import saliency
from attribution_core.methods.smoothgrad import smoothgrad
from attribution_core.metrics import (
    agreement,
    deletion_curve,
    insertion_curve,
    random_deletion_curve,
    random_insertion_curve,
    rank_correlation,
)
from attribution_core.modalities import image as image_io
from attribution_core.modalities import text as text_io
from attribution_core.models.spec import LoadedModel
from attribution_core.results import IG2Attribution

Progress = Callable[[int, int, str], None]


def evaluate(loaded: LoadedModel, cases: Sequence[EvalCase],
             settings: EvaluationSettings | None = None, *,
             progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
             on_case: Callable[[CaseOutcome], None] | None = None,
             done: Sequence[CaseOutcome] = (), cache: ResultCache | None = None
             ) -> EvaluationResult:
    """Evaluate ``settings.methods`` on ``cases``; outcomes in ``done`` are kept, not redone.

    ``should_stop`` is asked before each batch; when it says yes the result holds the cases
    finished so far and ``cancelled`` is True.
    """
    settings = settings if settings is not None else EvaluationSettings()
    _validate(settings, cases)
    started = time.perf_counter()
    finished: dict[str, CaseOutcome] = {c.case_id: c for c in done}
    todo = [c for c in cases if c.case_id not in finished]
    total = len(cases)
    cancelled = False
    for batch in batches(todo, settings.cases_per_batch):
        if should_stop is not None and should_stop():
            cancelled = True
            break

        def report(message: str, batch: Sequence[EvalCase] = batch) -> None:
            if progress is not None:
                progress(len(finished), total,
                         f"cases {len(finished) + 1}-{len(finished) + len(batch)}: {message}")

        for outcome in _evaluate_batch(loaded, batch, settings, cache, report):
            finished[outcome.case_id] = outcome
            if on_case is not None:
                on_case(outcome)
        if progress is not None:
            progress(len(finished), total, f"{len(finished)} of {total} cases done")
    ordered = tuple(finished[c.case_id] for c in cases if c.case_id in finished)
    return EvaluationResult(
        model_name=loaded.spec.name, model_title=loaded.spec.title,
        modality=loaded.spec.modality, weights_hash=loaded.weights_hash,
        class_names=tuple(str(n) for n in loaded.spec.class_names), settings=settings,
        cases=ordered, n_requested=total, cancelled=cancelled,
        seconds=time.perf_counter() - started + sum(_case_seconds(c) for c in done),
        device=describe_device(loaded.device), expected_area_share=expected_area_share(cases))


def _case_seconds(case: CaseOutcome) -> float:
    return float(sum(o.seconds for o in case.outcomes))


def _validate(settings: EvaluationSettings, cases: Sequence[EvalCase]) -> None:
    unknown = [m for m in settings.methods if m not in KNOWN_METHODS]
    if unknown or not settings.methods:
        raise EvaluationInputError(f"Unknown method(s) {', '.join(unknown) or '(none chosen)'}; "
                                   f"choose from {', '.join(KNOWN_METHODS)}.")
    for name in ("ig_steps", "ig2_steps", "ig2_references", "smoothgrad_samples",
                 "gradient_shap_samples", "random_orders", "cases_per_batch"):
        value = getattr(settings, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise EvaluationInputError(f"{name} must be a positive whole number, got {value!r}.")
    if not isinstance(settings.curve_points, int) or settings.curve_points < 2:
        raise EvaluationInputError("curve_points must be at least 2.")
    with_removal = [c.removal is not None for c in cases]
    if (settings.removal is not None and not all(with_removal)) or \
            (settings.removal is None and any(with_removal)):
        raise EvaluationInputError(
            "settings.removal must name the removal baseline the cases were built with "
            "(cases.*(removal=...)), and be None when they were built without one.")
    needing = [m for m in settings.methods if m in REFERENCE_METHODS]
    without = sum(1 for c in cases if c.references.shape[0] == 0)
    if needing and without:
        raise EvaluationInputError(
            f"{' and '.join(needing)} need{'s' if len(needing) == 1 else ''} reference samples "
            "of another class, and "
            f"{without} of {len(cases)} cases have none (the model has no reference pool, or "
            "it holds no sample of another class): choose other methods, or give the model "
            "reference data.")
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise EvaluationInputError("Case names must be unique; rename the duplicates.")


def _signature(case: EvalCase) -> tuple[Any, ...]:
    kwargs = tuple((k, tuple(v.shape)) for k, v in sorted(case.forward_kwargs.items()))
    ref_kwargs = tuple((k, tuple(v.shape)) for k, v in sorted(case.reference_kwargs.items()))
    return (tuple(case.inputs.shape), tuple(case.references.shape), kwargs, ref_kwargs)


def batches(cases: Sequence[EvalCase], size: int) -> list[list[EvalCase]]:
    """Cases of one shape (and unit map) stacked, at most ``size`` per batch.

    Sentences of equal token count batch together even when not adjacent; batches come in the
    order of their first case, so progress still runs through the list from the top.
    """
    buckets: dict[tuple[Any, ...], list[list[EvalCase]]] = {}
    in_order: list[list[EvalCase]] = []
    for case in cases:
        key = (_signature(case), _units_key(case))
        open_batches = buckets.setdefault(key, [])
        if open_batches and len(open_batches[-1]) < size:
            open_batches[-1].append(case)
        else:
            open_batches.append([case])
            in_order.append(open_batches[-1])
    return in_order


def _units_key(case: EvalCase) -> tuple[Any, ...]:
    if case.units is None:
        return ()
    return (tuple(case.units.shape), hash(case.units.cpu().numpy().tobytes()))


def _stack_kwargs(batch: Sequence[EvalCase], field: str, device: torch.device
                  ) -> dict[str, torch.Tensor]:
    names = getattr(batch[0], field).keys()
    if field == "reference_kwargs":  # [N, R, ...]: one reference set per explicand
        return {n: torch.stack([getattr(c, field)[n] for c in batch]).to(device) for n in names}
    return {n: torch.cat([getattr(c, field)[n] for c in batch]).to(device) for n in names}


@dataclass(frozen=True)
class _Stacked:
    """A batch of cases as stacked tensors on the model's device."""

    x: torch.Tensor
    base: torch.Tensor
    removal: torch.Tensor
    refs: torch.Tensor
    kwargs: dict[str, torch.Tensor]
    target: list[int] | None


def _stack(loaded: LoadedModel, batch: Sequence[EvalCase]) -> _Stacked:
    device = loaded.device
    x = torch.cat([c.inputs for c in batch]).to(device)
    kwargs = _stack_kwargs(batch, "forward_kwargs", device)
    scalar = loaded.spec.output_kind == "regression" and _scalar_output(loaded, x[:1], kwargs)
    return _Stacked(
        x=x, base=torch.cat([c.baseline for c in batch]).to(device),
        removal=torch.cat([c.baseline if c.removal is None else c.removal
                           for c in batch]).to(device),
        refs=torch.stack([c.references for c in batch]).to(device), kwargs=kwargs,
        target=None if scalar else [c.target for c in batch])


def attribute_batch(method: str, loaded: LoadedModel, batch: Sequence[EvalCase],
                    settings: EvaluationSettings, cache: ResultCache | None = None) -> Any:
    """One method's result on a batch of cases of one shape (see :func:`batches`)."""
    return _attribute(method, loaded, _stack(loaded, batch), batch, settings, cache)


def _evaluate_batch(loaded: LoadedModel, batch: Sequence[EvalCase],
                    settings: EvaluationSettings, cache: ResultCache | None,
                    report: Callable[[str], None]) -> list[CaseOutcome]:
    device = loaded.device
    stacked = _stack(loaded, batch)
    x, kwargs, target_arg = stacked.x, stacked.kwargs, stacked.target
    units = None if batch[0].units is None else batch[0].units.to(device)
    with device_lock(device), torch.no_grad():
        logits = loaded.forward(x, **kwargs).detach().cpu().double()
    predicted = [int(v) for v in logits.argmax(dim=-1).tolist()] if logits.dim() > 1 else \
        [0] * len(batch)

    curve_args: dict[str, Any] = dict(baseline=stacked.removal, target=target_arg, groups=units,
                                      n_points=settings.curve_points, forward_kwargs=kwargs)
    report("random-order reference curves")
    seeds = [case_seed(settings.seed, c.case_id) for c in batch]
    random_del = random_deletion_curve(loaded.forward, x, n_orders=settings.random_orders,
                                       seed=seeds, **curve_args)
    random_ins = random_insertion_curve(loaded.forward, x, n_orders=settings.random_orders,
                                        seed=seeds, **curve_args)
    per_method: dict[str, tuple[Any, float]] = {}
    for method in settings.methods:
        report(f"{method} attributions")
        started = time.perf_counter()
        result = _attribute(method, loaded, stacked, batch, settings, cache)
        per_method[method] = (result, time.perf_counter() - started)

    outcomes: dict[str, list[MethodOutcome]] = {c.case_id: [] for c in batch}
    for method, (result, seconds) in per_method.items():
        report(f"{method} deletion and insertion curves")
        started = time.perf_counter()
        attributions = result.attributions.detach().to(device, x.dtype)
        absolute = method in UNSIGNED_METHODS
        deletion = deletion_curve(loaded.forward, x, attributions, absolute=absolute,
                                  **curve_args)
        insertion = insertion_curve(loaded.forward, x, attributions, absolute=absolute,
                                    **curve_args)
        metric_seconds = time.perf_counter() - started
        scores = _reading_maps(result.attributions, batch)
        for i, case in enumerate(batch):
            outcomes[case.case_id].append(_method_outcome(
                method, result, i, scores[i], deletion, insertion, case,
                (seconds + metric_seconds) / len(batch)))
    return [_case_outcome(case, i, predicted[i], random_del, random_ins,
                          tuple(outcomes[case.case_id]))
            for i, case in enumerate(batch)]


def case_seed(seed: int, case_id: str) -> int:
    """A seed of its own per case (stable across runs, batches and case sets)."""
    return (seed * 1_000_003 + zlib.crc32(case_id.encode())) % (2**31)


def _scalar_output(loaded: LoadedModel, x: torch.Tensor, kwargs: Mapping[str, torch.Tensor]
                   ) -> bool:
    with device_lock(loaded.device), torch.no_grad():
        out = loaded.forward(x, **{k: v[:1] for k, v in kwargs.items()})
    return out.dim() == 1


def _attribute(method: str, loaded: LoadedModel, stacked: _Stacked, batch: Sequence[EvalCase],
               settings: EvaluationSettings, cache: ResultCache | None) -> Any:
    x, base, refs, target, kwargs = (stacked.x, stacked.base, stacked.refs, stacked.target,
                                     stacked.kwargs)
    device = loaded.device
    forward = loaded.forward
    if method == METHOD_IG:
        # Half the steps again: how far the map itself still moves (see MethodOutcome).
        half = (settings.ig_steps // 2,) if settings.ig_steps >= 2 else ()
        return run_ig(IgRequest(forward, x, baselines=base, target=target,
                                n_steps=settings.ig_steps, method=settings.quadrature,
                                ladder=half, forward_kwargs=kwargs,
                                model_key=loaded.weights_hash), cache=cache).result
    if method in (METHOD_IG2, METHOD_IG2_BEST_PATH):
        own_refs = refs[:, : settings.ig2_references]
        ref_kwargs = {k: v[:, : settings.ig2_references]
                      for k, v in _stack_kwargs(batch, "reference_kwargs", device).items()}
        step = settings.ig2_step_size if settings.ig2_step_size is not None else \
            loaded.spec.ig2_step_size
        run = run_ig2 if method == METHOD_IG2 else run_ig2_best_path
        return run(loaded, x, own_refs, target, kwargs, ref_kwargs, settings.ig2_steps, step,
                   cache)
    if method == METHOD_SALIENCY:
        return saliency(forward, x, target=target, abs=True, forward_kwargs=kwargs)
    if method == METHOD_GRAD_X_INPUT:
        return gradient_x_input(forward, x, target=target, forward_kwargs=kwargs)
    if method in (METHOD_SMOOTHGRAD, METHOD_GRADIENT_SHAP):
        return _per_case(method, forward, x, base, refs, target, kwargs, batch, settings)
    raise EvaluationInputError(f"Unknown method {method!r}.")


def _per_case(method: str, forward: Any, x: torch.Tensor, base: torch.Tensor,
              refs: torch.Tensor, target: list[int] | None, kwargs: dict[str, torch.Tensor],
              batch: Sequence[EvalCase], settings: EvaluationSettings) -> Any:
    """Noisy methods run case by case with the case's own seed (and, for GradientSHAP, its
    own reference distribution), so a case's map does not depend on its batch mates; each
    call still batches all of the case's samples."""
    parts = []
    for i, case in enumerate(batch):
        one_target = None if target is None else [target[i]]
        one_kwargs = {k: v[i:i + 1] for k, v in kwargs.items()}
        seed = case_seed(settings.seed, case.case_id)
        if method == METHOD_SMOOTHGRAD:
            row = x[i:i + 1]
            spread = float((row.amax() - row.amin()).clamp_min(1e-12))
            parts.append(smoothgrad(
                forward, row, baselines=base[i:i + 1], target=one_target,
                n_samples=settings.smoothgrad_samples, stdev=settings.smoothgrad_noise * spread,
                seed=seed, n_steps=settings.ig_steps, method=settings.quadrature,
                forward_kwargs=one_kwargs))
        else:
            parts.append(gradient_shap(
                forward, x[i:i + 1], refs[i], target=one_target,
                n_samples=settings.gradient_shap_samples, seed=seed, forward_kwargs=one_kwargs))
    return _Concatenated(
        attributions=torch.cat([p.attributions for p in parts]),
        delta=torch.cat([p.delta for p in parts]),
        relative_delta=torch.cat([p.relative_delta for p in parts]),
        n_evaluations=torch.cat([torch.as_tensor(p.n_evaluations).reshape(-1) for p in parts]))


class _Concatenated:
    """The few result fields the evaluation reads, for methods run case by case."""

    def __init__(self, **fields: torch.Tensor) -> None:
        self.__dict__.update(fields)


def _reading_maps(attributions: torch.Tensor, batch: Sequence[EvalCase]) -> list[np.ndarray]:
    """Per case: the map people read (channel sum per pixel, embedding sum per token)."""
    maps = []
    for row, case in zip(attributions.detach().cpu(), batch, strict=True):
        shape = case.reading_shape or tuple(row.shape)
        if row.dim() == 3 and len(shape) == 2:
            maps.append(image_io.channel_sum(row))
        elif row.dim() == 2 and len(shape) == 1:
            maps.append(text_io.token_scores(row).numpy())
        elif row.dim() == 1 and case.units is not None and row.shape[0] != shape[0]:
            # encoded table rows: each slot's unit is its original column (sum per column)
            summed = torch.zeros(shape[0], dtype=torch.float64)
            maps.append(summed.index_add_(0, case.units.cpu().long(), row.double()).numpy())
        else:
            maps.append(row.double().reshape(shape).numpy())
    return maps


def _method_outcome(method: str, result: Any, i: int, scores: np.ndarray, deletion: Any,
                    insertion: Any, case: EvalCase, seconds: float) -> MethodOutcome:
    fit = _agreement(scores, case.expected)
    delta = _item(getattr(result, "delta", None), i)
    relative = _item(getattr(result, "relative_delta", None), i)
    if method in (METHOD_SALIENCY,):
        # A gradient claims no completeness: its "delta" against zeros is not an error.
        delta = relative = math.nan
    return MethodOutcome(
        method=method, scores=scores,
        deletion=_normalised(deletion, i), insertion=_normalised(insertion, i),
        deletion_auc=float(deletion.normalised_auc[i]),
        insertion_auc=float(insertion.normalised_auc[i]), delta=delta, relative_delta=relative,
        precision_at_k=fit.precision_at_k, rank_correlation=fit.rank_correlation,
        mask_share=fit.mask_share, pointing_game=fit.pointing_game,
        seconds=seconds, n_evaluations=int(_item(getattr(result, "n_evaluations", None), i, 0)),
        convergence=_item(getattr(result, "convergence", None), i),
        **_path_figures(result, i))


def _path_figures(result: Any, i: int) -> dict[str, float]:
    """IG2's path diagnostic for case i: the median reach and the share of short paths."""
    found = getattr(result, "path_reach", None) \
        if isinstance(result, IG2Attribution | TunedIg2) else None
    if found is None:
        return {}
    reach = found[i].detach().cpu().double()
    return {"path_reach": float(reach.median()),
            "short_paths": float((reach > SHORT_PATH_REACH).double().mean())}


def _item(values: Any, i: int, default: float = math.nan) -> float:
    if values is None:
        return default
    tensor = torch.as_tensor(values).reshape(-1)
    return float(tensor[i]) if tensor.numel() > i else float(tensor[0])


def _normalised(curve: Any, i: int) -> np.ndarray:
    gap = float(curve.f_inputs[i] - curve.f_baselines[i])
    outputs = curve.outputs[i].detach().cpu().double().numpy()
    if gap == 0.0:
        return np.full_like(outputs, np.nan)
    return (outputs - float(curve.f_baselines[i])) / gap


@dataclass(frozen=True)
class _Fit:
    """One map's agreement with the case's expected features (NaN without any)."""

    precision_at_k: float = math.nan
    rank_correlation: float = math.nan
    mask_share: float = math.nan
    pointing_game: float = math.nan


def _agreement(scores: np.ndarray, expected: torch.Tensor | None) -> _Fit:
    if expected is None:
        return _Fit()
    mask = expected.reshape(1, -1).bool()
    k = int(mask.sum())
    if k == 0:
        return _Fit()
    fit = agreement(torch.from_numpy(scores).reshape(1, -1), mask, k=k)
    return _Fit(float(fit.precision_at_k[0]), float(fit.rank_correlation[0]),
                float(fit.positive_share_in_mask[0]), float(fit.pointing_game[0]))


def _case_outcome(case: EvalCase, i: int, predicted: int, random_del: Any, random_ins: Any,
                  outcomes: tuple[MethodOutcome, ...]) -> CaseOutcome:
    return CaseOutcome(
        case_id=case.case_id, target=case.target, label=case.label, predicted=predicted,
        f_input=float(random_del.f_inputs[i]), f_baseline=float(random_del.f_baselines[i]),
        fractions=random_del.fractions.detach().cpu().double().numpy(),
        random_deletion=_normalised(random_del, i), random_insertion=_normalised(random_ins, i),
        random_deletion_auc=float(random_del.normalised_auc[i]),
        random_insertion_auc=float(random_ins.normalised_auc[i]), outcomes=outcomes,
        disagreement=_disagreement(outcomes), reading_shape=tuple(case.reading_shape),
        expected=None if case.expected is None else case.expected.cpu().numpy().astype(bool),
        unit_names=tuple(case.unit_names), display=case.display, text=case.text)


def _disagreement(outcomes: Sequence[MethodOutcome]) -> float:
    """1 - mean pairwise Spearman correlation of |scores| (how differently methods rank)."""
    if len(outcomes) < 2:
        return math.nan
    correlations = [float(rank_correlation(torch.from_numpy(np.abs(a.scores)).reshape(1, -1),
                                           torch.from_numpy(np.abs(b.scores)).reshape(1, -1))[0])
                    for a, b in combinations(outcomes, 2)]
    finite = [c for c in correlations if math.isfinite(c)]
    return 1.0 - float(np.mean(finite)) if finite else math.nan
