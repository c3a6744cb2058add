"""Hostile model uploads, crafted in memory: each is small, and each once read a server file,
allocated gigabytes before any check, burnt CPU at load, bypassed a name limit or crashed a
page (issue 24). Shared by the unit tests, the page tests, the browser test and
``benchmarks/hostile_uploads.py``.

ONNX graphs are written with ``onnx.helper`` (no exporter), safetensors files by hand (a header
and bytes), so a file can declare what no exporter would write.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

FLOAT, INT64, UINT8, STRING = 1, 7, 2, 8  # onnx.TensorProto element types
SECRET_PATH = ".streamlit/secrets.toml"


# -- safetensors --------------------------------------------------------------------------------


def safetensors_file(tensors: dict[str, tuple[str, Sequence[int], bytes]],
                     header: Any = None) -> bytes:
    """A safetensors file from ``name: (dtype, shape, bytes)``; ``header`` replaces the JSON
    header verbatim when given (any JSON value, or raw bytes)."""
    if header is None:
        described, offset, blobs = {}, 0, []
        for name, (dtype, shape, blob) in tensors.items():
            described[name] = {"dtype": dtype, "shape": list(shape),
                               "data_offsets": [offset, offset + len(blob)]}
            offset += len(blob)
            blobs.append(blob)
        raw = json.dumps(described).encode()
        return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw


def mlp_zero_width() -> bytes:
    """Two layers of shape [20000, 0] (no bytes at all): the old loader sized each Linear by
    the weights' first dimension alone and built Linear(20000, 20000), 1.6 GB, first."""
    return safetensors_file({"layers.0.weight": ("F32", [20000, 0], b""),
                             "layers.2.weight": ("F32", [20000, 0], b"")})


def mlp_unchained(width: int = 20_000) -> bytes:
    """Two [width, 1] layers in float16 (80 KB): the second does not take what the first gives,
    and the old loader built Linear(width, width) from them."""
    column = np.ones((width, 1), dtype=np.float16).tobytes()
    bias = np.zeros(width, dtype=np.float16).tobytes()
    return safetensors_file({"layers.0.weight": ("F16", [width, 1], column),
                             "layers.0.bias": ("F16", [width], bias),
                             "layers.2.weight": ("F16", [width, 1], column),
                             "layers.2.bias": ("F16", [width], bias)})


def mlp_wide_input(width: int = 3_000_000) -> bytes:
    """One Linear(width, 1) in float16 (6 MB): a tabular model of 3 million features."""
    return safetensors_file({
        "layers.0.weight": ("F16", [1, width], np.zeros((1, width), np.float16).tobytes()),
        "layers.0.bias": ("F16", [1], np.zeros(1, np.float16).tobytes())})


def resnet_zero_head(classes: int = 1_000_000) -> bytes:
    """A resnet18 "state dict" whose head is [classes, 0]: the old loader built resnet18 with a
    1,000,000-class head (2 GB) before comparing anything."""
    return safetensors_file({"fc.weight": ("F32", [classes, 0], b"")})


def many_empty_tensors(count: int = 1_000_000) -> bytes:
    """``count`` empty tensors: a 55 MB header the old loader parsed tensor by tensor (23 s)."""
    entries = ",".join(f'"t{i}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'
                       for i in range(count))
    return safetensors_file({}, header=("{" + entries + "}").encode())


def list_header() -> bytes:
    return safetensors_file({}, header=[{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}])


def nested_header(depth: int = 100_000) -> bytes:
    return safetensors_file({}, header=b"[" * depth + b"]" * depth)


# -- ONNX ---------------------------------------------------------------------------------------


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any],
           initializers: Sequence[Any] = (), *, ml: bool = False,
           metadata: dict[str, str] | None = None) -> bytes:
    from onnx import helper

    graph = helper.make_graph(nodes, "hostile", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("ai.onnx.ml", 3)] if ml
                                              else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def _floats(name: str, array: np.ndarray) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _external(tensor: Any, location: str, offset: int | None = None,
              length: int | None = None) -> Any:
    """``tensor`` turned into a reference to ``location`` (its own bytes dropped)."""
    from onnx import TensorProto

    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)
    return tensor


