"""Models a user uploads as ONNX files (converted with onnx2torch, so gradients flow; tables
and images) and tabular safetensors MLPs described by a small JSON config.

ONNX: the graph is parsed with ``onnx`` (protobuf, no pickle), cut down to the one float output
that can be explained (a classifier's probabilities; ``ZipMap``'s dictionaries are bypassed for
the tensor they wrap; the label path is dropped), and converted with onnx2torch plus our
``ai.onnx.ml`` converters (:mod:`.onnx_ml`). A tree ensemble is refused with the reason. Feature
names come from the model (``feature_names`` metadata, or one graph input per column) or from the
reference CSV's header; baselines and IG2 references come from the reference rows.

The optional packages (``requirements-onnx.txt``) are imported only here and only when used:
:func:`onnx_support_problem` says in one line what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from torch import nn

from attribution_core import limits
from attribution_core.identity import upload_digest
from attribution_core.models.encoded_tabular import representation_layer
from attribution_core.models.loaders import load_state
from attribution_core.models.onnx_checks import check_declared_sizes, check_inputs, check_own_bytes
from attribution_core.models.onnx_ml import ML_ALIAS, ML_DOMAIN, TREE_OPERATORS
from attribution_core.models.onnx_trial import image_input, out_of_memory, output_width, tried
from attribution_core.models.plugin_specs import build_spec
from attribution_core.models.spec import ModelLoadError, ModelSpec, OutputKind
from attribution_core.models.upload_checks import (
    check_class_count,
    check_class_names,
    check_feature_names,
    mlp_sizes,
    safetensors_header,
)
from attribution_core.models.uploads import check_model_upload_size

TENSOR_FLOAT, TENSOR_DOUBLE = 1, 11  # onnx.TensorProto element types
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
               "identity": nn.Identity}
MAX_CONFIG_BYTES = 1 * 2**20


def onnx_support_problem() -> str | None:
    """Why ONNX models cannot be loaded here (a missing optional package), or None."""
    missing = []
    for package in ("onnx", "onnx2torch"):
        try:
            __import__(package)
        except ImportError:
            missing.append(package)
    if missing:
        return (f"ONNX models need the optional package(s) {', '.join(missing)}, which this "
                "server lacks; its operator can install them with "
                "`pip install -r requirements-onnx.txt`.")
    return None


def _elem_type(value: Any) -> int:
    return int(value.type.tensor_type.elem_type) if value.type.HasField("tensor_type") else 0


def _explained_output(model: Any) -> tuple[str, bool]:
    """The graph output to explain and whether the graph is a classifier (it has a label or a
    ZipMap next to its scores)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    floats: list[str] = []
    classifier = False
    for output in model.graph.output:
        node = producers.get(output.name)
        if node is not None and node.op_type == "ZipMap":
            floats.append(node.input[0])  # the probability tensor the dictionaries wrap
            classifier = True
        elif _elem_type(output) in (TENSOR_FLOAT, TENSOR_DOUBLE):
            floats.append(output.name)
        elif _elem_type(output) != 0:
            classifier = True  # an integer or string label output
    if not floats:
        raise ModelLoadError("The ONNX model has no floating-point output to explain (only "
                             "labels): export it with its scores or probabilities.")
    return floats[-1], classifier


def _class_labels(model: Any) -> tuple[str, ...] | None:
    """The classes a classifier graph names (counted before they are decoded; the tensor
    holding them is the upload's own: external data was refused by :func:`parse_onnx`)."""
    from onnx import helper, numpy_helper

    source = "The ONNX model"
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in ("classlabels_strings", "classlabels_int64s",
                                  "classlabels_ints"):
                check_class_count(len(attribute.strings) + len(attribute.ints), source)
                return check_class_names(helper.get_attribute_value(attribute), source)
    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:  # skl2onnx's MLP: classes[argmax] through this extractor
        if node.op_type == "ArrayFeatureExtractor" and node.input[0] in initializers:
            check_class_count(int(np.prod(initializers[node.input[0]].dims)), source)
            values = numpy_helper.to_array(initializers[node.input[0]]).reshape(-1)
            return check_class_names(values.tolist(), source)
    return None


def _model_feature_names(model: Any, inputs: Sequence[Any]) -> tuple[str, ...] | None:
    source = "The ONNX model"
    for prop in model.metadata_props:
        if prop.key == "feature_names":
            try:
                names = json.loads(prop.value)
            except (json.JSONDecodeError, RecursionError):
                names = prop.value.split(",")
            if not isinstance(names, list):
                names = [names]
            return check_feature_names(names, source)
    if len(inputs) > 1:
        return check_feature_names([value.name for value in inputs], source)
    return None


