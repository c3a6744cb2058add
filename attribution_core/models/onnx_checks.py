"""Static checks of an uploaded ONNX graph, before it is converted or run.

- **Its own bytes only.** ONNX lets a tensor say its data lives in another file (``data_location
  = EXTERNAL``, a ``location`` relative to the model's folder); ``onnx.numpy_helper.to_array``
  then reads that file from the working directory, so a crafted upload could read the server's
  files (``.streamlit/secrets.toml`` came back as class names). Every tensor of every graph and
  subgraph is checked first, and any external reference is refused with one message that never
  depends on the path (no existence or size oracle). Nothing here touches the file system.
- **Sizes before allocation.** Node and tensor counts, subgraph depth, each tensor's declared
  elements against the bytes it carries, the declared inputs, and (with ONNX shape inference,
  batch 1) every tensor the graph computes from constants (``ConstantOfShape``, ``Expand``,
  ``Tile``, ``Range``, ``Resize``, ...) and the multiply-adds of its matrix products and
  convolutions, against the named limits of :mod:`attribution_core.limits`.

What only running can tell (time, memory of shapes known at run time) is bounded by the
sandbox (:mod:`.sandbox`). No Streamlit; refusals are one-line :class:`ModelLoadError` s.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from attribution_core import limits
from attribution_core.models.spec import ModelLoadError

EXTERNAL = 1  # onnx.TensorProto.EXTERNAL
SUB_BYTE_TYPES = {21, 22, 23, 25, 26}  # 4- and 2-bit types: packed, checked by count only
ENCODER_LISTS = ("cats_strings", "keys_strings", "cats_int64s", "keys_int64s")
EXTERNAL_MESSAGE = (
    "The ONNX model keeps tensor data in external files; this server reads nothing but the "
    "uploaded file. Save it with the weights inside: onnx.save_model(model, path, "
    "save_as_external_data=False).")


def _graphs(graph: Any, depth: int = 1) -> Iterator[tuple[Any, int]]:
    """``graph`` and every subgraph (If / Loop / Scan bodies), with their nesting depth."""
    yield graph, depth
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g, depth + 1)
            for sub in attribute.graphs:
                yield from _graphs(sub, depth + 1)


def _all_graphs(model: Any) -> Iterator[tuple[Any, int]]:
    """The main graph, its subgraphs, and the model's local functions (a function is a list of
    nodes, walked like a graph), with their nesting depth."""
    yield from _graphs(model.graph)
    for function in model.functions:
        yield from _graphs(function, 2)


def _tensors(graph: Any) -> Iterator[tuple[Any, str]]:
    """Every tensor one graph (or function) carries, not its subgraphs', with where it sits."""
    for tensor in getattr(graph, "initializer", ()):
        yield tensor, f"initializer {tensor.name!r}"
    for sparse in getattr(graph, "sparse_initializer", ()):
        yield sparse.values, f"sparse initializer {sparse.values.name!r}"
        yield sparse.indices, f"sparse initializer {sparse.values.name!r}"
    for node in graph.node:
        for attribute in node.attribute:
            where = f"node {node.name or node.op_type!r}"
            if attribute.HasField("t"):
                yield attribute.t, where
            for tensor in attribute.tensors:
                yield tensor, where
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values, where
                yield attribute.sparse_tensor.indices, where
            for sparse in attribute.sparse_tensors:
                yield sparse.values, where
                yield sparse.indices, where


def check_own_bytes(model: Any) -> None:
    """Refuse any tensor whose data would be read from another file (the message is the same
    whatever the path says, and nothing is looked up)."""
    for graph, _ in _all_graphs(model):
        for tensor, _where in _tensors(graph):
            if tensor.data_location == EXTERNAL or len(tensor.external_data) > 0:
                raise ModelLoadError(EXTERNAL_MESSAGE)


