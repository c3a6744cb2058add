"""A :class:`ModelSpec` for a tabular model split into a non-differentiable encoding *front*
(raw columns, categories and missing cells -> the encoded vector) and a differentiable *rest*
(the encoded vector -> outputs).

The model input of such a spec is the encoded row ``[B, E]``: IG, IG2, the comparison methods,
the out-of-domain notice and Evaluate's curves all work there, where gradients exist, and the
pages fold attributions back to the user's columns with
:func:`attribution_core.modalities.tabular_categorical.fold_result`. ``preprocess`` takes raw
rows (numbers and category codes, see that module) and encodes them; there is no
``postprocess`` (an encoding is not invertible), so the raw reference rows travel in the pool's
``extras["raw"]``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from attribution_core.fingerprints import fingerprint_state, module_state
from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.modalities.tabular import MAX_CSV_ROWS, TabularInputError
from attribution_core.models.spec import (
    LoadedModel,
    ModelLoadError,
    ModelSource,
    ModelSpec,
    OutputKind,
    ReferencePool,
)
from attribution_core.models.wrappers import last_linear_name

SCHEMA_KEY = "tabular_schema"


class RowEncoder(Protocol):
    """The front: raw rows ``[R, F]`` (no "no category" codes) -> encoded rows ``[R, E]``."""

    schema: cat_io.TabularSchema

    def encode_valid(self, raw: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class EncodedRows:
    """A callable ``preprocess``: raw rows (array ``[F]`` / ``[R, F]`` or ``{name: value}``)
    -> encoded float32 rows ``[R, E]``; "no category" codes become all-zero slots."""

    encoder: RowEncoder

    def __call__(self, row: Any) -> torch.Tensor:
        schema = self.encoder.schema
        if isinstance(row, Mapping):
            unknown = sorted(set(row) - set(schema.names))
            missing = [n for n in schema.names if n not in row]
            if unknown or missing:
                raise ModelLoadError(f"Columns do not match: missing {missing or 'none'}, "
                                     f"unknown {unknown or 'none'}.")
            row = [row[name] for name in schema.names]
        raw = np.atleast_2d(np.asarray(row, dtype=np.float64))
        if raw.ndim != 2 or raw.shape[1] != len(schema.columns):
            raise ModelLoadError(f"Expected {len(schema.columns)} columns per row, got shape "
                                 f"{tuple(raw.shape)}.")
        for values in raw:
            problem = cat_io.row_problem(schema, values)
            if problem is not None:
                raise ModelLoadError(f"A row cannot be encoded: {problem}.")
        blank = raw == cat_io.NO_CATEGORY
        categorical = np.zeros(raw.shape[1], dtype=bool)
        categorical[list(schema.categorical)] = True
        blank &= categorical[None, :]
        encoded = np.asarray(self.encoder.encode_valid(np.where(blank, 0.0, raw)),
                             dtype=np.float64)
        if blank.any():
            groups = np.asarray(schema.groups)
            for r, j in zip(*np.nonzero(blank), strict=True):
                encoded[r, groups == j] = 0.0
        if not np.isfinite(encoded).all():
            raise ModelLoadError("The encoding of a row holds NaN or infinite values (a "
                                 "missing cell the pipeline does not impute?).")
        return torch.tensor(encoded, dtype=torch.float32)


def schema_of(loaded: LoadedModel) -> cat_io.TabularSchema | None:
    """The column schema of a model explained in an encoded space, or None."""
    found = loaded.extras.get(SCHEMA_KEY)
    return found if isinstance(found, cat_io.TabularSchema) else None


def _module_device(module: nn.Module) -> torch.device:
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return torch.device("cpu")


def representation_layer(module: nn.Module) -> str | None:
    """IG2's layer: the last ``nn.Linear``, else the last matrix product of a converted ONNX
    graph (onnx2torch's ``MatMul`` / ``Gemm`` modules; their first input is the activation)."""
    found = last_linear_name(module)
    if found is not None:
        return found
    for name, child in module.named_modules():
        if type(child).__name__ in ("OnnxMatMul", "OnnxGemm"):
            found = name
    return found


def _step_size(inputs: torch.Tensor, fallback: float = 0.05) -> float:
    """About 1/100 of the median distance between encoded reference rows."""
    if inputs.shape[0] < 2:
        return fallback
    flat = inputs[:64].double()
    distances = torch.cdist(flat, flat)
    upper = distances[torch.triu(torch.ones_like(distances, dtype=torch.bool), diagonal=1)]
    median = float(upper.median())
    return median / 100 if median > 0 else fallback


def encoded_tabular_spec(name: str, rest: nn.Module, encoder: RowEncoder, *,
                         class_names: Sequence[str] | None, output_kind: OutputKind,
                         title: str, description: str, reference: np.ndarray | None,
                         labels: np.ndarray | None, source: ModelSource = "upload",
                         weights_sha256: str | None = None,
                         metadata: Mapping[str, Any] | None = None) -> ModelSpec:
    """The spec of ``rest`` over the encoded rows of ``encoder`` (see the module docstring).

    ``reference``: raw reference rows ``[N, F]`` (numbers and codes) or None; ``labels``
    their classes or targets (None: the model's own predictions).
    """
    rest = rest.eval()
    schema = encoder.schema
    to_model = EncodedRows(encoder)
    kinds = cat_io.baseline_kinds(schema, reference is not None and len(reference) > 0)
    baselines = {kind: cat_io.baseline_row(schema, kind, reference) for kind in kinds
                 if kind != "reference_row"}
    extras: dict[str, Any] = {
        "feature_names": schema.names, SCHEMA_KEY: schema,
        "units": tuple("" for _ in schema.columns), "slot_names": schema.slot_names,
        "baseline_raw": baselines,
        "baseline_tensors": {kind: to_model(row) for kind, row in baselines.items()},
    }
    if "mean" in baselines:
        extras["train_mean_raw"] = baselines["mean"]
        extras["train_median_raw"] = baselines["median"]
    pool: Callable[[], ReferencePool] | None = None
    step = 0.05
    if reference is not None and len(reference) > 0:
        inputs = to_model(reference)
        step = _step_size(inputs)
        pool = _pool(rest, inputs, labels, reference, output_kind)
    spec_holder: list[ModelSpec] = []

    def loader(device: torch.device) -> LoadedModel:
        placed = rest if _module_device(rest) == device else copy.deepcopy(rest).to(device)
        return LoadedModel(
            spec=spec_holder[0], module=placed, forward=placed,
            weights_hash=weights_sha256 or fingerprint_state(module_state(placed)),
            device=device, preprocess=to_model, postprocess=None, extras=dict(extras))

    default = kinds[0]
    spec = ModelSpec(
        name=name, title=title, modality="tabular", output_kind=output_kind,
        class_names=tuple(str(c) for c in class_names) if class_names is not None else
        ("prediction",), loader=loader, description=description,
        weights_sha256=weights_sha256, default_baseline=default, baselines=kinds,
        representation_module=representation_layer(rest), input_box=None, ig2_step_size=step,
        reference_pool=pool, metadata=dict(metadata or {}), source=source)
    spec_holder.append(spec)
    return spec


def _pool(rest: nn.Module, inputs: torch.Tensor, labels: np.ndarray | None,
          raw: np.ndarray, output_kind: OutputKind) -> Callable[[], ReferencePool]:
    @lru_cache(maxsize=1)
    def pool() -> ReferencePool:
        if labels is not None:
            found = torch.as_tensor(np.asarray(labels, dtype=np.float64))
            found = found.float() if output_kind == "regression" else found.round().long()
        else:
            with torch.no_grad():
                outputs = rest(inputs.to(_module_device(rest))).detach().cpu()
            found = outputs[:, 0].float() if output_kind == "regression" else \
                outputs.argmax(dim=-1)
        return ReferencePool(inputs, found, {"split": "reference_data", "raw": raw})

    return pool


def parse_labels(column: pd.Series, class_labels: Sequence[str] | None) -> np.ndarray:
    """Label cells: numbers, or the model's own class labels (mapped to their index)."""
    texts = column.astype(str).str.strip().tolist()
    lookup = {str(c): i for i, c in enumerate(class_labels or ())}
    out = []
    for text in texts:
        if text in lookup:
            out.append(float(lookup[text]))
            continue
        try:
            out.append(float(text))
        except ValueError as error:
            raise ModelLoadError(f"Label {text!r} is neither a number nor one of the model's "
                                 f"classes ({', '.join(lookup) or 'none'}).") from error
    return np.asarray(out)


def reference_rows(reference: pd.DataFrame | None, schema: cat_io.TabularSchema,
                   label_column: str | None, class_labels: Sequence[str] | None
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """An uploaded model's reference CSV read with its columns' schema: the usable raw rows
    (cells refused per row, at least one row kept) and, with ``label_column``, their labels."""
    if reference is None:
        return None, None
    try:
        checked = cat_io.validate_frame(
            reference.drop(columns=[label_column]) if label_column else reference, schema,
            max_rows=MAX_CSV_ROWS)
    except TabularInputError as error:
        raise ModelLoadError(f"The reference CSV: {error}") from error
    if checked.values.shape[0] == 0:
        raise ModelLoadError("No row of the reference CSV can be used: "
                             + "; ".join(p.describe() for p in checked.problems[:3]))
    if not label_column:
        return checked.values, None
    return checked.values, parse_labels(
        reference[label_column].iloc[list(checked.row_numbers)], class_labels)