def _pruned(model: Any, output: str) -> Any:
    """A copy of ``model`` that computes only ``output`` (the label path and ZipMap go), with
    the ``ai.onnx.ml`` domain renamed to :data:`ML_ALIAS` (onnx2torch builds module names from
    the domain and refuses the dots in ``ai.onnx.ml``)."""
    from onnx import helper

    producers = {out: node for node in model.graph.node for out in node.output}
    needed, wanted = set(), [output]
    while wanted:
        name = wanted.pop()
        node = producers.get(name)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        wanted.extend(value for value in node.input if value)
    nodes = []
    for node in model.graph.node:
        if id(node) in needed:
            copy = helper.make_node(node.op_type, list(node.input), list(node.output),
                                    name=node.name, domain=ML_ALIAS if node.domain ==
                                    ML_DOMAIN else node.domain)
            copy.attribute.extend(node.attribute)
            nodes.append(copy)
    used = {value for node in nodes for value in node.input}
    declared = {value.name: value for value in model.graph.output}
    result = declared.get(output) or helper.make_tensor_value_info(output, TENSOR_FLOAT, None)
    graph = helper.make_graph(
        nodes, model.graph.name or "graph", list(model.graph.input), [result],
        initializer=[t for t in model.graph.initializer if t.name in used])
    opsets = [helper.make_opsetid(ML_ALIAS if o.domain == ML_DOMAIN else o.domain, o.version)
              for o in model.opset_import]
    pruned = helper.make_model(graph, opset_imports=opsets)
    pruned.ir_version = model.ir_version
    return pruned


class OnnxTabularModule(nn.Module):
    """``[B, F]`` float32 rows -> ``[B, C]`` float32 outputs through the converted graph: the
    row is cast to the graph's input type and split into columns when the graph takes one input
    per feature; a 1-D output becomes ``[B, 1]``."""

    def __init__(self, graph: nn.Module, dtype: torch.dtype, per_column: bool) -> None:
        super().__init__()
        self.graph = graph
        self.dtype = dtype
        self.per_column = per_column

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cast = x.to(self.dtype)
        out = self.graph(*cast.split(1, dim=1)) if self.per_column else self.graph(cast)
        if isinstance(out, tuple | list):
            out = out[-1]
        out = out.to(torch.float32)
        return out.unsqueeze(-1) if out.dim() == 1 else out.reshape(out.shape[0], -1)


def parse_onnx(data: bytes, modality: str = "tabular") -> Any:
    """The ONNX bytes parsed (no file is read but these bytes) and checked from what they
    declare: own bytes only, counts, tensor sizes, the inputs of one row (:mod:`.onnx_checks`)."""
    problem = onnx_support_problem()
    if problem is not None:
        raise ModelLoadError(problem)
    import onnx

    try:
        model = onnx.load_model_from_string(data)  # never loads external data
    except Exception as error:  # DecodeError and friends: not an ONNX file
        raise ModelLoadError(f"Not an ONNX model ({type(error).__name__}).") from error
    if not model.graph.node:
        raise ModelLoadError("The ONNX model has no graph (an empty or foreign file).")
    check_declared_sizes(model)  # counts first: cheap, and they bound the walks that follow
    check_own_bytes(model)
    initializer_names = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializer_names]
    check_inputs(inputs, modality)
    _class_labels(model)  # names before any copy or conversion of a large graph
    _model_feature_names(model, inputs)
    return model


def convert_onnx(data: bytes, modality: str = "tabular") -> tuple[nn.Module, dict[str, Any]]:
    """The ONNX bytes as a differentiable module over ``[B, F]`` rows, and what the graph says
    about itself (feature names, class labels, width, classifier or not)."""
    return convert_parsed(parse_onnx(data, modality))


