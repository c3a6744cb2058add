"""Evaluation reports a reviewer can audit: a JSON record, a self-contained HTML page and the maps.

``to_record`` turns an :class:`EvaluationResult` into plain JSON (NaN as ``null``, infinities as
the strings ``"inf"``/``"-inf"``, arrays as nested lists tagged with dtype and shape) and
``from_record`` restores it exactly, so a report can be re-read and re-plotted without the model.
``write_report`` writes the JSON, the HTML and a safetensors file of every case x method map.
"""

from __future__ import annotations

import base64
import io
import json
import math
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from attribution_core.evaluation.types import (
    CaseOutcome,
    EvaluationResult,
    EvaluationSettings,
    MethodOutcome,
)

SCHEMA_NAME = "attribution_core.evaluation"
SCHEMA_VERSION = 1
# Larger pictures are shrunk before they go into the JSON: the report stays small, and the
# picture is only there to show which input a row is about (the maps keep full resolution).
MAX_DISPLAY_SIDE = 256
_PACKAGES = ("torch", "torchvision", "captum", "numpy", "streamlit", "plotly", "transformers",
             "safetensors")
_MODEL_KEYS = ("name", "title", "modality", "weights_sha256", "class_names")
_TOP_KEYS = ("schema", "schema_version", "created", "model", "settings", "environment",
             "device", "n_requested", "n_done", "cancelled", "seconds", "expected_area_share",
             "notes", "summary", "cases")
_CASE_ARRAYS = ("fractions", "random_deletion", "random_insertion")
_OUTCOME_ARRAYS = ("scores", "deletion", "insertion")


class ReportFormatError(ValueError):
    """A report file that this version cannot read; the message says what is wrong with it."""


