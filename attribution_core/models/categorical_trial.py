"""The trial of an uploaded ONNX pipeline that encodes its columns (:mod:`.onnx_categorical`):
what runs in the sandbox before the server builds it.

The sandbox's ``"onnx_categorical"`` job (:func:`.onnx_jobs.categorical_trial`) checks the graph as
the plain trial does (:func:`.onnx_models.parse_onnx`; every tensor the graph computes from
constants for one row, by ONNX shape inference), then does, in the child and within its time
and memory budget, everything that runs the upload: it finds the cut, runs the encoding front
in onnx's reference evaluator on the reference rows and on the probes (one column changed at a
time), sizes the rest for one encoded row before converting it, converts it, runs and prices it
as the explanations will (:func:`.onnx_trial.module_trial`), and checks that the front encodes
each row on its own and runs a full chunk of :data:`~.onnx_probe.PROBE_CHUNK` rows (the most
the server ever gives it at once).

Only JSON comes back: the cut, its type, the measured columns (:func:`schema_json`) and the
price. The server reads the columns back with :func:`schema_from_json`, which bounds them like
every other name an upload carries, and builds the spec without probing. No Streamlit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from attribution_core import limits
from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.models.spec import ModelLoadError
from attribution_core.models.upload_checks import check_category_names

WHAT = "The pipeline"
BATCH_ROWS = 3
MAX_NOTE_CHARS = 500
MAX_SLOT_NAME_CHARS = 3 * limits.MAX_MODEL_NAME_CHARS  # "column = category [k/n]"
KINDS = ("numeric", "categorical")
MISSING = ("refused", "imputed", "unknown")


def tried(data: bytes, reference: pd.DataFrame | None, label_column: str | None
          ) -> dict[str, Any]:
    """The server's side: :func:`trial` in the sandbox (the reference CSV's cells attached);
    a refusal is a ModelLoadError, the answer what the check measured and what it cost."""
    from attribution_core.models.sandbox import run_sandboxed

    attachments = {} if reference is None else {"reference": frame_json(reference)}
    options = {"label_column": label_column, "threads": torch.get_num_threads()}
    report = run_sandboxed("onnx_categorical", data, options, what=WHAT,
                           attachments=attachments)
    result = report.result
    if not (isinstance(result.get("cut"), str) and isinstance(result.get("schema"), dict)
            and isinstance(result.get("row_cost"), dict)):
        raise ModelLoadError(f"{WHAT}'s check gave an answer this server cannot read.")
    return {**result, "check_seconds": report.seconds,
            "check_peak_bytes": report.peak_extra_bytes}


def frame_json(frame: pd.DataFrame) -> bytes:
    """The reference CSV's text cells as JSON, exactly (no CSV round trip)."""
    cells = frame.astype(str).to_numpy().tolist()
    return json.dumps({"columns": [str(c) for c in frame.columns], "rows": cells}).encode()


def frame_from_json(blob: bytes) -> pd.DataFrame:
    value = json.loads(blob)
    return pd.DataFrame(value["rows"], columns=value["columns"], dtype=str) \
        if value["rows"] else pd.DataFrame(columns=value["columns"], dtype=str)


def schema_json(schema: cat_io.TabularSchema) -> dict[str, Any]:
    """The measured columns as plain JSON."""
    return {"columns": [{"name": c.name, "kind": c.kind, "categories": list(c.categories),
                         "missing": c.missing, "missing_note": c.missing_note,
                         "unknown_accepted": c.unknown_accepted, "unknown_note": c.unknown_note}
                        for c in schema.columns],
            "groups": list(schema.groups), "slot_names": list(schema.slot_names),
            "one_hot": schema.one_hot}


def schema_from_json(value: object, names: Sequence[str]) -> cat_io.TabularSchema:
    """The check's columns read back: one per name the server found itself, every count and
    name within the limits (categories like class names), or a one-line refusal."""
    try:
        return _schema(value, names)
    except ModelLoadError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ModelLoadError(f"{WHAT}'s check gave columns this server cannot read "
                             f"({type(error).__name__}).") from error


def _schema(value: Any, names: Sequence[str]) -> cat_io.TabularSchema:
    columns, groups, slots = value["columns"], value["groups"], value["slot_names"]
    if len(columns) != len(names):
        raise ValueError("columns")
    if not (isinstance(groups, list) and isinstance(slots, list)
            and 0 < len(groups) <= limits.MAX_ENCODED_WIDTH and len(slots) == len(groups)):
        raise ModelLoadError(f"{WHAT} encodes a row into {len(groups):,} slots; at most "
                             f"{limits.MAX_ENCODED_WIDTH:,} are supported.")
    read = []
    for name, column in zip(names, columns, strict=True):
        if column["name"] != name or column["kind"] not in KINDS or \
                column["missing"] not in MISSING:
            raise ValueError("column")
        categories = check_category_names(list(column["categories"]),
                                          f"{WHAT}'s column {name[:40]!r}",
                                          limits.MAX_COLUMN_CATEGORIES)
        read.append(cat_io.TabularColumn(
            name, column["kind"], categories, column["missing"],
            _text(column["missing_note"], MAX_NOTE_CHARS),
            _flag(column["unknown_accepted"]), _text(column["unknown_note"], MAX_NOTE_CHARS)))
    if not all(type(g) is int and 0 <= g < len(read) for g in groups):
        raise ValueError("groups")
    return cat_io.TabularSchema(tuple(read), tuple(groups),
                                tuple(_text(s, MAX_SLOT_NAME_CHARS) for s in slots),
                                _flag(value["one_hot"]))


def _text(value: object, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError("text")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("flag")
    return value