def convert_parsed(model: Any) -> tuple[nn.Module, dict[str, Any]]:
    """A model from :func:`parse_onnx`, converted (see :func:`convert_onnx`)."""
    from onnx2torch import convert

    from attribution_core.models.onnx_ml import register_ml_converters

    trees = sorted({node.op_type for node in model.graph.node if node.op_type in TREE_OPERATORS})
    if trees:
        raise ModelLoadError(
            f"This is a tree model ({', '.join(trees)}): its output changes in steps, so its "
            "gradient is zero almost everywhere and Integrated Gradients (and IG2) cannot "
            "explain it. Use a tree explainer such as TreeSHAP, or export a differentiable "
            "model (an MLP or a linear model).")
    initializer_names = {t.name for t in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializer_names]
    if not inputs:
        raise ModelLoadError("The ONNX model takes no input, so there is nothing to explain.")
    output, classifier = _explained_output(model)
    pruned = _pruned(model, output)
    register_ml_converters()
    try:
        graph = convert(pruned)
    except NotImplementedError as error:
        raise ModelLoadError(f"The ONNX model uses an operator without a differentiable "
                             f"PyTorch converter: {error}.") from error
    except Exception as error:
        if out_of_memory(error):
            raise
        raise ModelLoadError(f"The ONNX model could not be converted to PyTorch "
                             f"({type(error).__name__}: {error}).") from error
    dtype = torch.float64 if _elem_type(inputs[0]) == TENSOR_DOUBLE else torch.float32
    dims = inputs[0].type.tensor_type.shape.dim
    width = len(inputs) if len(inputs) > 1 else (
        int(dims[-1].dim_value) if len(dims) >= 2 and dims[-1].dim_value > 0 else None)
    facts = {"feature_names": _model_feature_names(model, inputs),
             "class_labels": _class_labels(model) if classifier else None,
             "width": width, "classifier": classifier, "output": output,
             "input_shape": tuple(int(d.dim_value) for d in dims)}
    return OnnxTabularModule(graph.eval(), dtype, per_column=len(inputs) > 1), facts