def linear_classifier(features: int = 2, classes: int = 2, *, labels: Any = None,
                      metadata: dict[str, str] | None = None) -> bytes:
    """A skl2onnx-style classifier: probabilities = softmax(x W) and a label through
    ArrayFeatureExtractor(classes, argmax), the classes an initializer (``labels``)."""
    from onnx import TensorProto, helper

    weights = _floats("W", np.linspace(-1, 1, features * classes).reshape(features, classes))
    classes_tensor = labels if labels is not None else helper.make_tensor(
        "classes", INT64, [classes], list(range(classes)))
    nodes = [helper.make_node("MatMul", ["x", "W"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
             helper.make_node("ArgMax", ["probabilities"], ["index"], axis=1, keepdims=0),
             helper.make_node("ArrayFeatureExtractor", ["classes", "index"], ["label"],
                              domain="ai.onnx.ml")]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, [None, features])],
                  [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                   helper.make_tensor_value_info("probabilities", FLOAT, [None, classes])],
                  [weights, classes_tensor], ml=True, metadata=metadata)


def external_classes(classes: int, location: str = SECRET_PATH, offset: int | None = None,
                     length: int | None = None) -> bytes:
    """The classifier above whose class names are ``classes`` bytes "stored" in ``location``:
    the old page read them from the server's working directory and listed them."""
    from onnx import helper

    labels = _external(helper.make_tensor("classes", UINT8, [classes], [0] * classes), location,
                       offset, length)
    return linear_classifier(2, classes, labels=labels)


def external_weights(location: str = SECRET_PATH, where: str = "initializer") -> bytes:
    """A tabular graph y = x W whose W lives in ``location``: as an initializer, inside a
    Constant node, or inside an If branch (a subgraph)."""
    from onnx import helper

    tensor = _external(_floats("W", np.ones((2, 2))), location)
    x = helper.make_tensor_value_info("x", FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", FLOAT, [None, 2])
    if where == "initializer":
        return _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [x], [y], [tensor])
    if where == "constant":
        return _model([helper.make_node("Constant", [], ["W"], value=tensor),
                       helper.make_node("MatMul", ["x", "W"], ["y"])], [x], [y])
    branch = helper.make_graph([helper.make_node("Constant", [], ["Wb"], value=tensor)],
                               "branch", [], [helper.make_tensor_value_info("Wb", FLOAT,
                                                                            [2, 2])])
    flag = helper.make_tensor("flag", 9, [], [1])
    nodes = [helper.make_node("If", ["flag"], ["W"], then_branch=branch, else_branch=branch),
             helper.make_node("MatMul", ["x", "W"], ["y"])]
    return _model(nodes, [x], [y], [flag])


def external_in_function(location: str = SECRET_PATH) -> bytes:
    """y = Scale(x), a model-local function whose Constant weights live in ``location``."""
    from onnx import helper

    tensor = _external(_floats("W", np.ones((2, 2))), location)
    function = helper.make_function(
        "local", "Scale", ["X"], ["Y"],
        [helper.make_node("Constant", [], ["W"], value=tensor),
         helper.make_node("MatMul", ["X", "W"], ["Y"])],
        [helper.make_opsetid("", 17)])
    graph = helper.make_graph([helper.make_node("Scale", ["x"], ["y"], domain="local")],
                              "hostile", [helper.make_tensor_value_info("x", FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("y", FLOAT, [None, 2])])
    model = helper.make_model(graph, functions=[function], opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    model.ir_version = 8
    return model.SerializeToString()


def constant_of_shape(side: int = 20_000) -> bytes:
    """y = x + sum(ones(side, side)): 1.6 GB computed from a 16-byte shape constant."""
    from onnx import helper

    shape = helper.make_tensor("shape", INT64, [2], [side, side])
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"],
                              value=helper.make_tensor("one", FLOAT, [1], [1.0])),
             helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
             helper.make_node("Add", ["x", "total"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, [None, 2])],
                  [helper.make_tensor_value_info("y", FLOAT, [None, 2])], [shape])


