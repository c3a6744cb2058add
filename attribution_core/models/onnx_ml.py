"""PyTorch converters for the ``ai.onnx.ml`` operators that scikit-learn exports use, registered
in onnx2torch's own converter registry (so an skl2onnx pipeline becomes one differentiable
``torch.fx`` module, with no separate ONNX interpreter).

Covered, each with a gradient: ``Scaler``, ``Normalizer``, ``LinearClassifier``,
``LinearRegressor``, ``ArrayFeatureExtractor``, ``FeatureVectorizer``, ``Imputer``. The
semantics follow the ONNX-ML operator specification as scikit-learn's exporter uses it (the
binary case of ``LinearClassifier`` writes ``[1 - p, p]`` after a logistic, ``[-s, s]``
without). Tree ensembles are deliberately absent: their output is piecewise constant, its
gradient zero almost everywhere, so Integrated Gradients cannot explain them
(:data:`TREE_OPERATORS` lets the loader say so). The encoding operators (``OneHotEncoder``,
``LabelEncoder``, ``CategoryMapper``, string inputs) get no converter on purpose: strings are
no tensors and a category has no gradient, so :mod:`.onnx_split` runs them in front of the
converted graph and IG starts from their encoded output.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

ML_DOMAIN = "ai.onnx.ml"
# The loader renames the domain to this before converting: onnx2torch names a module after its
# node's domain and torch refuses the dots of "ai.onnx.ml". Registered for every ML opset
# version (onnx has no schema under this name, so the model's opset version is looked up as is).
ML_ALIAS = "ai_onnx_ml"
ML_OPSET_VERSIONS = range(1, 6)
TREE_OPERATORS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"})
# Standard operators whose newer ONNX versions only admit more element types (float8, int4,
# ...) than onnx2torch's newest converter knows: the newest converter serves them too, so a model
# exported at opset 21 (skl2onnx's default today) converts like one at opset 17.
TYPE_ONLY_UPDATES = ("Cast", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten",
                     "Transpose", "Shape", "Constant", "ConstantOfShape", "Pad", "Size")
_REGISTERED = False
_LOCK = threading.Lock()


def _floats(values: Any) -> torch.Tensor:
    return torch.tensor(list(values) if values is not None else [], dtype=torch.float32)


class OnnxScaler(nn.Module):
    """``(x - offset) * scale`` (one value or one per feature)."""

    def __init__(self, offset: Sequence[float], scale: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("offset", _floats(offset) if offset else torch.zeros(1))
        self.register_buffer("scale", _floats(scale) if scale else torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.offset.to(x.dtype)) * self.scale.to(x.dtype)


class OnnxNormalizer(nn.Module):
    """Row-wise ``MAX``, ``L1`` or ``L2`` normalisation."""

    def __init__(self, norm: str) -> None:
        super().__init__()
        if norm not in ("MAX", "L1", "L2"):
            raise NotImplementedError(f"Normalizer norm {norm!r}")
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm == "L1":
            return x / x.abs().sum(dim=-1, keepdim=True).clamp_min(1e-30)
        if self.norm == "L2":
            return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        return x / x.max(dim=-1, keepdim=True).values


def _post_transform(scores: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "NONE":
        return scores
    if kind == "LOGISTIC":
        return torch.sigmoid(scores)
    if kind in ("SOFTMAX", "SOFTMAX_ZERO"):
        return torch.softmax(scores, dim=-1)
    raise NotImplementedError(f"post_transform {kind!r}")


class OnnxLinearClassifier(nn.Module):
    """``scores = x W^T + b`` then the post transform; returns ``(label index, scores)``."""

    def __init__(self, coefficients: Sequence[float], intercepts: Sequence[float],
                 n_labels: int, post_transform: str) -> None:
        super().__init__()
        weights = _floats(coefficients)
        rows = max(1, len(intercepts)) if intercepts else max(1, n_labels)
        self.register_buffer("weight", weights.view(rows, -1))
        self.register_buffer("bias", _floats(intercepts) if intercepts else torch.zeros(rows))
        self.binary = rows == 1 and n_labels == 2
        self.post = post_transform
        _post_transform(torch.zeros(1, 2), post_transform)  # refuse unknown kinds now

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = x @ self.weight.to(x.dtype).T + self.bias.to(x.dtype)
        if self.binary:
            if self.post == "LOGISTIC":
                positive = torch.sigmoid(scores)
                scores = torch.cat([1.0 - positive, positive], dim=-1)
            else:
                scores = torch.cat([-scores, scores], dim=-1)
        else:
            scores = _post_transform(scores, self.post)
        return scores.argmax(dim=-1), scores


class OnnxLinearRegressor(nn.Module):
    def __init__(self, coefficients: Sequence[float], intercepts: Sequence[float],
                 targets: int, post_transform: str) -> None:
        super().__init__()
        if post_transform != "NONE":
            raise NotImplementedError(f"LinearRegressor post_transform {post_transform!r}")
        self.register_buffer("weight", _floats(coefficients).view(targets, -1))
        self.register_buffer("bias", _floats(intercepts) if intercepts else torch.zeros(targets))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.to(x.dtype).T + self.bias.to(x.dtype)


class OnnxArrayFeatureExtractor(nn.Module):
    """``x[..., indices]``: selects columns (a gradient flows to the chosen ones)."""

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return x.index_select(-1, indices.reshape(-1).long())


class OnnxFeatureVectorizer(nn.Module):
    """Concatenates its inputs along the feature axis."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        columns = [t.unsqueeze(-1) if t.dim() == 1 else t for t in inputs]
        dtype = columns[0].dtype
        return torch.cat([t.to(dtype) for t in columns], dim=-1)