def check_declared_sizes(model: Any) -> None:
    """Counts, depth and every carried tensor's size against the bytes it holds."""
    from onnx import helper

    nodes = tensors = 0
    for graph, depth in _all_graphs(model):
        if depth > limits.MAX_ONNX_GRAPH_DEPTH:
            raise ModelLoadError(f"The ONNX model nests subgraphs {depth} deep; at most "
                                 f"{limits.MAX_ONNX_GRAPH_DEPTH} levels are accepted.")
        nodes += len(graph.node)
        if nodes > limits.MAX_ONNX_NODES:
            raise ModelLoadError(f"The ONNX model has more than {limits.MAX_ONNX_NODES:,} "
                                 "nodes; this server converts graphs up to that size.")
        for tensor, where in _tensors(graph):
            tensors += 1
            if tensors > limits.MAX_ONNX_TENSORS:
                raise ModelLoadError(f"The ONNX model holds more than "
                                     f"{limits.MAX_ONNX_TENSORS:,} tensors; at most that many "
                                     "are accepted.")
            if tensor.data_location == EXTERNAL or len(tensor.external_data) > 0:
                raise ModelLoadError(EXTERNAL_MESSAGE)
            _check_payload(tensor, where, helper)
    check_encoder_lists(model)


def check_encoder_lists(model: Any) -> None:
    """The categories an encoding operator lists (``OneHotEncoder``, ``LabelEncoder``,
    ``CategoryMapper``): counted before any is decoded, and bounded like class names (they
    become a column's choices and its slots' names)."""
    from attribution_core.models.upload_checks import check_category_names

    strings: list[bytes] = []
    for graph, _ in _all_graphs(model):
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.name not in ENCODER_LISTS:
                    continue
                count = len(attribute.strings) + len(attribute.ints)
                if count > limits.MAX_ENCODER_CATEGORIES:
                    raise ModelLoadError(
                        f"The ONNX model's {node.op_type} lists {count:,} categories; at most "
                        f"{limits.MAX_ENCODER_CATEGORIES:,} per encoder are accepted (and "
                        f"{limits.MAX_COLUMN_CATEGORIES:,} per column).")
                strings.extend(attribute.strings)
    check_category_names(strings, "The ONNX model's encoders", len(strings))


def _check_payload(tensor: Any, where: str, helper: Any) -> None:
    dims = list(tensor.dims)
    if len(dims) > limits.MAX_TENSOR_RANK or any(d < 0 for d in dims):
        raise ModelLoadError(f"The ONNX model's {where} has the invalid shape {dims[:9]}.")
    elements = math.prod(dims)
    if tensor.HasField("segment"):
        raise ModelLoadError(f"The ONNX model's {where} is stored in segments, which this "
                             "server does not read.")
    kind = int(tensor.data_type)
    if kind == 8:  # strings: one entry per element
        carried = len(tensor.string_data)
    elif kind in SUB_BYTE_TYPES:
        return
    else:
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(kind).itemsize
            field = helper.tensor_dtype_to_field(kind)
        except (KeyError, ValueError, TypeError) as error:
            raise ModelLoadError(f"The ONNX model's {where} has the unknown element type "
                                 f"{kind}.") from error
        if tensor.raw_data:
            if len(tensor.raw_data) != elements * itemsize:
                raise ModelLoadError(
                    f"The ONNX model's {where} declares shape {dims} ({elements:,} elements) "
                    f"but carries {len(tensor.raw_data):,} bytes.")
            return
        carried = len(getattr(tensor, field))
        if kind in (14, 15):  # complex: two numbers per element
            carried //= 2
    if carried != elements:
        raise ModelLoadError(f"The ONNX model's {where} declares shape {dims} ({elements:,} "
                             f"elements) but carries {carried:,}.")