def expand_to_huge(side: int = 20_000) -> bytes:
    """The same through Expand of a one-element constant to [side, side]."""
    from onnx import helper

    shape = helper.make_tensor("shape", INT64, [2], [side, side])
    nodes = [helper.make_node("Expand", ["one", "shape"], ["big"]),
             helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
             helper.make_node("Add", ["x", "total"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, [None, 2])],
                  [helper.make_tensor_value_info("y", FLOAT, [None, 2])],
                  [shape, _floats("one", np.ones(1))])


def _scalar_out(nodes: list[Any], initializers: Sequence[Any]) -> bytes:
    """y = x + sum(big): ``nodes`` compute "big" from ``initializers`` (and x's shape)."""
    from onnx import helper

    nodes = [*nodes, helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
             helper.make_node("Add", ["x", "total"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, [None, 2])],
                  [helper.make_tensor_value_info("y", FLOAT, [None, 2])], initializers)


def computed_huge(how: str, side: int = 20_000) -> bytes:
    """A [side, side] tensor (or as many elements) from a few bytes of constants, through Tile,
    Range, Resize, or a shape computed from x's own (Shape, Gather, Mul, Concat)."""
    from onnx import helper

    if how == "tile":
        return _scalar_out([helper.make_node("Tile", ["one", "reps"], ["big"])],
                           [_floats("one", np.ones((1, 1))),
                            helper.make_tensor("reps", INT64, [2], [side, side])])
    if how == "range":
        return _scalar_out([helper.make_node("Range", ["start", "limit", "delta"], ["big"])],
                           [_floats("start", np.zeros(())),
                            _floats("limit", np.full((), float(side) ** 2)),
                            _floats("delta", np.ones(()))])
    if how == "resize":
        return _scalar_out([helper.make_node("Resize", ["one", "", "scales"], ["big"])],
                           [_floats("one", np.ones((1, 1, 2, 2))),
                            _floats("scales", np.array([1.0, 1.0, side / 2, side / 2]))])
    return _scalar_out(
        [helper.make_node("Shape", ["x"], ["shape_x"]),
         helper.make_node("Gather", ["shape_x", "index"], ["width"], axis=0),
         helper.make_node("Mul", ["width", "factor"], ["n"]),
         helper.make_node("Concat", ["n", "n"], ["shape"], axis=0),
         helper.make_node("ConstantOfShape", ["shape"], ["big"],
                          value=helper.make_tensor("v", FLOAT, [1], [1.0]))],
        [helper.make_tensor("index", INT64, [1], [1]),
         helper.make_tensor("factor", INT64, [1], [side // 2])])


def image_input(side: int = 12_000, channels: int = 3) -> bytes:
    """An image graph (global average, then one Linear) declaring a ``side`` x ``side`` input:
    its trial input alone is 1.7 GB."""
    from onnx import helper

    nodes = [helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("MatMul", ["flat", "W"], ["logits"])]
    return _model(nodes, [helper.make_tensor_value_info("pixels", FLOAT,
                                                        [None, channels, side, side])],
                  [helper.make_tensor_value_info("logits", FLOAT, [None, 2])],
                  [_floats("W", np.ones((channels, 2)))])


def wide_input(width: int = 3_000_000) -> bytes:
    """A tabular graph declaring rows of ``width`` values (y = sum of x)."""
    from onnx import helper

    return _model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)],
                  [helper.make_tensor_value_info("x", FLOAT, [None, width])],
                  [helper.make_tensor_value_info("y", FLOAT, [None, 1])],
                  [helper.make_tensor("axes", INT64, [1], [1])])


def self_matmuls(count: int = 500, side: int = 1_000) -> bytes:
    """``count`` chained products m = m @ m of a [side, side] constant built from a shape
    (14 KB): 2 GFLOP each, 25 s of CPU at load on the old page."""
    from onnx import helper

    shape = helper.make_tensor("shape", INT64, [2], [side, side])
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["m0"],
                              value=helper.make_tensor("v", FLOAT, [1], [1e-3]))]
    nodes += [helper.make_node("MatMul", [f"m{i}", f"m{i}"], [f"m{i + 1}"])
              for i in range(count)]
    nodes += [helper.make_node("ReduceSum", [f"m{count}"], ["total"], keepdims=0),
              helper.make_node("Add", ["x", "total"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, [None, 2])],
                  [helper.make_tensor_value_info("y", FLOAT, [None, 2])], [shape])


