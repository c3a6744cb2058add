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

from attribution_core import limits
from attribution_core.identity import upload_digest
from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.models.encoded_tabular import encoded_tabular_spec, reference_rows
from attribution_core.models.loaders import load_state
from attribution_core.models.onnx_models import ACTIVATIONS, ConfigMLP
from attribution_core.models.spec import ModelLoadError, ModelSpec, OutputKind
from attribution_core.models.upload_checks import (
    TensorEntry,
    check_category_names,
    check_class_names,
    check_feature_names,
    mlp_sizes,
    safetensors_header,
)
from attribution_core.models.uploads import check_model_upload_size

MAX_CATEGORIES = limits.MAX_EMBEDDING_CATEGORIES


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
    """The columns and categories the config declares, each list counted before its names are
    read and bounded like class names (they become select-box options and slot names)."""
    names = config.get("feature_names")
    categorical = config.get("categorical")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ModelLoadError("A config with 'categorical' needs 'feature_names': every column "
                             "in order, as a list of strings.")
    if len(set(names)) != len(names):
        raise ModelLoadError("'feature_names' repeats a name.")
    names = list(check_feature_names(names, "The config's feature_names"))
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
    every = [text for texts in lists.values() for text in texts]  # one bound for them all
    check_category_names(every, "The config's categories", len(every))
    return names, lists


def _declared_sizes(entries: Mapping[str, TensorEntry], names: Sequence[str],
                    lists: Mapping[str, list[str]]) -> tuple[list[int], list[int]]:
    """Each embedding's width and the MLP's layer widths, read and cross-checked from the
    safetensors header before anything is allocated: a table per categorical column with one
    row per category, no other tensor, and layers that chain from the encoded row's width."""
    order = [n for n in names if n in lists]
    dims = []
    for i, column in enumerate(order):
        table = entries.get(f"embeddings.{i}.weight")
        if table is None or len(table.shape) != 2:
            raise ModelLoadError(f"The weights lack embeddings.{i}.weight [categories, dim] "
                                 f"for column {column!r}.")
        if table.shape[0] != len(lists[column]):
            raise ModelLoadError(f"embeddings.{i}.weight has {table.shape[0]:,} rows for the "
                                 f"{len(lists[column])} categories of {column!r}.")
        dims.append(table.shape[1])
    tables = {f"embeddings.{i}.weight" for i in range(len(order))}
    extra = sorted(k for k in entries if not k.startswith("layers.") and k not in tables)
    if extra:
        raise ModelLoadError(f"Unexpected weights: {', '.join(k[:60] for k in extra[:5])}.")
    width = len(names) - len(order) + sum(dims)
    if width > limits.MAX_ENCODED_WIDTH:
        raise ModelLoadError(f"The embeddings and numeric columns make rows of {width:,} "
                             f"values; at most {limits.MAX_ENCODED_WIDTH:,} are supported.")
    layers = {k: v for k, v in entries.items() if k.startswith("layers.")}
    sizes = mlp_sizes(layers, "The weights", max_inputs=limits.MAX_ENCODED_WIDTH)
    if sizes[0] != width:
        raise ModelLoadError(f"The first layer takes {sizes[0]} inputs; "
                             f"{len(names) - len(order)} numeric columns and the embeddings "
                             f"give {width}.")
    return dims, sizes


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
    activation = str(config.get("activation", "relu")).lower()[:40]
    if activation not in ACTIVATIONS:
        raise ModelLoadError(f"Unknown activation {activation!r}; choose from "
                             f"{', '.join(ACTIVATIONS)}.")
    numeric = [n for n in names if n not in lists]
    _, sizes = _declared_sizes(safetensors_header(data, "The safetensors file"), names, lists)
    mean = _vector(config, "mean", len(numeric), 0.0)
    std = _vector(config, "std", len(numeric), 1.0)
    try:  # every size was checked from the header above: this reads what the file holds
        state = load_safetensors_bytes(data)
    except (SafetensorError, ValueError) as error:
        raise ModelLoadError(f"Not a valid safetensors file: {error}") from error
    order = [n for n in names if n in lists]
    tables = [state[f"embeddings.{i}.weight"].detach().double().numpy()
              for i in range(len(order))]
    layers = {k: v for k, v in state.items() if k.startswith("layers.")}
    rest = ConfigMLP(sizes, activation)
    load_state(rest, layers, "the MLP weights")
    schema = _schema(names, lists, numeric, tables)
    front = EmbeddingFront(schema, tables, mean, std)
    rows, labels = reference_rows(reference, schema, label_column, config.get("class_names"))
    kind: OutputKind = "regression" if config.get("output_kind") == "regression" else \
        "classification"
    outputs = sizes[-1]
    named = config.get("class_names")
    classes = list(check_class_names(named, "The config's class_names")) if \
        isinstance(named, list) and named else [f"class {i}" for i in range(outputs)]
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
                  "outputs_probabilities": False, "encoded_width": sizes[0]})


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
