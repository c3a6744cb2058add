"""An ONNX pipeline cut in two: the encoding *front* (strings, categories, missing cells ->
numbers) and the differentiable *rest*.

scikit-learn pipelines exported by skl2onnx encode their columns with ``ai.onnx.ml`` operators
(``OneHotEncoder``, ``LabelEncoder`` for ``OrdinalEncoder``, ``CategoryMapper``, ``Imputer``,
string imputation with ``Equal``/``Where``), then ``Concat`` the encoded columns and feed the
model. Strings cannot be torch tensors and a one-hot slot has no gradient with respect to the
string it came from, so the graph is cut at the *first tensor every path to the output passes
through, after every encoding operator* (the ``ColumnTransformer``'s concatenation, in
practice):

- the front (the cut's ancestors) runs on numpy arrays through onnx's reference implementation
  (``onnx.reference.ReferenceEvaluator``: the ONNX-ML semantics as written by the ONNX
  project, strings included), restricted to the encoding operators in :data:`FRONT_OPERATORS`;
- the rest (from the cut to the explained output) is converted by onnx2torch with our
  ``ai.onnx.ml`` converters (:mod:`.onnx_ml`), so IG runs in the encoded space.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from attribution_core.models.onnx_ml import ML_ALIAS, ML_DOMAIN
from attribution_core.models.spec import ModelLoadError

TENSOR_FLOAT, TENSOR_INT32, TENSOR_INT64, TENSOR_STRING, TENSOR_DOUBLE = 1, 6, 7, 8, 11
FLOAT_TYPES = {TENSOR_FLOAT: np.float32, TENSOR_DOUBLE: np.float64}
INT_TYPES = {TENSOR_INT64: np.int64, TENSOR_INT32: np.int32}
# Operators that only encode: their output has no useful gradient (or no gradient at all).
ENCODING_OPERATORS = frozenset({"OneHotEncoder", "LabelEncoder", "CategoryMapper", "Imputer",
                                "DictVectorizer", "Binarizer"})
# What the front may contain: encoders and cheap shape / elementwise operators. Anything else
# in front of the cut is refused by name (the front runs in numpy on every explained row).
FRONT_OPERATORS = ENCODING_OPERATORS | frozenset({
    "Scaler", "Normalizer", "FeatureVectorizer", "ArrayFeatureExtractor", "Cast", "CastLike",
    "Concat", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Gather", "Slice",
    "Shape", "Where", "Equal", "IsNaN", "IsInf", "Not", "And", "Or", "Sub", "Add", "Mul",
    "Div", "Constant", "Clip", "Max", "Min", "Abs", "Neg", "Transpose", "StringNormalizer",
    "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Sqrt"})
MAX_SPLIT_NODES = 5_000  # the cut search is quadratic in the nodes; pipelines have dozens


@dataclass(frozen=True)
class GraphInput:
    name: str
    elem_type: int
    rank: int
    width: int | None  # the last dimension when fixed


@dataclass(frozen=True)
class GraphSplit:
    """The front (graph inputs -> ``cut``) and the rest (``cut`` -> ``output``) as ONNX models;
    the rest's domain is renamed for onnx2torch (see :mod:`.onnx_ml`)."""

    front: Any
    rest: Any
    cut: str
    inputs: tuple[GraphInput, ...]


def needs_front(model: Any) -> bool:
    """Whether the graph encodes its columns (non-float inputs or encoding operators)."""
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name not in initializers and _elem_type(value) not in FLOAT_TYPES:
            return True
    return any(node.op_type in ENCODING_OPERATORS for node in model.graph.node)


def _elem_type(value: Any) -> int:
    return int(value.type.tensor_type.elem_type) if value.type.HasField("tensor_type") else 0


def graph_inputs(model: Any) -> tuple[GraphInput, ...]:
    initializers = {t.name for t in model.graph.initializer}
    found = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        last = int(dims[-1].dim_value) if len(dims) >= 2 and dims[-1].dim_value > 0 else None
        found.append(GraphInput(value.name, _elem_type(value), len(dims),
                                1 if len(dims) == 1 else last))
    return tuple(found)


def ancestors(model: Any, target: str, stop: str | None = None) -> tuple[list[Any], set[str]]:
    """Nodes needed for ``target`` (in graph order; ``stop`` counts as given) and the graph
    inputs they read."""
    producers = {out: node for node in model.graph.node for out in node.output}
    needed: set[int] = set()
    reached: set[str] = set()
    wanted = [target]
    while wanted:
        name = wanted.pop()
        if name == stop:
            continue
        node = producers.get(name)
        if node is None:
            reached.add(name)
            continue
        if id(node) in needed:
            continue
        needed.add(id(node))
        wanted.extend(value for value in node.input if value)
        for attribute in node.attribute:  # If/Loop bodies: refused in the front anyway
            if attribute.type == attribute.GRAPH:
                raise ModelLoadError(f"The pipeline uses {node.op_type} with a subgraph, "
                                     "which cannot be split into encoding and model.")
    return [node for node in model.graph.node if id(node) in needed], reached