def dynamic_allocation(side: int = 20_000) -> bytes:
    """A [side, side] tensor whose shape is only known at run time (x's first value, times
    ``side``, through Cast and Concat), so no static check sees it: the trial's memory budget
    must."""
    from onnx import helper

    nodes = [helper.make_node("Abs", ["x"], ["a"]),
             helper.make_node("ReduceMax", ["a"], ["m"], keepdims=0),
             helper.make_node("Add", ["m", "one"], ["m1"]),
             helper.make_node("Mul", ["m1", "side"], ["n"]),
             helper.make_node("Cast", ["n"], ["k"], to=INT64),
             helper.make_node("Reshape", ["k", "flat"], ["k1"]),
             helper.make_node("Concat", ["k1", "k1"], ["shape"], axis=0),
             helper.make_node("ConstantOfShape", ["shape"], ["big"],
                              value=helper.make_tensor("v", FLOAT, [1], [1.0])),
             helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
             helper.make_node("Add", ["x", "total"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, [None, 2])],
                  [helper.make_tensor_value_info("y", FLOAT, [None, 2])],
                  [_floats("one", np.ones(())), _floats("side", np.full((), float(side))),
                   helper.make_tensor("flat", INT64, [1], [1])])


def slow_loop(iterations: int = 10**9) -> bytes:
    """A Loop of ``iterations`` trips over a tiny body: seconds per million, forever here."""
    from onnx import helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "body", [helper.make_tensor_value_info("i", INT64, []),
                 helper.make_tensor_value_info("cond_in", 9, []),
                 helper.make_tensor_value_info("acc_in", FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", 9, []),
         helper.make_tensor_value_info("acc_out", FLOAT, [1])],
        initializer=[_floats("one", np.ones(1))])
    nodes = [helper.make_node("Loop", ["trips", "cond", "zero"], ["acc"], body=body),
             helper.make_node("Add", ["x", "acc"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, [None, 2])],
                  [helper.make_tensor_value_info("y", FLOAT, [None, 2])],
                  [helper.make_tensor("trips", INT64, [], [iterations]),
                   helper.make_tensor("cond", 9, [], [1]), _floats("zero", np.zeros(1))])


def slow_dynamic(count: int = 300, side: int = 1_500) -> bytes:
    """``count`` chained products of a [side, side] matrix whose shape is known only at run
    time (from x, as in :func:`dynamic_allocation`): no static count sees its 2 TFLOP, the
    trial's clock must."""
    from onnx import helper

    nodes = [helper.make_node("Abs", ["x"], ["a"]),
             helper.make_node("ReduceMax", ["a"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["m0"]),
             helper.make_node("Add", ["m0", "side"], ["n"]),
             helper.make_node("Cast", ["n"], ["k"], to=INT64),
             helper.make_node("Reshape", ["k", "flat"], ["k1"]),
             helper.make_node("Concat", ["k1", "k1"], ["shape"], axis=0),
             helper.make_node("ConstantOfShape", ["shape"], ["p0"],
                              value=helper.make_tensor("v", FLOAT, [1], [1e-3]))]
    nodes += [helper.make_node("MatMul", [f"p{i}", f"p{i}"], [f"p{i + 1}"])
              for i in range(count)]
    nodes += [helper.make_node("ReduceSum", [f"p{count}"], ["total"], keepdims=0),
              helper.make_node("Add", ["x", "total"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, [None, 2])],
                  [helper.make_tensor_value_info("y", FLOAT, [None, 2])],
                  [_floats("zero", np.zeros(())), _floats("side", np.full((), float(side))),
                   helper.make_tensor("flat", INT64, [1], [1])])


def many_nodes(count: int = 200_000) -> bytes:
    """``count`` chained Identity nodes (a few MB): conversion time grows with them."""
    from onnx import helper

    nodes = [helper.make_node("Identity", [f"v{i}" if i else "x"], [f"v{i + 1}"])
             for i in range(count)]
    nodes.append(helper.make_node("Identity", [f"v{count}"], ["y"]))
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, [None, 2])],
                  [helper.make_tensor_value_info("y", FLOAT, [None, 2])])


