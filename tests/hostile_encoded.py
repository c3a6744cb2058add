"""Hostile uploads for the paths that explain a model after an encoding (issue 24, second
part): categorical ONNX pipelines (a OneHotEncoder front, a MatMul rest), safetensors MLPs with
embeddings, and zipped Hugging Face text classifiers whose config.json declares what no
checkpoint holds. Built in memory like tests/hostile_models.py, whose helpers they use; shared
by the unit tests, the page tests and ``benchmarks/hostile_uploads.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from tests.hostile_models import (
    FLOAT,
    INT64,
    SECRET_PATH,
    STRING,
    _external,
    _floats,
    _model,
    safetensors_file,
)

PIPELINE_COLUMNS = ("city", "age")
PIPELINE_CITIES = ("Lyon", "Nice", "Paris")


def pipeline_reference_csv() -> bytes:
    """Reference rows for :func:`categorical_pipeline` (every column filled in)."""
    rows = [f"{PIPELINE_CITIES[i % 3]},{20 + 3 * i}" for i in range(12)]
    return ("city,age\n" + "\n".join(rows) + "\n").encode()


def categorical_pipeline(categories: Sequence[str] = PIPELINE_CITIES, *, front: str = "",
                         rest: str = "", side: int = 20_000) -> bytes:
    """A skl2onnx-like pipeline: ``city`` (strings) one-hot encoded by an ``ai.onnx.ml``
    OneHotEncoder, ``age`` passed on, both concatenated ("encoded", where the dashboard cuts
    the graph) and classified by a MatMul and a Softmax.

    ``front``: "external" (age is shifted by a constant stored in the server's secrets file),
    "broadcast" (age is shifted by a corner of a [side, side] sum of two constants of ``side``
    values: Add and Slice, operators the encoding part may use; 1.6 GB at 20,000), "mixing"
    (each row's age plus the first row's: an encoding that depends on the batch).
    ``rest``: "external" (the MatMul's weights stored in the secrets file), "constant_of_shape"
    or "tile" (a [side, side] tensor, summed into the logits)."""
    from onnx import helper

    width = len(categories) + 1
    initializers: list[Any] = [helper.make_tensor("flat", INT64, [2], [-1, len(categories)]),
                               _floats("W", np.linspace(-1, 1, 2 * width).reshape(width, 2))]
    nodes = [helper.make_node("OneHotEncoder", ["city"], ["city_hot"], domain="ai.onnx.ml",
                              cats_strings=list(categories), zeros=1),
             helper.make_node("Reshape", ["city_hot", "flat"], ["city_flat"])]
    age = "age"
    if front == "external":
        initializers.append(_external(_floats("shift", np.zeros((1, 1))), SECRET_PATH))
        nodes.append(helper.make_node("Add", ["age", "shift"], ["age_shifted"]))
        age = "age_shifted"
    elif front == "broadcast":
        initializers += [_floats("column", np.zeros((side, 1))),
                         _floats("row", np.zeros((1, side))),
                         helper.make_tensor("starts", INT64, [2], [0, 0]),
                         helper.make_tensor("ends", INT64, [2], [1, 1])]
        nodes += [helper.make_node("Add", ["column", "row"], ["grid"]),
                  helper.make_node("Slice", ["grid", "starts", "ends"], ["corner"]),
                  helper.make_node("Add", ["age", "corner"], ["age_shifted"])]
        age = "age_shifted"
    elif front == "mixing":  # every row's age plus the first row's: rows depend on others
        initializers.append(helper.make_tensor("first", INT64, [1], [0]))
        nodes += [helper.make_node("Gather", ["age", "first"], ["first_age"], axis=0),
                  helper.make_node("Add", ["age", "first_age"], ["age_shifted"])]
        age = "age_shifted"
    nodes.append(helper.make_node("Concat", ["city_flat", age], ["encoded"], axis=1))
    if rest == "external":
        initializers[1] = _external(initializers[1], SECRET_PATH)
    nodes.append(helper.make_node("MatMul", ["encoded", "W"], ["logits"]))
    logits = "logits"
    if rest in ("constant_of_shape", "tile"):
        if rest == "tile":
            initializers += [_floats("one", np.ones((1, 1))),
                             helper.make_tensor("reps", INT64, [2], [side, side])]
            nodes.append(helper.make_node("Tile", ["one", "reps"], ["big"]))
        else:
            initializers.append(helper.make_tensor("shape", INT64, [2], [side, side]))
            nodes.append(helper.make_node("ConstantOfShape", ["shape"], ["big"],
                                          value=helper.make_tensor("v", FLOAT, [1], [0.0])))
        nodes += [helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
                  helper.make_node("Add", ["logits", "total"], ["logits_total"])]
        logits = "logits_total"
    nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    return _model(nodes, [helper.make_tensor_value_info("city", STRING, [None, 1]),
                          helper.make_tensor_value_info("age", FLOAT, [None, 1])],
                  [helper.make_tensor_value_info("probabilities", FLOAT, [None, 2])],
                  initializers, ml=True)


def many_categories(count: int = 200_000) -> bytes:
    """The pipeline above with a OneHotEncoder listing ``count`` categories (3 MB)."""
    return categorical_pipeline([f"c{i:06d}" for i in range(count)])


EMBEDDING_CONFIG = {"activation": "relu", "feature_names": ["city", "age"],
                    "categorical": {"city": list(PIPELINE_CITIES)}}


def embedding_config(**changes: Any) -> bytes:
    return json.dumps({**EMBEDDING_CONFIG, **changes}).encode()


def embedding_mlp(*, table: Sequence[int] = (3, 2), hidden: int = 4,
                  chained: bool = True) -> bytes:
    """An embedding MLP for :data:`EMBEDDING_CONFIG` (``embeddings.0.weight`` of shape
    ``table``, then ``layers`` 3 -> hidden -> 2) in float16. ``chained=False``: the second
    layer takes 1 input where the first gives ``hidden`` (the old loader built
    Linear(hidden, hidden) from the first dimensions alone: 1.6 GB at 20,000)."""
    def f16(*shape: int) -> tuple[str, list[int], bytes]:
        return "F16", list(shape), np.zeros(shape, np.float16).tobytes()

    width = 1 + table[1]
    tensors = {"embeddings.0.weight": f16(*table), "layers.0.weight": f16(hidden, width),
               "layers.0.bias": f16(hidden)}
    tensors |= {"layers.2.weight": f16(2, hidden), "layers.2.bias": f16(2)} if chained else \
        {"layers.2.weight": f16(hidden, 1), "layers.2.bias": f16(hidden)}
    return safetensors_file(tensors)


def embedding_table_declared(rows: int = 10**9, dim: int = 4) -> bytes:
    """A 200-byte file whose header declares an embedding table of ``rows`` x ``dim``."""
    return safetensors_file({}, header={"embeddings.0.weight": {
        "dtype": "F32", "shape": [rows, dim], "data_offsets": [0, rows * dim * 4]}})


def text_zip(config: dict[str, Any] | None = None, *, drop: Sequence[str] = ()) -> bytes:
    """A tiny BERT sequence classifier's folder (tests/model_zips.py) zipped, with
    ``config.json``'s keys changed (None removes one) and weights named in ``drop`` left out."""
    import io
    import tempfile
    import zipfile
    from pathlib import Path

    from safetensors.torch import load, save

    from tests.model_zips import save_tiny_classifier

    with tempfile.TemporaryDirectory() as name:
        folder = save_tiny_classifier(Path(name) / "tiny")
        settings = json.loads((folder / "config.json").read_text())
        for key, value in (config or {}).items():
            if value is None:
                settings.pop(key, None)
            else:
                settings[key] = value
        weights = load((folder / "model.safetensors").read_bytes())
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.iterdir()):
                content = path.read_bytes()
                if path.name == "config.json":
                    content = json.dumps(settings).encode()
                elif path.name == "model.safetensors":
                    content = save({k: v for k, v in weights.items() if k not in drop})
                archive.writestr(path.name, content)
    return buffer.getvalue()


WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"


def text_vocab(size: int = 10**9, *, keep_embeddings: bool = False) -> bytes:
    """config.json declares ``size`` words; the weights lack the word embeddings (so the old
    loader allocated size x 16 floats for them: 64 GB) unless ``keep_embeddings``."""
    return text_zip({"vocab_size": size}, drop=() if keep_embeddings else (WORD_EMBEDDINGS,))


def text_layers(count: int = 10_000) -> bytes:
    return text_zip({"num_hidden_layers": count})


def text_labels(count: int = 200_000) -> bytes:
    """config.json's id2label names ``count`` classes (2.6 MB of JSON)."""
    return text_zip({"id2label": {str(i): f"c{i}" for i in range(count)}, "label2id": None})


def text_num_labels(count: int = 10**9) -> bytes:
    """config.json says num_labels = ``count`` and names none (transformers would name them
    all: LABEL_0 ... LABEL_999999999)."""
    return text_zip({"num_labels": count, "id2label": None, "label2id": None})
