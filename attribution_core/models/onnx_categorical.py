"""ONNX pipelines with categorical columns and missing values (scikit-learn ``ColumnTransformer``
with ``OneHotEncoder``, ``OrdinalEncoder``, ``SimpleImputer``, ``StandardScaler`` ... exported
by skl2onnx) as models explained in their encoded space, folded back per original column.

The graph is cut by :mod:`.onnx_split`. What each column is (its categories in the encoder's
order, what an empty cell and an unknown category become, which encoded slots it owns) is
*measured* on the front rather than read from operator attributes one exporter at a time: the
front is run on reference rows with one column changed at a time (to each category any encoder
names, an empty cell, a string no encoder knows, a few numbers). Slots that move with a column
belong to it; a slot that moves with two columns is refused (its attribution could not be given
to one column). The reference CSV is required when a column is categorical: its rows show the
front valid values and give the baselines (the most frequent category).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from attribution_core.identity import upload_digest
from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.models.encoded_tabular import encoded_tabular_spec, reference_rows
from attribution_core.models.onnx_probe import ColumnFeed, OnnxRowEncoder, measure_schema
from attribution_core.models.onnx_split import (
    FLOAT_TYPES,
    INT_TYPES,
    TENSOR_DOUBLE,
    TENSOR_FLOAT,
    TENSOR_STRING,
    FrontEvaluator,
    GraphInput,
    ancestors,
    graph_inputs,
    needs_front,
    rest_model,
    split_graph,
)
from attribution_core.models.onnx_trial import out_of_memory, output_width
from attribution_core.models.spec import ModelLoadError, ModelSpec, OutputKind

MAX_BASE_ROWS = 3
ENCODER_LISTS = ("cats_strings", "keys_strings", "cats_int64s", "keys_int64s")


def column_feeds(inputs: Sequence[GraphInput], names: Sequence[str]) -> list[ColumnFeed]:
    def kind(elem: int) -> tuple[str, Any]:
        if elem in FLOAT_TYPES:
            return "float", FLOAT_TYPES[elem]
        if elem in INT_TYPES:
            return "int", INT_TYPES[elem]
        if elem == TENSOR_STRING:
            return "string", object
        raise ModelLoadError(f"A pipeline input has element type {elem}; numbers and "
                             "strings are supported.")

    if len(inputs) == 1 and (inputs[0].width or 1) > 1:
        what, dtype = kind(inputs[0].elem_type)
        return [ColumnFeed(n, what, dtype, 0, p) for p, n in enumerate(names)]
    wide = [g.name for g in inputs if (g.width or 1) > 1]
    if wide:
        raise ModelLoadError(f"Input(s) {', '.join(wide)} hold several columns next to other "
                             "inputs: export one input per column, or one input for all.")
    return [ColumnFeed(n, *kind(g.elem_type), i, None) for i, (g, n) in
            enumerate(zip(inputs, names, strict=True))]


def _column_names(model: Any, inputs: Sequence[GraphInput], header: Sequence[str] | None
                  ) -> tuple[str, ...]:
    from attribution_core.models.onnx_models import _model_feature_names

    if len(inputs) > 1:
        return tuple(g.name for g in inputs)
    named = _model_feature_names(model, inputs)
    width = inputs[0].width
    for candidate in (named, header):
        if candidate and (width is None or len(candidate) == width):
            return tuple(str(n) for n in candidate)
    if width:
        return tuple(f"x{i}" for i in range(width))
    raise ModelLoadError("The pipeline does not name its columns: upload a reference CSV whose "
                         "header names them.")


def _lenient(feed: ColumnFeed, cell: object) -> object | None:
    """A reference cell as the front's value before any schema: None when unusable."""
    text = str(cell).strip()
    if text.lower() in cat_io.MISSING_WORDS:
        return None
    if feed.kind == "string":
        return text
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or (feed.kind == "int" and not number.is_integer()):
        return None
    return int(number) if feed.kind == "int" else number


def _encoder_lists(model: Any, feeds: Sequence[ColumnFeed]) -> list[list[list[object]]]:
    """Per column, the category lists of the encoders its graph input reaches (every list for
    a column that shares one input with others)."""
    from onnx import helper

    found: list[tuple[list[object], set[str]]] = []
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in ENCODER_LISTS:
                values = helper.get_attribute_value(attribute)
                _, reached = ancestors(model, node.output[0])
                found.append(([v.decode() if isinstance(v, bytes) else int(v) for v in values],
                              reached))
    inputs = [g.name for g in graph_inputs(model)]
    per_column = []
    for feed in feeds:
        name = inputs[feed.input_index] if feed.position is None else None
        per_column.append([values for values, reached in found
                           if name is None or name in reached])
    return per_column