def lying_tensor() -> bytes:
    """An initializer declaring 10^9 elements while carrying 4 bytes."""
    from onnx import TensorProto, helper

    weights = TensorProto(name="W", data_type=FLOAT, dims=[2, 500_000_000], raw_data=b"\0" * 4)
    return _model([helper.make_node("MatMul", ["x", "W"], ["y"])],
                  [helper.make_tensor_value_info("x", FLOAT, [None, 2])],
                  [helper.make_tensor_value_info("y", FLOAT, [None, 500_000_000])], [weights])


def many_class_labels(count: int = 200_000, characters: int = 300) -> bytes:
    """A classifier naming ``count`` classes of ``characters`` each (string initializer)."""
    from onnx import helper

    names = [f"{i:08d}" + "x" * (characters - 8) for i in range(count)]
    labels = helper.make_tensor("classes", STRING, [count], [n.encode() for n in names])
    return linear_classifier(2, count, labels=labels)


def long_class_labels(count: int = 3, characters: int = 300) -> bytes:
    return many_class_labels(count, characters)


def many_feature_names(count: int = 100_000) -> bytes:
    """A graph whose metadata names ``count`` features (and takes rows that wide)."""
    return linear_classifier(count, 2, metadata={
        "feature_names": json.dumps([f"f{i}" for i in range(count)])})


def duplicate_feature_names() -> bytes:
    return linear_classifier(3, 2, metadata={"feature_names": json.dumps(["a", "b", "a"])})


def markup_feature_names() -> bytes:
    """Feature names carrying markup and spreadsheet formulas."""
    return linear_classifier(3, 2, metadata={"feature_names": json.dumps(MARKUP_NAMES)})


MARKUP_NAMES = ['<a href="https://example.com/x">click</a>', "=HYPERLINK(\"http://x\")",
                "@SUM(A1:A2)"]


def batch_sum(keep_shape: bool = False) -> bytes:
    """y = x W summed over the batch: one output row for any number of rows (``keep_shape``:
    y = x W + mean over the batch, as many rows as came in, each mixed with the others)."""
    from onnx import helper

    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]),
             helper.make_node("ReduceMean", ["xw"], ["pooled"], axes=[0], keepdims=1)
             if keep_shape else
             helper.make_node("ReduceSum", ["xw", "axes"], ["pooled"], keepdims=1)]
    nodes.append(helper.make_node("Add", ["xw", "pooled"], ["y"]) if keep_shape else
                 helper.make_node("Identity", ["pooled"], ["y"]))
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, [None, 2])],
                  [helper.make_tensor_value_info("y", FLOAT, [None, 2])],
                  [_floats("W", np.array([[1.0, -1.0], [0.5, 2.0]])),
                   helper.make_tensor("axes", INT64, [1], [0])])


def huge_cell_csv(features: Sequence[str], value: str = "1e308") -> bytes:
    """One row whose first cell is finite in float64 and infinite in float32."""
    cells = [value] + ["0.5"] * (len(features) - 1)
    return (",".join(features) + "\n" + ",".join(cells) + "\n").encode()