def find_cut(model: Any, output: str) -> str:
    """The earliest floating-point tensor on every path from the inputs to ``output`` that
    comes after every encoding operator (and after every node reading a non-float input)."""
    from onnx import shape_inference

    if len(model.graph.node) > MAX_SPLIT_NODES:
        raise ModelLoadError(f"The pipeline has {len(model.graph.node):,} nodes; at most "
                             f"{MAX_SPLIT_NODES:,} are split into encoding and model.")
    try:
        typed = shape_inference.infer_shapes(model)
        types = {v.name: _elem_type(v) for v in [*typed.graph.value_info, *typed.graph.output]}
    except Exception:  # inference is a help, not a requirement: unknown types are tried
        types = {}
    nodes, _ = ancestors(model, output)
    inputs = {g.name for g in graph_inputs(model)}
    non_float = {g.name for g in graph_inputs(model) if g.elem_type not in FLOAT_TYPES}
    front_only = {id(n) for n in nodes if n.op_type in ENCODING_OPERATORS or
                  any(i in non_float for i in n.input)}
    for node in nodes:
        for candidate in node.output:
            if types.get(candidate, 0) not in (0, *FLOAT_TYPES):
                continue  # an integer code or a string: no gradient can start there
            _, reached = ancestors(model, output, stop=candidate)
            if reached & inputs:
                continue  # some path to the output goes around the candidate
            upstream, _ = ancestors(model, candidate)
            if front_only <= {id(n) for n in upstream}:
                return candidate
    raise ModelLoadError("The pipeline's encoding steps could not be separated from its model: "
                         "no single tensor joins the encoded columns before the model.")


def split_graph(model: Any, output: str, cut: str | None = None) -> GraphSplit:
    """Cut ``model`` (with ``output`` the explained tensor) into front and rest, at ``cut``
    when the graph's check (in the sandbox) found it already, else where :func:`find_cut`
    finds it."""
    from onnx import helper

    if cut is None:
        cut = find_cut(model, output)
    elif cut not in {name for node in model.graph.node for name in node.output}:
        raise ModelLoadError("The pipeline's check named a cut the graph does not compute.")
    front_nodes, _ = ancestors(model, cut)
    foreign = sorted({n.op_type for n in front_nodes if n.op_type not in FRONT_OPERATORS})
    if foreign:
        raise ModelLoadError(f"The pipeline's encoding part uses {', '.join(foreign)}, which "
                             "this dashboard does not run; supported there: "
                             f"{', '.join(sorted(ENCODING_OPERATORS))} and shape operators.")
    rest_nodes, _ = ancestors(model, output, stop=cut)
    inputs = graph_inputs(model)
    read = {i for n in front_nodes for i in n.input}
    front_inputs = [v for v in model.graph.input if v.name in read and
                    v.name in {g.name for g in inputs}]
    front = _model(model, front_nodes, front_inputs,
                   [helper.make_tensor_value_info(cut, 0, None)], rename=False)
    rest = _model(model, rest_nodes, [], [], rename=True)  # inputs and output set by caller
    return GraphSplit(front, rest, cut, tuple(g for g in inputs if g.name in read))


def rest_model(split: GraphSplit, model: Any, output: str, cut_type: int, width: int) -> Any:
    """The rest as a standalone ONNX model over ``cut`` ``[N, width]`` of ``cut_type``."""
    from onnx import helper

    declared = {value.name: value for value in model.graph.output}
    result = declared.get(output) or helper.make_tensor_value_info(output, TENSOR_FLOAT, None)
    graph = split.rest.graph
    del graph.input[:]
    del graph.output[:]
    graph.input.append(helper.make_tensor_value_info(split.cut, cut_type, [None, width]))
    graph.output.append(result)
    return split.rest


def _model(model: Any, nodes: Sequence[Any], inputs: Sequence[Any], outputs: Sequence[Any],
           rename: bool) -> Any:
    from onnx import helper

    copies = []
    for node in nodes:
        domain = ML_ALIAS if rename and node.domain == ML_DOMAIN else node.domain
        copy = helper.make_node(node.op_type, list(node.input), list(node.output),
                                name=node.name, domain=domain)
        copy.attribute.extend(node.attribute)
        copies.append(copy)
    used = {value for node in nodes for value in node.input}
    graph = helper.make_graph(copies, model.graph.name or "graph", list(inputs), list(outputs),
                              initializer=[t for t in model.graph.initializer if t.name in used])
    opsets = [helper.make_opsetid(ML_ALIAS if rename and o.domain == ML_DOMAIN else o.domain,
                                  o.version) for o in model.opset_import]
    made = helper.make_model(graph, opset_imports=opsets)
    made.ir_version = model.ir_version
    return made


class FrontEvaluator:
    """The front as a function of numpy feeds (one array per graph input it reads) -> the
    encoded rows ``[R, E]`` float64. Raises :class:`ValueError` when the front refuses the
    rows (an unknown category with ``handle_unknown='error'``, a malformed value)."""

    def __init__(self, front: Any, inputs: Sequence[GraphInput]) -> None:
        from onnx.reference import ReferenceEvaluator

        self.inputs = tuple(inputs)
        self._lock = threading.Lock()  # one evaluator object, sessions' threads take turns
        try:
            self._evaluator = ReferenceEvaluator(front)
        except Exception as error:
            raise ModelLoadError(f"The pipeline's encoding part cannot be run "
                                 f"({type(error).__name__}: {error}).") from error

    def raw(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The cut tensor as the front computes it ``[R, ...]`` (its own dtype)."""
        try:
            with self._lock:
                (out,) = self._evaluator.run(None, feeds)
        except Exception as error:  # the reference operators raise many kinds
            raise ValueError(f"{type(error).__name__}: {error}") from error
        array = np.asarray(out)
        if array.dtype.kind not in "fiub":
            raise ValueError(f"the encoded rows are {array.dtype}, not numbers")
        return array

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        array = self.raw(feeds)
        return array.reshape(array.shape[0], -1).astype(np.float64)