class ConfigMLP(nn.Module):
    """``layers``: Linear, activation, Linear, ... (the state dict's ``layers.N.weight``)."""

    def __init__(self, sizes: Sequence[int], activation: str) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(pairwise(sizes)):
            blocks.append(nn.Linear(width_in, width_out))
            if index < len(sizes) - 2:
                blocks.append(ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def parse_mlp_config(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_CONFIG_BYTES:
        raise ModelLoadError("The JSON config is larger than 1 MB.")
    try:
        config = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"The config is not valid JSON ({error}).") from error
    except RecursionError as error:
        raise ModelLoadError("The config is nested far deeper than a config can be.") from error
    if not isinstance(config, dict):
        raise ModelLoadError("The config must be a JSON object.")
    activation = str(config.get("activation", "relu")).lower()[:40]
    if activation not in ACTIVATIONS:
        raise ModelLoadError(f"Unknown activation {activation!r}; choose from "
                             f"{', '.join(ACTIVATIONS)}.")
    config["activation"] = activation
    for key, check in (("feature_names", check_feature_names),
                       ("class_names", check_class_names)):
        if config.get(key) is not None:
            if not isinstance(config[key], list):
                raise ModelLoadError(f"The config's {key} must be a JSON list of names.")
            config[key] = list(check(config[key], f"The config's {key}"))
    for key in ("mean", "std"):
        values = config.get(key)
        if values is not None and not (
                isinstance(values, list) and len(values) <= limits.MAX_MODEL_FEATURES
                and all(isinstance(v, int | float) and np.isfinite(v) for v in values)):
            raise ModelLoadError(f"The config's {key} must be a list of finite numbers, one "
                                 "per feature.")
    if config.get("std") is not None and any(v <= 0 for v in config["std"]):
        raise ModelLoadError("The config's std must be positive for every feature.")
    return config


def mlp_from_safetensors(data: bytes, config: dict[str, Any]) -> nn.Module:
    """A :class:`ConfigMLP` whose layer sizes are read from the ``layers.N.weight`` shapes.

    Every size comes from the header and is cross-checked first (:func:`.mlp_sizes`), so the
    network built holds exactly the parameters the file carries, nothing allocated beyond."""
    sizes = mlp_sizes(safetensors_header(data, "The safetensors file"))
    try:
        state = load_safetensors_bytes(data)
    except (SafetensorError, ValueError) as error:
        raise ModelLoadError(f"Not a valid safetensors file: {error}") from error
    network = ConfigMLP(sizes, config["activation"])
    load_state(network, state, "the MLP weights")
    return network


def tabular_upload_spec(data: bytes, file_name: str, *, config: dict[str, Any] | None = None,
                        reference: tuple[Sequence[str], np.ndarray, np.ndarray | None] | None
                        = None, class_names: Sequence[str] | None = None) -> ModelSpec:
    """A spec for an uploaded ``.onnx`` file or ``.safetensors`` MLP (with ``config``).

    ``reference``: the reference CSV's (header feature names, raw rows [N, F], labels or None).
    """
    check_model_upload_size(len(data), file_name)
    config = dict(config or {})
    trial: dict[str, Any] | None = None
    if file_name.lower().endswith(".onnx"):
        # Converted and run once in a child with a time and memory budget first (onnx_trial).
        trial = tried(data, "tabular", "The model", len(reference[0]) if reference else None)
        module, facts = convert_onnx(data)
        kind = "ONNX"
    else:  # sized from the header before anything is built: no trial run needed
        module = mlp_from_safetensors(data, config)
        first = next(m for m in module.modules() if isinstance(m, nn.Linear))
        facts = {"feature_names": config.get("feature_names"), "width": first.in_features,
                 "class_labels": None, "classifier": config.get("output_kind") != "regression"}
        kind = "safetensors MLP"
    names = facts["feature_names"] or (reference[0] if reference is not None else None)
    if names is None and facts["width"]:
        names = tuple(f"x{i}" for i in range(int(facts["width"])))
    if names is None:
        raise ModelLoadError("The model does not name its features and has no fixed width: "
                             "upload a reference CSV whose header names them.")
    names = check_feature_names(list(names), "The model")
    if facts["width"] and len(names) != int(facts["width"]):
        raise ModelLoadError(f"The model takes {facts['width']} features but "
                             f"{len(names)} names were found ({', '.join(names[:5])}…).")
    rows = labels = None
    if reference is not None:
        header, rows, labels = reference
        if tuple(header) != names:
            raise ModelLoadError("The reference CSV's feature columns do not match the "
                                 f"model's features ({', '.join(names[:5])}…).")
    width_out = output_width(module, torch.zeros(1, len(names)), "The model")
    regression = not facts["classifier"] and width_out == 1
    output_kind: OutputKind = "regression" if regression else "classification"
    classes = class_names or config.get("class_names") or facts["class_labels"]
    if classes is not None and len(classes) != width_out and not regression:
        raise ModelLoadError(f"{len(classes)} class names for {width_out} outputs.")
    digest = upload_digest(data, config=config, class_names=class_names, reference=reference)
    probabilities = kind == "ONNX" and bool(facts["classifier"])
    spec = build_spec(
        f"upload:{kind.split()[0].lower()}:{digest[:12]}", module, "tabular",
        class_names=None if regression else (classes or [f"class {i}" for i in
                                                          range(width_out)]),
        output_kind=output_kind, title=f"Your {kind} model ({file_name})",
        description=f"Uploaded {kind} (upload sha256 {digest[:12]}…)"
                    + ("; it outputs probabilities, so attributions add up to a change in "
                       "probability." if probabilities else "."),
        feature_names=names, reference_data=None if rows is None else (rows, labels),
        mean=config.get("mean"), std=config.get("std"), source="upload",
        weights_sha256=digest, representation_module=representation_layer(module),
        metadata={"file": file_name, "format": kind, "outputs_probabilities": probabilities,
                  **_measured(trial)})
    return spec


def onnx_image_spec(data: bytes, file_name: str, class_names: Sequence[str] | None = None,
                    normalisation: str = "none") -> ModelSpec:
    """An uploaded ONNX image classifier over ``[B, C, H, W]``: ``normalisation`` "none" when
    the graph takes pixels in [0, 1], "imagenet" when it expects ImageNet-normalised input (the
    normalisation then runs inside the wrapper, so black is still zeros). The size comes from
    the graph's input (224 x 224 when it is dynamic)."""
    from attribution_core.models.loaders import IMAGENET_MEAN, IMAGENET_STD

    check_model_upload_size(len(data), file_name)
    trial = tried(data, "image", file_name)  # converted and run once in a bounded child first
    module, facts = convert_onnx(data, "image")
    channels, size = image_input(facts["input_shape"], file_name)
    width_out = output_width(module, torch.zeros(1, channels, *size), file_name)
    names = class_names or facts["class_labels"] or [f"class {i}" for i in range(width_out)]
    if len(names) != width_out:
        raise ModelLoadError(f"{len(names)} class names for {width_out} outputs.")
    imagenet = normalisation == "imagenet" and channels == 3
    digest = upload_digest(data, class_names=class_names, normalisation=normalisation)
    return build_spec(
        f"upload:onnx-image:{digest[:12]}", module, "image", class_names=names,
        title=f"Your ONNX image model ({file_name}, {width_out} classes)",
        description=f"Uploaded ONNX (upload sha256 {digest[:12]}…), input {channels}x{size[0]}x"
                    f"{size[1]}" + (", ImageNet normalisation." if imagenet else "."),
        input_size=size, mean=IMAGENET_MEAN if imagenet else None,
        std=IMAGENET_STD if imagenet else None, source="upload", weights_sha256=digest,
        metadata={"file": file_name, "format": "ONNX",
                  "outputs_probabilities": bool(facts["classifier"]), **_measured(trial)})


def _measured(trial: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the trial measured, for the spec's metadata: the price of a row (seeded into
    :mod:`attribution_core.cost` when the model loads, so it is not timed again under the
    device lock) and the check's own time and memory."""
    if not trial:
        return {}
    return {"row_cost": dict(trial["row_cost"]), "row_cost_input": list(trial["input"]),
            "check_seconds": trial["check_seconds"],
            "check_peak_bytes": trial["check_peak_bytes"]}
