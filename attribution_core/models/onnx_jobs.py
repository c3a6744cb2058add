"""The sandbox's ONNX jobs: what runs in the child before the server builds an uploaded graph.

They sit above the builders they try (:mod:`.onnx_models`, :mod:`.onnx_categorical`) and the
server-side halves of the trials (:mod:`.onnx_trial`, :mod:`.categorical_trial`), which the
builders import: the child imports this module, the server never does, so nothing circles.
:func:`onnx_trial` is the ``"onnx"`` job, :func:`categorical_trial` the ``"onnx_categorical"``
job (:mod:`.sandbox_server`'s ``JOBS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from attribution_core.models.categorical_trial import BATCH_ROWS as PIPELINE_BATCH_ROWS
from attribution_core.models.categorical_trial import WHAT as PIPELINE
from attribution_core.models.categorical_trial import frame_from_json, schema_from_json, schema_json
from attribution_core.models.encoded_tabular import EncodedRows
from attribution_core.models.onnx_categorical import build_categorical, encodes
from attribution_core.models.onnx_checks import check_computed_sizes, static_shapes
from attribution_core.models.onnx_models import convert_parsed, parse_onnx
from attribution_core.models.onnx_probe import PROBE_CHUNK
from attribution_core.models.onnx_trial import image_input, module_trial, tabular_width
from attribution_core.models.spec import ModelLoadError


def onnx_trial(data: bytes, options: Mapping[str, Any]) -> dict[str, Any]:
    """The sandbox job: ``options`` has ``modality`` ("tabular" or "image") and, for a table,
    ``named`` (how many features a reference CSV names). Returns JSON-able facts."""
    modality = str(options.get("modality", "tabular"))
    what = str(options.get("what", "The model"))
    model = parse_onnx(data, modality)
    flops = check_computed_sizes(model, static_shapes(model))
    module, facts = convert_parsed(model)
    if modality == "image":
        channels, (height, width) = image_input(facts["input_shape"], what)
        example = torch.zeros(1, channels, height, width)
    else:
        example = torch.zeros(1, tabular_width(facts, options.get("named")))
    return {**module_trial(module, example, what), "flops": flops}


def categorical_trial(data: bytes, options: Mapping[str, Any]) -> dict[str, Any]:
    """The sandbox job: ``options`` has ``label_column`` and, in ``attachments``, the
    reference CSV's cells (:func:`frame_json`). Returns JSON-able facts."""
    model = parse_onnx(data)
    flops = check_computed_sizes(model, static_shapes(model))
    if not encodes(model):
        raise ModelLoadError(f"{PIPELINE} does not encode its columns.")
    attachments = dict(options.get("attachments") or {})
    reference = frame_from_json(attachments["reference"]) if "reference" in attachments else None
    label = options.get("label_column")
    built = build_categorical(model, data, "upload.onnx", reference=reference,
                              label_column=str(label) if label else None, measured=None)
    schema = built.encoder.schema
    answer = schema_json(schema)
    schema_from_json(answer, schema.names)  # what the server will accept, refused here alike
    baselines = built.spec.loader(torch.device("cpu")).extras["baseline_raw"]
    rows = built.rows if built.rows is not None and len(built.rows) else \
        np.stack(list(baselines.values()))
    _check_front(EncodedRows(built.encoder), rows)
    facts = module_trial(built.rest, torch.zeros(1, schema.width), PIPELINE)
    return {**facts, "flops": flops, "cut": built.cut, "cut_double": built.cut_double,
            "schema": answer}


def _check_front(encode: Any, rows: np.ndarray) -> None:
    """The front gives each row its own encoding (rows encoded together as alone), and runs on
    a full chunk of rows within the budget."""
    sample = rows[:PIPELINE_BATCH_ROWS]
    together = encode(sample)
    alone = torch.cat([encode(sample[i:i + 1]) for i in range(len(sample))])
    if together.shape != alone.shape or not torch.allclose(together, alone, rtol=1e-6,
                                                           atol=1e-6, equal_nan=True):
        raise ModelLoadError(f"{PIPELINE}'s encoding mixes the rows of a batch: a row is encoded "
                             "differently when other rows are encoded beside it. Each row has "
                             "to be explained on its own; export it without that step.")
    encode(np.repeat(rows[:1], PROBE_CHUNK, axis=0))