def static_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Every value whose shape ONNX shape inference can fix for one row (batch 1): graph inputs
    with their first dimension set to 1, initializers, and what inference derives, constants
    propagated through Shape / Gather / Concat (``data_prop``)."""
    import onnx
    from onnx import shape_inference

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    initializers = {t.name for t in copy.graph.initializer}
    for value in copy.graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 0:
            dims[0].Clear()
            dims[0].dim_value = 1
    try:
        inferred = shape_inference.infer_shapes(copy, check_type=False, strict_mode=False,
                                                data_prop=True)
    except Exception:  # inference is a help, not a gate: unknown shapes are left to the run
        inferred = copy
    shapes: dict[str, tuple[int, ...]] = {t.name: tuple(int(d) for d in t.dims)
                                          for t in inferred.graph.initializer}
    graph = inferred.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if not value.type.HasField("tensor_type"):
            continue
        shape = value.type.tensor_type.shape
        if not value.type.tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in shape.dim]
        if all(d >= 0 for d in dims):
            shapes.setdefault(value.name, tuple(dims))
    return shapes


def check_computed_sizes(model: Any, shapes: dict[str, tuple[int, ...]]) -> int:
    """Refuse a graph that computes, for one row, a tensor above
    :data:`~attribution_core.limits.MAX_COMPUTED_ELEMENTS` or more multiply-adds than
    :data:`~attribution_core.limits.MAX_MODEL_FORWARD_FLOPS` allows; returns the FLOPs counted
    (matrix products and convolutions whose shapes are known)."""
    carried = {t.name for t in model.graph.initializer}
    for name, shape in shapes.items():
        elements = math.prod(shape)
        if name not in carried and elements > limits.MAX_COMPUTED_ELEMENTS:
            raise ModelLoadError(
                f"The ONNX model computes a tensor of shape {list(shape)} ({elements:,} "
                f"elements) for a single input; at most {limits.MAX_COMPUTED_ELEMENTS:,} are "
                "accepted.")
    flops = 0
    for node in model.graph.node:
        flops += _node_flops(node, shapes)
        if flops > limits.MAX_MODEL_FORWARD_FLOPS:
            raise ModelLoadError(
                f"The ONNX model needs more than {limits.MAX_MODEL_FORWARD_FLOPS / 1e9:,.0f} "
                "GFLOP for a single input (counted from its matrix products and "
                "convolutions); this server explains models up to that cost.")
    return flops


def _node_flops(node: Any, shapes: dict[str, tuple[int, ...]]) -> int:
    inputs = [shapes.get(name) for name in node.input]
    output = shapes.get(node.output[0]) if node.output else None
    if node.op_type in ("MatMul", "Gemm") and len(inputs) >= 2 and inputs[0] and output:
        # out [..., m, n] = a [..., m, k] @ b [..., k, n]: 2 m n k per output batch
        width = inputs[0][-1] if node.op_type == "MatMul" or not _transposed(node, "transA") \
            else inputs[0][0]
        return 2 * math.prod(output) * int(width)
    if node.op_type == "Conv" and len(inputs) >= 2 and inputs[1] and output:
        return 2 * math.prod(output) * math.prod(inputs[1][1:])
    if node.op_type == "ConvTranspose" and len(inputs) >= 2 and inputs[0] and inputs[1]:
        return 2 * math.prod(inputs[0]) * math.prod(inputs[1][1:])
    return 0


def _transposed(node: Any, name: str) -> bool:
    return any(a.name == name and a.i for a in node.attribute)


def check_inputs(inputs: list[Any], modality: str) -> None:
    """The declared inputs of one row against the page's limits: a table's width, an image's
    channels and sides (a graph declaring 1x3x12000x12000 would make its trial input 1.7 GB)."""
    if modality == "tabular":
        if len(inputs) > limits.MAX_MODEL_FEATURES:
            raise ModelLoadError(f"The ONNX model takes {len(inputs):,} inputs (one per "
                                 f"feature); at most {limits.MAX_MODEL_FEATURES:,} features "
                                 "are accepted.")
        if len(inputs) == 1:
            row = [d.dim_value for d in _dims(inputs[0])[1:] if d.dim_value > 0]
            if math.prod(row) > limits.MAX_MODEL_FEATURES:
                raise ModelLoadError(f"The ONNX model takes rows of {math.prod(row):,} values; "
                                     f"at most {limits.MAX_MODEL_FEATURES:,} features are "
                                     "accepted.")
        return
    dims = _dims(inputs[0]) if inputs else []
    if len(dims) == 4:
        channels, height, width = (d.dim_value for d in dims[1:])
        if channels > limits.MAX_IMAGE_MODEL_CHANNELS or max(height, width) > \
                limits.MAX_IMAGE_MODEL_SIDE:
            raise ModelLoadError(
                f"The ONNX model takes {channels}x{height}x{width} images; at most "
                f"{limits.MAX_IMAGE_MODEL_CHANNELS} channels and "
                f"{limits.MAX_IMAGE_MODEL_SIDE:,} pixels a side are accepted.")


def _dims(value: Any) -> list[Any]:
    if not value.type.HasField("tensor_type"):
        return []
    return list(value.type.tensor_type.shape.dim)
