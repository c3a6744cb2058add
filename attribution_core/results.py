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

    @property
    def batch_size(self) -> int:
        return int(self.attributions.shape[0])

    def with_cache_flag(self, from_cache: bool) -> Attribution:
        return dataclasses.replace(self, from_cache=from_cache)


def completeness(attributions: torch.Tensor, f_inputs: torch.Tensor, f_baselines: torch.Tensor,
                 eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """(delta, relative delta): sum(attr) - (f(x) - f(x')), and |delta| / max(|f(x) - f(x')|, eps)."""
    totals = attributions.reshape(attributions.shape[0], -1).sum(dim=1)
    gap = f_inputs - f_baselines
    delta = totals - gap
    return delta, delta.abs() / gap.abs().clamp_min(eps)


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