def _base_rows(encoder: OnnxRowEncoder, usable: list[list[object]]) -> list[list[object]]:
    """Up to :data:`MAX_BASE_ROWS` reference rows the front accepts."""
    chosen: list[list[object]] = []
    for row in usable[:50]:
        cells = [np.array([v], dtype=object) for v in row]
        try:
            encoded = encoder.encode_cells(cells)
        except ValueError:
            continue
        if np.isfinite(encoded).all():
            chosen.append(row)
        if len(chosen) == MAX_BASE_ROWS:
            break
    return chosen


def categorical_onnx_spec(data: bytes, file_name: str, *, reference: pd.DataFrame | None,
                          label_column: str | None = None,
                          class_names: Sequence[str] | None = None) -> ModelSpec | None:
    """The spec of an ONNX pipeline that encodes its columns, or None when the graph takes
    plain numbers only (the caller then converts it whole). ``reference``: the reference CSV
    as text cells (``label_column`` holds labels).

    The graph is checked from what it declares first (:func:`.onnx_models.parse_onnx`: its own
    bytes only, counts, sizes, names, the encoders' categories); it is then split, probed,
    converted and run once in the sandbox (:mod:`.categorical_trial`, a child with a time and
    memory budget), and this process builds the spec from the cut and the columns the check
    measured: it never probes the front itself, and runs it on at most
    :data:`~.onnx_probe.PROBE_CHUNK` rows at a time, as the check did."""
    from attribution_core.models import onnx_models as plain
    from attribution_core.models.categorical_trial import tried
    from attribution_core.models.uploads import check_model_upload_size

    check_model_upload_size(len(data), file_name)
    model = plain.parse_onnx(data)
    if not encodes(model):
        return None
    measured = tried(data, reference, label_column)
    return build_categorical(model, data, file_name, reference=reference,
                             label_column=label_column, class_names=class_names,
                             measured=measured).spec


def encodes(model: Any) -> bool:
    """Whether a parsed graph is explained after its encoding: it encodes its columns and is
    no tree ensemble (the whole-graph path refuses those with the reason)."""
    from attribution_core.models.onnx_models import TREE_OPERATORS

    return needs_front(model) and not any(n.op_type in TREE_OPERATORS
                                          for n in model.graph.node)


@dataclass(frozen=True)
class CategoricalBuild:
    """A built pipeline: its spec, and what the check reports back (the cut, its type, the
    measured columns) or runs (the rest, the front, the reference rows)."""

    spec: ModelSpec
    rest: nn.Module
    encoder: OnnxRowEncoder
    cut: str
    cut_double: bool
    rows: np.ndarray | None


def build_categorical(model: Any, data: bytes, file_name: str, *,
                      reference: pd.DataFrame | None, label_column: str | None = None,
                      class_names: Sequence[str] | None = None,
                      measured: Mapping[str, Any] | None) -> CategoricalBuild:
    """Split, (probe,) convert and build a parsed pipeline. ``measured``: what the check found
    (the cut, ``cut_double``, the schema, its trial's price); None only in the check itself,
    which then finds the cut, probes the front and sizes the rest before converting it."""
    import torch

    from attribution_core.models import onnx_models as plain
    from attribution_core.models.categorical_trial import schema_from_json

    output, classifier = plain._explained_output(model)
    split = split_graph(model, output, None if measured is None else str(measured["cut"]))
    header = None if reference is None else [str(c).strip() for c in reference.columns
                                             if str(c).strip() != label_column]
    names = _column_names(model, split.inputs, header)
    feeds = column_feeds(split.inputs, names)
    encoder = OnnxRowEncoder(FrontEvaluator(split.front, split.inputs), feeds)
    frame = _reference_frame(reference, names)
    if measured is None:
        schema, cut_double = _measured_schema(model, encoder, feeds, frame)
    else:
        schema, cut_double = schema_from_json(measured["schema"], names), \
            bool(measured["cut_double"])
    encoder.schema = schema
    rows, labels = reference_rows(reference, schema, label_column,
                                  plain._class_labels(model) if classifier else None)
    rest = _converted_rest(split, model, output, schema.width, cut_double,
                           check_sizes=measured is None)
    width_out = output_width(rest, torch.zeros(1, schema.width), "The model after the encoding")
    regression = not classifier and width_out == 1
    kind: OutputKind = "regression" if regression else "classification"
    classes = class_names or (plain._class_labels(model) if classifier else None)
    if not regression and (classes is None or len(classes) != width_out):
        classes = [f"class {i}" for i in range(width_out)]
    digest = upload_digest(data, class_names=class_names, reference=rows, labels=labels)
    n_categorical = len(schema.categorical)
    spec = encoded_tabular_spec(
        f"upload:onnx:{digest[:12]}", rest, encoder,
        class_names=None if regression else classes, output_kind=kind,
        title=f"Your ONNX pipeline ({file_name})",
        description=f"Uploaded ONNX pipeline (upload sha256 {digest[:12]}…): {len(schema.columns)} "
                    f"columns ({n_categorical} categorical) encoded into {schema.width} "
                    "slots before the model; attributions are summed per column"
                    + ("; it outputs probabilities." if classifier else "."),
        reference=rows, labels=labels, weights_sha256=digest,
        metadata={"file": file_name, "format": "ONNX pipeline",
                  "outputs_probabilities": bool(classifier), "encoded_width": schema.width,
                  **plain._measured(measured)})
    return CategoricalBuild(spec, rest, encoder, split.cut, cut_double, rows)


