"""A safetensors MLP with one embedding per categorical column, described by a JSON config,
explained in its embedding space and folded back per column.

The config (a JSON object):

- ``feature_names``: every column, in the order users see them;
- ``categorical``: ``{column: [category, ...]}`` for the categorical columns (the list order is
  the embedding's row order);
- ``mean`` / ``std`` (optional): one value per numeric column, in ``feature_names`` order;
- ``activation``, ``class_names``, ``output_kind`` as for the plain MLP.

The weights hold ``embeddings.<i>.weight`` ``[categories, dim]`` for the i-th categorical column
(in ``feature_names`` order) and ``layers.<n>.weight`` / ``.bias`` (an ``nn.Sequential`` saved as
``layers``). The encoded row is the standardised numeric columns followed by each categorical
column's embedding: ``layers`` takes ``n_numeric + sum(dim)`` inputs. The embedding lookup is
the front (a category has no gradient), the MLP the differentiable rest; IG moves each
embedding in a straight line from the baseline category's (or a zero vector: "no category")
to the row's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes

from attribution_core.identity import upload_digest
from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.modalities.tabular import MAX_CSV_ROWS, TabularInputError
from attribution_core.models.encoded_tabular import encoded_tabular_spec, parse_labels
from attribution_core.models.loaders import check_safetensors_bytes, load_state
from attribution_core.models.onnx_models import ConfigMLP
from attribution_core.models.spec import ModelLoadError, ModelSpec, OutputKind
from attribution_core.models.uploads import check_model_upload_size

MAX_CATEGORIES = 100_000


class EmbeddingFront:
    """Raw rows (numbers, category codes) -> ``[standardised numbers, embeddings...]``."""

    def __init__(self, schema: cat_io.TabularSchema, tables: Sequence[np.ndarray],
                 mean: np.ndarray, std: np.ndarray) -> None:
        self.schema = schema
        self.tables = [np.asarray(t, dtype=np.float64) for t in tables]
        self.mean, self.std = mean, std
        self.numeric = [j for j, c in enumerate(schema.columns) if c.kind == "numeric"]

    def encode_valid(self, raw: np.ndarray) -> np.ndarray:
        parts = [(raw[:, self.numeric] - self.mean) / self.std]
        for table, j in zip(self.tables, self.schema.categorical, strict=True):
            parts.append(table[raw[:, j].astype(np.int64)])
        return np.concatenate(parts, axis=1)


def _config_columns(config: Mapping[str, Any]) -> tuple[list[str], dict[str, list[str]]]:
    names = config.get("feature_names")
    categorical = config.get("categorical")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ModelLoadError("A config with 'categorical' needs 'feature_names': every column "
                             "in order, as a list of strings.")
    if len(set(names)) != len(names):
        raise ModelLoadError("'feature_names' repeats a name.")
    if not isinstance(categorical, dict) or not categorical:
        raise ModelLoadError("'categorical' must map column names to lists of categories.")
    unknown = [c for c in categorical if c not in names]
    if unknown:
        raise ModelLoadError(f"'categorical' names column(s) not in feature_names: "
                             f"{', '.join(map(repr, unknown[:5]))}.")
    lists: dict[str, list[str]] = {}
    for column, values in categorical.items():
        if not isinstance(values, list) or not values or len(values) > MAX_CATEGORIES:
            raise ModelLoadError(f"Column {column!r}: give 1 to {MAX_CATEGORIES:,} categories.")
        texts = [str(v) for v in values]
        if len(set(texts)) != len(texts):
            raise ModelLoadError(f"Column {column!r} repeats a category.")
        lists[column] = texts
    return names, lists


def _vector(config: Mapping[str, Any], key: str, width: int, default: float) -> np.ndarray:
    values = config.get(key)
    if values is None:
        return np.full(width, default)
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ModelLoadError(f"'{key}' must be numbers.") from error
    if array.size != width or not np.isfinite(array).all():
        raise ModelLoadError(f"'{key}' needs {width} finite values (one per numeric column).")
    if key == "std" and (array <= 0).any():
        raise ModelLoadError("'std' must be positive.")
    return array


def embedding_mlp_spec(data: bytes, file_name: str, config: Mapping[str, Any], *,
                       reference: pd.DataFrame | None = None, label_column: str | None = None
                       ) -> ModelSpec:
    """The spec of an uploaded embedding MLP (see the module docstring)."""
    check_model_upload_size(len(data), file_name)
    names, lists = _config_columns(config)
    check_safetensors_bytes(data)
    try:
        state = load_safetensors_bytes(data)
    except (SafetensorError, ValueError) as error:
        raise ModelLoadError(f"Not a valid safetensors file: {error}") from error
    order = [n for n in names if n in lists]
    tables = []
    for i, column in enumerate(order):
        table = state.get(f"embeddings.{i}.weight")
        if table is None or table.dim() != 2:
            raise ModelLoadError(f"The weights lack embeddings.{i}.weight [categories, dim] "
                                 f"for column {column!r}.")
        if table.shape[0] != len(lists[column]):
            raise ModelLoadError(f"embeddings.{i}.weight has {table.shape[0]} rows for the "
                                 f"{len(lists[column])} categories of {column!r}.")
        tables.append(table.detach().double().numpy())
    layers = {k: v for k, v in state.items() if k.startswith("layers.")}
    extra = sorted(k for k in state if not k.startswith(("layers.", "embeddings.")))
    if extra:
        raise ModelLoadError(f"Unexpected weights: {', '.join(extra[:5])}.")
    weights = sorted((int(k.split(".")[1]), t) for k, t in layers.items()
                     if k.endswith(".weight") and k.split(".")[1].isdigit() and t.dim() == 2)
    if not weights:
        raise ModelLoadError("The weights have no layers.N.weight matrices.")
    numeric = [n for n in names if n not in lists]
    width = len(numeric) + sum(int(t.shape[1]) for t in tables)
    if int(weights[0][1].shape[1]) != width:
        raise ModelLoadError(f"The first layer takes {int(weights[0][1].shape[1])} inputs; "
                             f"{len(numeric)} numeric columns and the embeddings give {width}.")
    activation = str(config.get("activation", "relu")).lower()
    sizes = [width] + [int(w.shape[0]) for _, w in weights]
    rest = ConfigMLP(sizes, activation)
    load_state(rest, layers, "the MLP weights")
    schema = _schema(names, lists, numeric, tables)
    front = EmbeddingFront(schema, tables, _vector(config, "mean", len(numeric), 0.0),
                           _vector(config, "std", len(numeric), 1.0))
    rows = labels = None
    if reference is not None:
        try:
            checked = cat_io.validate_frame(
                reference.drop(columns=[label_column]) if label_column else reference, schema,
                max_rows=MAX_CSV_ROWS)
        except TabularInputError as error:
            raise ModelLoadError(f"The reference CSV: {error}") from error
        if checked.values.shape[0] == 0:
            raise ModelLoadError("No row of the reference CSV can be used: "
                                 + "; ".join(p.describe() for p in checked.problems[:3]))
        rows = checked.values
        if label_column:
            labels = parse_labels(reference[label_column].iloc[list(checked.row_numbers)],
                                  config.get("class_names"))
    kind: OutputKind = "regression" if config.get("output_kind") == "regression" else \
        "classification"
    outputs = sizes[-1]
    classes = config.get("class_names") or [f"class {i}" for i in range(outputs)]
    if kind == "classification" and len(classes) != outputs:
        raise ModelLoadError(f"{len(classes)} class names for {outputs} outputs.")
    digest = upload_digest(data, config=config, reference=rows, labels=labels)
    return encoded_tabular_spec(
        f"upload:embedding-mlp:{digest[:12]}", rest, front,
        class_names=None if kind == "regression" else classes, output_kind=kind,
        title=f"Your embedding MLP ({file_name})",
        description=f"Uploaded safetensors MLP (upload sha256 {digest[:12]}…) with an embedding "
                    f"per categorical column ({len(order)} of {len(names)} columns); attributions "
                    "are computed in the embedding space and summed per column.",
        reference=rows, labels=labels, weights_sha256=digest,
        metadata={"file": file_name, "format": "safetensors embedding MLP",
                  "outputs_probabilities": False, "encoded_width": width})


def _schema(names: Sequence[str], lists: Mapping[str, list[str]], numeric: Sequence[str],
            tables: Sequence[np.ndarray]) -> cat_io.TabularSchema:
    columns = tuple(cat_io.TabularColumn(n, "categorical", tuple(lists[n])) if n in lists
                    else cat_io.TabularColumn(n) for n in names)
    index = {n: j for j, n in enumerate(names)}
    groups = [index[n] for n in numeric]
    slot_names = [f"{n} (standardised)" for n in numeric]
    for column, table in zip([n for n in names if n in lists], tables, strict=True):
        dim = int(table.shape[1])
        groups += [index[column]] * dim
        slot_names += [f"{column} [embedding {k + 1}/{dim}]" for k in range(dim)]
    return cat_io.TabularSchema(columns, tuple(groups), tuple(slot_names), one_hot=True)