@dataclass(frozen=True)
class ReportFiles:
    json_path: Path
    html_path: Path
    attributions_path: Path


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions of everything that shapes the numbers, plus the device and platform."""
    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None  # not installed: recorded as absent, not guessed
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"python": platform.python_version(), **versions, "device": device,
            "platform": platform.platform()}


# -- encoding ----------------------------------------------------------------------------------

def _encode_float(value: float | None) -> float | str | None:
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _decode_float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        if value in ("inf", "-inf"):
            return float(value)
        raise ReportFormatError(f"Expected a number in the report, found the text {value!r}.")
    return float(value)


def _clean_nested(values: Any) -> Any:
    """tolist() output with NaN/inf replaced (JSON has no spelling for them)."""
    if isinstance(values, list):
        return [_clean_nested(v) for v in values]
    if isinstance(values, float):
        return _encode_float(values)
    return values


def _restore_nested(values: Any) -> Any:
    if isinstance(values, list):
        return [_restore_nested(v) for v in values]
    if values is None or isinstance(values, str):
        return _decode_float(values)
    return values


def encode_array(array: np.ndarray) -> dict[str, Any]:
    # dtype and shape travel with the values: a float32 map must come back float32, and an
    # empty or [0, n] array cannot be told apart from its nested lists alone.
    array = np.asarray(array)
    return {"dtype": str(array.dtype), "shape": list(array.shape),
            "values": _clean_nested(array.tolist())}


def decode_array(encoded: Mapping[str, Any]) -> np.ndarray:
    _require(encoded, ("dtype", "shape", "values"), "an array")
    values = _restore_nested(encoded["values"])
    return np.array(values, dtype=np.dtype(encoded["dtype"])).reshape(encoded["shape"])


def image_data_url(pixels: np.ndarray) -> str:
    """An H x W (x 1/3/4) uint8 array as a PNG data URL (lossless, so it decodes back exactly)."""
    from PIL import Image

    array = np.asarray(pixels)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    image = Image.fromarray(np.ascontiguousarray(array))
    if max(image.size) > MAX_DISPLAY_SIDE:
        image.thumbnail((MAX_DISPLAY_SIDE, MAX_DISPLAY_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image_data_url(url: str) -> np.ndarray:
    from PIL import Image

    prefix = "data:image/png;base64,"
    if not url.startswith(prefix):
        raise ReportFormatError("A case picture in the report is not a PNG data URL.")
    with Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])), formats=["PNG"]) as image:
        return np.asarray(image).copy()


def _is_picture(value: Any) -> bool:
    return (isinstance(value, np.ndarray) and value.dtype == np.uint8
            and (value.ndim == 2 or (value.ndim == 3 and value.shape[2] in (1, 3, 4))))


def encode_display(display: Any) -> dict[str, Any] | None:
    """What a figure shows, tagged with its kind so it decodes to the same Python type.

    Anything that is not a picture, an array, a sequence, a mapping or a plain scalar is left
    out (None): a report must never need unpickling to be read.
    """
    if display is None:
        return None
    if hasattr(display, "detach") and hasattr(display, "numpy"):  # a torch tensor
        display = display.detach().cpu().numpy()
    if _is_picture(display):
        shape = list(display.shape)
        return {"kind": "image", "data_url": image_data_url(display), "shape": shape}
    if isinstance(display, np.ndarray):
        return {"kind": "array", **encode_array(display)}
    if isinstance(display, tuple | list):
        items = [_plain(v) for v in display]
        if any(v is _UNSUPPORTED for v in items):
            return None
        return {"kind": "tuple" if isinstance(display, tuple) else "list", "values": items}
    if isinstance(display, Mapping):
        if not all(isinstance(k, str) for k in display):
            return None
        items_map = {k: _plain(v) for k, v in display.items()}
        if any(v is _UNSUPPORTED for v in items_map.values()):
            return None
        return {"kind": "mapping", "values": items_map}
    plain = _plain(display)
    return None if plain is _UNSUPPORTED else {"kind": "scalar", "value": plain}


_UNSUPPORTED = object()


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return {"float": _encode_float(value)}  # tagged so 1.0 does not come back as int 1
    return _UNSUPPORTED


def _restore_plain(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"float"}:
        return _decode_float(value["float"])
    return value


def decode_display(encoded: Mapping[str, Any] | None) -> Any:
    if encoded is None:
        return None
    kind = encoded.get("kind")
    if kind == "image":
        pixels = decode_image_data_url(encoded["data_url"])
        shape = tuple(encoded.get("shape", pixels.shape))
        # an H x W x 1 picture was stored as a grey PNG; restore its trailing axis
        return pixels.reshape(shape) if pixels.size == math.prod(shape) else pixels
    if kind == "array":
        return decode_array(encoded)
    if kind in ("tuple", "list"):
        items = [_restore_plain(v) for v in encoded["values"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "mapping":
        return {k: _restore_plain(v) for k, v in encoded["values"].items()}
    if kind == "scalar":
        return _restore_plain(encoded["value"])
    raise ReportFormatError(f"Unknown display kind {kind!r} in the report.")


def _json_or_none(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return value


# -- record ------------------------------------------------------------------------------------

def _outcome_record(outcome: MethodOutcome) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for item in fields(MethodOutcome):
        value = getattr(outcome, item.name)
        if item.name in _OUTCOME_ARRAYS:
            record[item.name] = encode_array(value)
        elif item.name in ("method", "n_evaluations"):
            record[item.name] = value if item.name == "method" else int(value)
        else:
            record[item.name] = _encode_float(value)
    return record


def _case_record(case: CaseOutcome) -> dict[str, Any]:
    return {
        "case_id": case.case_id, "target": int(case.target),
        "label": None if case.label is None else int(case.label),
        "predicted": int(case.predicted),
        "f_input": _encode_float(case.f_input), "f_baseline": _encode_float(case.f_baseline),
        **{name: encode_array(getattr(case, name)) for name in _CASE_ARRAYS},
        "random_deletion_auc": _encode_float(case.random_deletion_auc),
        "random_insertion_auc": _encode_float(case.random_insertion_auc),
        "disagreement": _encode_float(case.disagreement),
        "reading_shape": [int(n) for n in case.reading_shape],
        "expected": None if case.expected is None else encode_array(case.expected),
        "unit_names": list(case.unit_names),
        "display": encode_display(case.display),
        "text": case.text,
        "outcomes": [_outcome_record(o) for o in case.outcomes],
    }


def to_record(result: EvaluationResult, *, extra: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
    """The whole result as JSON-able data (pass it to ``json.dumps``; no NaN is left in it)."""
    summary = [{k: (_encode_float(v) if isinstance(v, float) else v)
                for k, v in asdict(item).items()} for item in result.summaries()]
    settings = result.settings.record()
    settings["methods"] = list(settings["methods"])
    record: dict[str, Any] = {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"name": result.model_name, "title": result.model_title,
                  "modality": result.modality, "weights_sha256": result.weights_hash,
                  "class_names": list(result.class_names)},
        "settings": {k: (_encode_float(v) if isinstance(v, float) else v)
                     for k, v in settings.items()},
        "environment": environment(result.device),
        "device": result.device,
        "n_requested": int(result.n_requested), "n_done": len(result.cases),
        "cancelled": bool(result.cancelled), "seconds": _encode_float(result.seconds),
        "expected_area_share": _encode_float(result.expected_area_share),
        "notes": list(result.notes),
        "summary": summary,
        "cases": [_case_record(case) for case in result.cases],
    }
    if extra:
        record["extra"] = _json_or_none(dict(extra))
    return record


def _require(record: Any, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(record, Mapping):
        raise ReportFormatError(
            f"Expected {what} to be a JSON object, found {type(record).__name__}.")
    missing = [key for key in keys if key not in record]
    if missing:
        raise ReportFormatError(
            f"The report is incomplete: {what} lacks {', '.join(missing)}. It may be truncated "
            "or written by another program; write it again with write_report.")


def _settings_from(record: Mapping[str, Any]) -> EvaluationSettings:
    known = {item.name for item in fields(EvaluationSettings)}
    unknown = sorted(set(record) - known)
    missing = sorted(known - set(record))
    if unknown or missing:
        raise ReportFormatError(
            "The report's settings do not match this version's: "
            f"unknown {unknown or 'none'}, missing {missing or 'none'}.")
    values = dict(record)
    values["methods"] = tuple(values["methods"])
    values["smoothgrad_noise"] = _decode_float(values["smoothgrad_noise"])
    if values["ig2_step_size"] is not None:  # None means "the model's default", not NaN
        values["ig2_step_size"] = _decode_float(values["ig2_step_size"])
    return EvaluationSettings(**values)


def _outcome_from(record: Mapping[str, Any]) -> MethodOutcome:
    names = tuple(item.name for item in fields(MethodOutcome))
    _require(record, names, "a method outcome")
    values: dict[str, Any] = {}
    for name in names:
        if name in _OUTCOME_ARRAYS:
            values[name] = decode_array(record[name])
        elif name == "method":
            values[name] = str(record[name])
        elif name == "n_evaluations":
            values[name] = int(record[name])
        else:
            values[name] = _decode_float(record[name])
    return MethodOutcome(**values)


def _case_from(record: Mapping[str, Any]) -> CaseOutcome:
    names = tuple(item.name for item in fields(CaseOutcome))
    _require(record, names, f"case {record.get('case_id', '?')!r}"
             if isinstance(record, Mapping) else "a case")
    return CaseOutcome(
        case_id=str(record["case_id"]), target=int(record["target"]),
        label=None if record["label"] is None else int(record["label"]),
        predicted=int(record["predicted"]),
        f_input=_decode_float(record["f_input"]), f_baseline=_decode_float(record["f_baseline"]),
        **{name: decode_array(record[name]) for name in _CASE_ARRAYS},
        random_deletion_auc=_decode_float(record["random_deletion_auc"]),
        random_insertion_auc=_decode_float(record["random_insertion_auc"]),
        outcomes=tuple(_outcome_from(o) for o in record["outcomes"]),
        disagreement=_decode_float(record["disagreement"]),
        reading_shape=tuple(int(n) for n in record["reading_shape"]),
        expected=None if record["expected"] is None else decode_array(record["expected"]),
        unit_names=tuple(record["unit_names"]),
        display=decode_display(record["display"]),
        text=record["text"],
    )


def from_record(record: Mapping[str, Any]) -> EvaluationResult:
    """The inverse of :func:`to_record`; raises :class:`ReportFormatError` on a foreign record."""
    if not isinstance(record, Mapping):
        raise ReportFormatError("An evaluation report must be a JSON object.")
    if record.get("schema") != SCHEMA_NAME:
        raise ReportFormatError(
            f"This is not an evaluation report (schema {record.get('schema')!r}, expected "
            f"{SCHEMA_NAME!r}).")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise ReportFormatError(
            f"The report has schema version {record.get('schema_version')!r}; this version "
            f"reads version {SCHEMA_VERSION}. Re-run the evaluation to get a current report.")
    _require(record, _TOP_KEYS, "the report")
    model = record["model"]
    _require(model, _MODEL_KEYS, "the report's model section")
    if model["modality"] not in ("image", "text", "tabular"):
        raise ReportFormatError(f"Unknown modality {model['modality']!r} in the report.")
    return EvaluationResult(
        model_name=str(model["name"]), model_title=str(model["title"]),
        modality=model["modality"], weights_hash=str(model["weights_sha256"]),
        class_names=tuple(model["class_names"]),
        settings=_settings_from(record["settings"]),
        cases=tuple(_case_from(case) for case in record["cases"]),
        n_requested=int(record["n_requested"]), cancelled=bool(record["cancelled"]),
        seconds=_decode_float(record["seconds"]), device=str(record["device"]),
        expected_area_share=_decode_float(record["expected_area_share"]),
        notes=tuple(record["notes"]),
    )


def read_report(path: str | Path) -> EvaluationResult:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ReportFormatError(f"{path} is not valid JSON ({error.msg}, line {error.lineno}).") \
            from error
    return from_record(record)


# -- files -------------------------------------------------------------------------------------

def attribution_tensors(result: EvaluationResult) -> tuple[dict[str, Any], list[list[str]]]:
    """Every case x method reading map keyed ``"<case_id>/<method>"`` (a repeated case id gets
    ``#<position>`` appended so no map overwrites another), and the key -> (case, method) index."""
    import torch

    tensors: dict[str, torch.Tensor] = {}
    index: list[list[str]] = []
    for position, case in enumerate(result.cases):
        for outcome in case.outcomes:
            key = f"{case.case_id}/{outcome.method}"
            if key in tensors:
                key = f"{case.case_id}#{position}/{outcome.method}"
            tensors[key] = torch.from_numpy(np.ascontiguousarray(outcome.scores).copy())
            index.append([key, case.case_id, outcome.method])
    return tensors, index


def write_report(result: EvaluationResult, folder: str | Path, *, stem: str = "evaluation",
                 extra: Mapping[str, Any] | None = None) -> ReportFiles:
    """Write ``<stem>.json``, ``<stem>.html`` and ``<stem>_attributions.safetensors``."""
    from safetensors.torch import save_file

    from attribution_core.evaluation.report_html import report_html

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(folder / f"{stem}.json", folder / f"{stem}.html",
                        folder / f"{stem}_attributions.safetensors")
    record = to_record(result, extra=extra)
    files.json_path.write_text(json.dumps(record, allow_nan=False, separators=(",", ":")),
                               encoding="utf-8")
    files.html_path.write_text(report_html(result, created=record["created"]), encoding="utf-8")
    tensors, index = attribution_tensors(result)
    save_file(tensors, str(files.attributions_path), metadata={
        "model": result.model_name, "weights_sha256": result.weights_hash,
        "schema_version": str(SCHEMA_VERSION), "keys": json.dumps(index)})
    return files