def _reference_frame(reference: pd.DataFrame | None, names: Sequence[str]
                     ) -> pd.DataFrame | None:
    """The reference CSV with its headers stripped, refused when it lacks a model column."""
    if reference is None:
        return None
    frame = reference.set_axis([str(c).strip() for c in reference.columns], axis=1)
    lacking = [n for n in names if n not in frame.columns]
    if lacking:
        raise ModelLoadError(f"The reference CSV lacks the model's column(s) "
                             f"{', '.join(map(repr, lacking[:10]))}.")
    return frame


def _converted_rest(split: Any, model: Any, output: str, width: int, cut_double: bool, *,
                    check_sizes: bool) -> nn.Module:
    """The graph after the cut, for rows of ``width`` encoded values, converted to PyTorch.
    ``check_sizes`` (the check's own run): every tensor it computes is sized for one row
    before it is converted; the dashboard's process converts only what the check ran."""
    import torch
    from onnx2torch import convert

    from attribution_core.models import onnx_models as plain
    from attribution_core.models.onnx_checks import check_computed_sizes, static_shapes
    from attribution_core.models.onnx_ml import register_ml_converters

    rest_onnx = rest_model(split, model, output, TENSOR_DOUBLE if cut_double else TENSOR_FLOAT,
                           width)
    if check_sizes:
        check_computed_sizes(rest_onnx, static_shapes(rest_onnx))
    register_ml_converters()
    try:
        graph = convert(rest_onnx)
    except Exception as error:
        if out_of_memory(error):
            raise
        raise ModelLoadError(f"The model after the encoding could not be converted to "
                             f"PyTorch ({type(error).__name__}: {error}).") from error
    return plain.OnnxTabularModule(graph.eval(), torch.float64 if cut_double else torch.float32,
                                   per_column=False)


def _measured_schema(model: Any, encoder: OnnxRowEncoder, feeds: Sequence[ColumnFeed],
                     frame: pd.DataFrame | None) -> tuple[cat_io.TabularSchema, bool]:
    """The columns, measured on the front from the reference rows, and whether the cut is
    float64 (the check's own work: it runs the front many times)."""
    observed: list[list[object]] = [[] for _ in feeds]
    usable: list[list[object]] = []
    if frame is not None:
        observed = [[_lenient(f, c) for c in frame[f.name].tolist()] for f in feeds]
        usable = [list(row) for row in zip(*observed, strict=True) if None not in row]
    has_categories = any(f.kind != "float" for f in feeds)
    if not usable and not has_categories:
        usable = [[0.0] * len(feeds)]
    if not usable:
        raise ModelLoadError("A pipeline with categorical columns needs the reference CSV "
                             "(rows with every column filled in): its rows show valid values "
                             "and give the baselines, such as the most frequent category.")
    base = _base_rows(encoder, usable)
    if not base:
        raise ModelLoadError("The pipeline refused every complete row of the reference CSV.")
    schema = measure_schema(encoder, _encoder_lists(model, feeds), observed, base)
    cut_dtype = encoder.cut_dtype([np.array([v], dtype=object) for v in base[0]])
    return schema, cut_dtype == np.float64
