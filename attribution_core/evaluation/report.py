"""Evaluation reports a reviewer can audit: a JSON record, a self-contained HTML page and the maps.

``to_record`` turns an :class:`EvaluationResult` into plain JSON (NaN as ``null``, infinities as
the strings ``"inf"``/``"-inf"``, arrays as nested lists tagged with dtype and shape) and
``from_record`` restores it exactly, so a report can be re-read and re-plotted without the model.
``write_report`` writes the JSON, the HTML and a safetensors file of every case x method map.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from attribution_core.evaluation.environment import environment
from attribution_core.evaluation.record_encoding import (
    ReportFormatError,
    decode_array,
    decode_display,
    decode_float,
    encode_array,
    encode_display,
    encode_float,
    json_or_none,
    require,
)
from attribution_core.evaluation.types import (
    CaseOutcome,
    EvaluationResult,
    EvaluationSettings,
    MethodOutcome,
    MethodSummary,
)

SCHEMA_NAME = "attribution_core.evaluation"
SCHEMA_VERSION = 1
_MODEL_KEYS = ("name", "title", "modality", "weights_sha256", "class_names")
_TOP_KEYS = ("schema", "schema_version", "created", "model", "settings", "environment",
             "device", "n_requested", "n_done", "cancelled", "seconds", "expected_area_share",
             "notes", "summary", "cases")
_CASE_ARRAYS = ("fractions", "random_deletion", "random_insertion")
_OUTCOME_ARRAYS = ("scores", "deletion", "insertion")




@dataclass(frozen=True)
class ReportFiles:
    json_path: Path
    html_path: Path
    attributions_path: Path


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
            record[item.name] = encode_float(value)
    return record


def _case_record(case: CaseOutcome) -> dict[str, Any]:
    return {
        "case_id": case.case_id, "target": int(case.target),
        "label": None if case.label is None else int(case.label),
        "predicted": int(case.predicted),
        "f_input": encode_float(case.f_input), "f_baseline": encode_float(case.f_baseline),
        **{name: encode_array(getattr(case, name)) for name in _CASE_ARRAYS},
        "random_deletion_auc": encode_float(case.random_deletion_auc),
        "random_insertion_auc": encode_float(case.random_insertion_auc),
        "disagreement": encode_float(case.disagreement),
        "reading_shape": [int(n) for n in case.reading_shape],
        "expected": None if case.expected is None else encode_array(case.expected),
        "unit_names": list(case.unit_names),
        "display": encode_display(case.display),
        "text": case.text,
        "outcomes": [_outcome_record(o) for o in case.outcomes],
    }


def summary_record(summaries: Sequence[MethodSummary]) -> list[dict[str, Any]]:
    """The report's ``summary``: one JSON object per method."""
    return [{k: (encode_float(v) if isinstance(v, float) else v)
             for k, v in asdict(item).items()} for item in summaries]


def to_record(result: EvaluationResult, *, extra: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
    """The whole result as JSON-able data (pass it to ``json.dumps``; no NaN is left in it)."""
    summary = summary_record(result.summaries())
    settings = result.settings.record()
    settings["methods"] = list(settings["methods"])
    record: dict[str, Any] = {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"name": result.model_name, "title": result.model_title,
                  "modality": result.modality, "weights_sha256": result.weights_hash,
                  "class_names": list(result.class_names)},
        "settings": {k: (encode_float(v) if isinstance(v, float) else v)
                     for k, v in settings.items()},
        "environment": environment(result.device),
        "device": result.device,
        "n_requested": int(result.n_requested), "n_done": len(result.cases),
        "cancelled": bool(result.cancelled), "seconds": encode_float(result.seconds),
        "expected_area_share": encode_float(result.expected_area_share),
        "notes": list(result.notes),
        "summary": summary,
        "cases": [_case_record(case) for case in result.cases],
    }
    if extra:
        record["extra"] = json_or_none(dict(extra))
    return record




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
    values["smoothgrad_noise"] = decode_float(values["smoothgrad_noise"])
    if values["ig2_step_size"] is not None:  # None means "the model's default", not NaN
        values["ig2_step_size"] = decode_float(values["ig2_step_size"])
    return EvaluationSettings(**values)


_OPTIONAL_OUTCOME_FIELDS = ("convergence", "path_reach", "short_paths")


def _outcome_from(record: Mapping[str, Any]) -> MethodOutcome:
    names = tuple(item.name for item in fields(MethodOutcome))
    # Records written before these estimates existed lack them: NaN, "not measured".
    require(record, tuple(n for n in names if n not in _OPTIONAL_OUTCOME_FIELDS),
            "a method outcome")
    values: dict[str, Any] = {}
    for name in names:
        if name not in record:
            continue
        if name in _OUTCOME_ARRAYS:
            values[name] = decode_array(record[name])
        elif name == "method":
            values[name] = str(record[name])
        elif name == "n_evaluations":
            values[name] = int(record[name])
        else:
            values[name] = decode_float(record[name])
    return MethodOutcome(**values)


def _case_from(record: Mapping[str, Any]) -> CaseOutcome:
    names = tuple(item.name for item in fields(CaseOutcome))
    require(record, names, f"case {record.get('case_id', '?')!r}"
             if isinstance(record, Mapping) else "a case")
    return CaseOutcome(
        case_id=str(record["case_id"]), target=int(record["target"]),
        label=None if record["label"] is None else int(record["label"]),
        predicted=int(record["predicted"]),
        f_input=decode_float(record["f_input"]), f_baseline=decode_float(record["f_baseline"]),
        **{name: decode_array(record[name]) for name in _CASE_ARRAYS},
        random_deletion_auc=decode_float(record["random_deletion_auc"]),
        random_insertion_auc=decode_float(record["random_insertion_auc"]),
        outcomes=tuple(_outcome_from(o) for o in record["outcomes"]),
        disagreement=decode_float(record["disagreement"]),
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
    require(record, _TOP_KEYS, "the report")
    model = record["model"]
    require(model, _MODEL_KEYS, "the report's model section")
    if model["modality"] not in ("image", "text", "tabular"):
        raise ReportFormatError(f"Unknown modality {model['modality']!r} in the report.")
    return EvaluationResult(
        model_name=str(model["name"]), model_title=str(model["title"]),
        modality=model["modality"], weights_hash=str(model["weights_sha256"]),
        class_names=tuple(model["class_names"]),
        settings=_settings_from(record["settings"]),
        cases=tuple(_case_from(case) for case in record["cases"]),
        n_requested=int(record["n_requested"]), cancelled=bool(record["cancelled"]),
        seconds=decode_float(record["seconds"]), device=str(record["device"]),
        expected_area_share=decode_float(record["expected_area_share"]),
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
