"""Frozen result types shared by every attribution method, and their tensor-safe serialisation.

Results are stored on disk by the cache as safetensors (tensors) plus JSON (everything else):
never pickle, so a cache directory cannot execute code when it is read back.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

ResultT = TypeVar("ResultT")
_RESULT_TYPES: dict[str, type] = {}


def register_result_type(cls: type[ResultT]) -> type[ResultT]:
    """Make a frozen result dataclass storable by the cache (decorator)."""
    _RESULT_TYPES[cls.__name__] = cls
    return cls


@register_result_type
@dataclass(frozen=True)
class Attribution:
    """Attributions of one method for a batch of explicands, with its completeness bookkeeping.

    ``delta`` follows Captum's convergence delta: sum of attributions over the non-batch dims
    minus ``f_inputs - f_baselines``. ``convergence_*`` hold one row per refinement of an adaptive
    run (one row for a fixed step count) so the dashboard can plot error against cost.
    Completeness is not correctness: ``convergence`` says how far the map itself may still move.
    """

    attributions: torch.Tensor
    f_inputs: torch.Tensor
    f_baselines: torch.Tensor
    delta: torch.Tensor
    relative_delta: torch.Tensor
    n_evaluations: torch.Tensor
    method: str
    quadrature: str
    n_steps: int | str
    baselines: torch.Tensor
    target: torch.Tensor | None = None
    alphas: tuple[torch.Tensor, ...] = ()
    convergence_evaluations: torch.Tensor | None = None
    convergence_relative_delta: torch.Tensor | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    from_cache: bool = False
    # Per-feature convergence [N]: max |change of A| / max |A| between the last two refinements
    # (auto), or against a run at ``convergence_reference_steps`` steps (fixed); None: unknown.
    convergence: torch.Tensor | None = None
    convergence_change: torch.Tensor | None = None  # [rounds, N] for auto runs
    convergence_reference_steps: int | str | None = None

    @property
    def batch_size(self) -> int:
        return int(self.attributions.shape[0])

    def with_cache_flag(self, from_cache: bool) -> Attribution:
        return dataclasses.replace(self, from_cache=from_cache)


def completeness(attributions: torch.Tensor, f_inputs: torch.Tensor, f_baselines: torch.Tensor,
                 eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """delta = sum(attr) - (f(x) - f(x')); relative = |delta| / max(|f(x) - f(x')|, eps)."""
    totals = attributions.reshape(attributions.shape[0], -1).sum(dim=1)
    gap = f_inputs - f_baselines
    delta = totals - gap
    return delta, delta.abs() / gap.abs().clamp_min(eps)


def to_device(result: ResultT, device: torch.device | str) -> ResultT:
    """The same result with every tensor field (and tuple of tensors) on ``device``."""
    if not dataclasses.is_dataclass(result):
        return result
    device = torch.device(device)
    moved: dict[str, Any] = {}
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        if isinstance(value, torch.Tensor):
            if value.device != device:
                moved[item.name] = value.detach().to(device)
        elif isinstance(value, tuple) and value and all(
                isinstance(v, torch.Tensor) for v in value) and any(
                v.device != device for v in value):
            moved[item.name] = tuple(v.detach().to(device) for v in value)
    return dataclasses.replace(result, **moved) if moved else result  # type: ignore[type-var]


def clone_result(result: ResultT) -> ResultT:
    """The same result with every tensor field (and tuple of tensors) copied: a cached entry
    handed out is never the stored one, so editing it in place cannot rewrite the cache."""
    if not dataclasses.is_dataclass(result):
        return result
    copied: dict[str, Any] = {}
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        if isinstance(value, torch.Tensor):
            copied[item.name] = value.detach().clone()
        elif isinstance(value, tuple) and value and all(isinstance(v, torch.Tensor)
                                                        for v in value):
            copied[item.name] = tuple(v.detach().clone() for v in value)
        elif isinstance(value, dict):
            copied[item.name] = dict(value)
    return dataclasses.replace(result, **copied) if copied else result  # type: ignore[type-var]


# -- serialisation -----------------------------------------------------------------------------

def result_to_storage(result: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Split a registered result into (tensors for safetensors, JSON-able metadata)."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        if isinstance(value, torch.Tensor):
            tensors[item.name] = value.detach().cpu().clone().contiguous()
        elif isinstance(value, tuple) and value and all(isinstance(v, torch.Tensor) for v in value):
            for index, tensor in enumerate(value):
                tensors[f"{item.name}.{index}"] = tensor.detach().cpu().clone().contiguous()
            meta[item.name] = {"__tensor_tuple__": len(value)}
        else:
            meta[item.name] = value
    return tensors, {"type": type(result).__name__, "fields": json.dumps(meta, default=_jsonable)}


def result_from_storage(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Any:
    """Rebuild a result stored by :func:`result_to_storage`; raises on anything unexpected."""
    cls = _RESULT_TYPES[metadata["type"]]
    meta = json.loads(metadata["fields"])
    values: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if item.name in tensors:
            values[item.name] = tensors[item.name]
        elif item.name in meta:
            raw = meta[item.name]
            if isinstance(raw, dict) and "__tensor_tuple__" in raw:
                values[item.name] = tuple(
                    tensors[f"{item.name}.{i}"] for i in range(raw["__tensor_tuple__"])
                )
            elif isinstance(raw, list):
                values[item.name] = _tuplify(raw)
            else:
                values[item.name] = raw
    return cls(**values)


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Cannot store {type(value).__name__} in a result's metadata.")


@register_result_type
@dataclass(frozen=True)
class IG2Attribution:
    """IG2 attributions (see docs/IG2.md) with each reference's GradCF and path diagnostics.

    Shapes: N explicands, B references, T path steps. ``delta`` is sum(attributions) minus
    ``f_inputs - f_counterfactuals`` (the mean f over the GradCFs, the points the explanation is
    measured against); ``gap_vs_references`` is ``f_inputs - f_references_mean`` for comparison.
    Rows that stopped early (``early_stop``) repeat their last value in the traces;
    ``steps_taken`` says where each stopped. Classes are -1 for a model with a scalar output.
    """

    attributions: torch.Tensor  # [N, ...]
    counterfactuals: torch.Tensor  # [N, B, ...] GradCF of each reference
    counterfactual_classes: torch.Tensor  # [N, B] predicted class at GradCF
    counterfactual_logits: torch.Tensor  # [N, B] explained output f at GradCF
    distance_trace: torch.Tensor  # [N, B, T + 1] representation distance D_r(g_j)
    f_path: torch.Tensor  # [N, B, T + 1] f(g_j)
    f_inputs: torch.Tensor  # [N]
    f_counterfactuals: torch.Tensor  # [N] mean over references of f(GradCF_r)
    delta: torch.Tensor  # [N]
    relative_delta: torch.Tensor  # [N]
    f_references: torch.Tensor  # [N, B] f(x_r) at the explicand's target
    f_references_mean: torch.Tensor  # [N]
    gap_vs_references: torch.Tensor  # [N]
    reference_classes: torch.Tensor  # [N, B] predicted class of each reference
    references: torch.Tensor  # [N, B, ...] the references used
    steps_taken: torch.Tensor  # [N, B] descent steps actually made (< T after an early stop)
    n_evaluations: torch.Tensor  # [N] path-point rows evaluated (forward passes), over references
    forward_calls: int
    rule: str
    norm: str
    step_size: float  # eta of the first explicand (all of them when one was given)
    n_steps: int
    representation: str
    early_stop: bool = False
    target: torch.Tensor | None = None
    step_sizes: torch.Tensor | None = None  # [N] float64: each explicand's eta
    params: Mapping[str, Any] = field(default_factory=dict)
    method: str = "ig2"
    from_cache: bool = False
    # Per-feature convergence [N] (methods/_ig2_trust.py): the references' part (union bound
    # on the spread of the per-reference maps) plus the steps' part (the same path on every
    # other point), / max |A|, like ``Attribution.convergence``. NaN with one reference.
    convergence: torch.Tensor | None = None
    convergence_references: torch.Tensor | None = None  # [N]
    convergence_steps: torch.Tensor | None = None  # [N]
    reference_standard_error: torch.Tensor | None = None  # [N, ...] std_r(A_r) / sqrt(B)
    step_change: torch.Tensor | None = None  # [N, ...] A(T) - A(T / 2 steps)
    # What the steps' part compares with: "half-steps path" (a companion path, ``halving``)
    # or "same path, every other point" (the quadrature's error only; no extra row).
    convergence_steps_from: str = ""

    @property
    def batch_size(self) -> int:
        return int(self.attributions.shape[0])

    @property
    def n_references(self) -> int:
        return int(self.counterfactuals.shape[1])

    @property
    def path_reach(self) -> torch.Tensor:
        """[N, B]: D_r(GradCF) / D_r(x), the squared representation distance left at the end
        of each path (0: it reached the reference's representation; 1: it did not move)."""
        from attribution_core.methods._ig2_trust import path_reach

        return path_reach(self.distance_trace)

    def with_cache_flag(self, from_cache: bool) -> IG2Attribution:
        return dataclasses.replace(self, from_cache=from_cache)