class OnnxImputer(nn.Module):
    """Replaces ``replaced_value`` (NaN by default) by the imputed value per feature."""

    def __init__(self, imputed: Sequence[float], replaced: float) -> None:
        super().__init__()
        self.register_buffer("imputed", _floats(imputed))
        self.replaced = replaced

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        missing = torch.isnan(x) if self.replaced != self.replaced else x == self.replaced
        return torch.where(missing, self.imputed.to(x.dtype).expand_as(x), x)


def _converters() -> dict[str, Callable[[Any], nn.Module]]:
    def labels(attrs: Any) -> int:
        return len(attrs.get("classlabels_ints") or attrs.get("classlabels_strings") or ())

    return {
        "Scaler": lambda a: OnnxScaler(a.get("offset", ()), a.get("scale", ())),
        "Normalizer": lambda a: OnnxNormalizer(a.get("norm", "MAX")),
        "LinearClassifier": lambda a: OnnxLinearClassifier(
            a.get("coefficients", ()), a.get("intercepts", ()), labels(a),
            a.get("post_transform", "NONE")),
        "LinearRegressor": lambda a: OnnxLinearRegressor(
            a.get("coefficients", ()), a.get("intercepts", ()), int(a.get("targets", 1)),
            a.get("post_transform", "NONE")),
        "ArrayFeatureExtractor": lambda a: OnnxArrayFeatureExtractor(),
        "FeatureVectorizer": lambda a: OnnxFeatureVectorizer(),
        "Imputer": lambda a: OnnxImputer(a.get("imputed_value_floats", ()),
                                         float(a.get("replaced_value_float", float("nan")))),
    }


def register_ml_converters() -> None:
    """Add the converters above to onnx2torch's registry once (skipping any it already has)."""
    global _REGISTERED
    with _LOCK:
        if _REGISTERED:
            return
        from onnx2torch.node_converters.registry import (
            _CONVERTER_REGISTRY,
            OperationDescription,
            add_converter,
        )
        from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

        for operation, build in _converters().items():

            def convert(node: Any, graph: Any, build: Callable[[Any], nn.Module] = build
                        ) -> Any:
                return OperationConverterResult(torch_module=build(dict(node.attributes)),
                                                onnx_mapping=onnx_mapping_from_node(node))

            for version in ML_OPSET_VERSIONS:
                if OperationDescription(ML_ALIAS, operation, version) not in _CONVERTER_REGISTRY:
                    add_converter(operation_type=operation, version=version,
                                  domain=ML_ALIAS)(convert)
        _register_type_only_updates(_CONVERTER_REGISTRY, OperationDescription, add_converter)
        _REGISTERED = True


def _register_type_only_updates(registry: dict[Any, Any], description: Any,
                                add_converter: Any) -> None:
    from onnx import defs

    newest_opset = defs.onnx_opset_version()
    for operation in TYPE_ONLY_UPDATES:
        known = sorted(d.version for d in registry if d.domain == ""
                       and d.operation_type == operation)
        if not known:
            continue
        versions = set()
        for opset in range(1, newest_opset + 1):
            try:
                versions.add(defs.get_schema(operation, max_inclusive_version=opset,
                                             domain="").since_version)
            except (RuntimeError, defs.SchemaError):
                continue
        newest = registry[description("", operation, known[-1])]
        for version in sorted(v for v in versions if v > known[-1]):
            if description("", operation, version) not in registry:
                add_converter(operation_type=operation, version=version)(newest)
