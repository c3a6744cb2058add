"""A sharded run's results on disk: one JSON + one safetensors file per shard, then one report.

Each finished shard is written as ``shards/shard-NNNNN.json`` (its case records, the maps left
out) and ``shards/shard-NNNNN.safetensors`` (its case x method maps), each written to a
temporary name and renamed, so a killed run never leaves half a shard that looks finished.
``shards/manifest.json`` holds the run's fingerprint (model, weights, settings, input, shard
size): ``--resume`` only reuses shards written for the same fingerprint. Nothing is pickled:
shards are read back with the report's own JSON decoder and safetensors.

:func:`merge` turns the shards into one :class:`EvaluationResult`, which ``write_report`` writes
as the same ``evaluation.json``, ``.html`` and ``_attributions.safetensors`` as a local run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from attribution_core.evaluation.record_encoding import ReportFormatError, encode_array
from attribution_core.evaluation.report import _case_from, _case_record, _outcome_record
from attribution_core.evaluation.types import CaseOutcome, EvaluationResult, EvaluationSettings

SHARD_FOLDER = "shards"
MANIFEST = "manifest.json"
SHARD_SCHEMA = "attribution_core.evaluation.shard"
_EMPTY_SCORES = encode_array(np.zeros(0, dtype=np.float32))


@dataclass(frozen=True)
class ShardOutput:
    """A finished shard as bytes, ready to be written (a worker sends this to the driver)."""

    index: int
    n_cases: int
    record_json: bytes
    maps_safetensors: bytes
    seconds: float
    attempt_pid: int  # which worker process computed it (the tests count restarts with it)


def encode_shard(index: int, cases: Sequence[CaseOutcome], notes: Sequence[str],
                 seconds: float, meta: Mapping[str, Any]) -> ShardOutput:
    """Case records as JSON with the maps moved to safetensors (keyed ``<position>/<method>``)."""
    import torch
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    records = []
    for position, case in enumerate(cases):
        record = _case_record(replace(case, outcomes=()))
        record["outcomes"] = []
        for outcome in case.outcomes:
            tensors[f"{position}/{outcome.method}"] = torch.from_numpy(
                np.ascontiguousarray(outcome.scores).copy())
            outcome_record = _outcome_record(replace(outcome, scores=np.zeros(0)))
            outcome_record["scores"] = None  # in the safetensors file
            record["outcomes"].append(outcome_record)
        records.append(record)
    body = {"schema": SHARD_SCHEMA, "index": index, "n_cases": len(cases),
            "seconds": seconds, "notes": list(notes), "meta": dict(meta), "cases": records}
    return ShardOutput(index, len(cases),
                       json.dumps(body, allow_nan=False, separators=(",", ":")).encode(),
                       save(tensors) if tensors else b"", seconds, os.getpid())


def decode_shard(record_json: bytes, maps_safetensors: bytes
                 ) -> tuple[tuple[CaseOutcome, ...], tuple[str, ...], float]:
    from safetensors.torch import load

    body = json.loads(record_json)
    if not isinstance(body, dict) or body.get("schema") != SHARD_SCHEMA:
        raise ReportFormatError("Not a shard of a sharded evaluation.")
    maps = load(maps_safetensors) if maps_safetensors else {}
    cases = []
    for position, record in enumerate(body["cases"]):
        outcomes = record["outcomes"]
        record = {**record, "outcomes": [{**o, "scores": _EMPTY_SCORES} for o in outcomes]}
        case = _case_from(record)
        case = replace(case, outcomes=tuple(
            replace(o, scores=maps[f"{position}/{o.method}"].numpy()) for o in case.outcomes))
        cases.append(case)
    return tuple(cases), tuple(body["notes"]), float(body["seconds"])


def fingerprint(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class ShardStore:
    """The ``shards`` folder of one output folder."""

    def __init__(self, out: Path) -> None:
        self.folder = Path(out) / SHARD_FOLDER

    def _path(self, index: int, suffix: str) -> Path:
        return self.folder / f"shard-{index:05d}{suffix}"

    def maps_name(self, index: int) -> str:
        """The file name of a shard's maps (inside :attr:`folder`)."""
        return self._path(index, ".safetensors").name

    def prepare(self, run_fingerprint: str, description: Mapping[str, Any], resume: bool
                ) -> set[int]:
        """Shards already done for this run (``resume``), else a clean folder; raises when
        ``resume`` meets shards of another run."""
        manifest = self.folder / MANIFEST
        if resume and manifest.is_file():
            known = json.loads(manifest.read_text(encoding="utf-8"))
            if known.get("fingerprint") != run_fingerprint:
                raise ValueError(
                    f"--resume: the shards in {self.folder} belong to another run (other model, "
                    "settings, input or shard size); run without --resume to start over.")
            return self.done()
        if self.folder.exists():
            shutil.rmtree(self.folder)  # our own files only: the folder is ours by its name
        self.folder.mkdir(parents=True)
        _atomic_write(manifest, json.dumps({"fingerprint": run_fingerprint,
                                            "run": dict(description)}, default=str).encode())
        return set()

    def done(self) -> set[int]:
        indices = set()
        for path in self.folder.glob("shard-*.json"):
            index = int(path.stem.split("-")[1])
            if self._path(index, ".safetensors").is_file():
                indices.add(index)
        return indices

    def write(self, output: ShardOutput) -> None:
        # The maps first and the JSON last: a shard counts as done when its JSON exists.
        _atomic_write(self._path(output.index, ".safetensors"), output.maps_safetensors)
        _atomic_write(self._path(output.index, ".json"), output.record_json)

    def read(self, index: int) -> tuple[tuple[CaseOutcome, ...], tuple[str, ...], float]:
        return decode_shard(self._path(index, ".json").read_bytes(),
                            self._path(index, ".safetensors").read_bytes())

    def modified(self, index: int) -> float:
        return self._path(index, ".json").stat().st_mtime_ns / 1e9


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@dataclass(frozen=True)
class RunHeader:
    """What a merged result says about the run besides its cases."""

    model_name: str
    model_title: str
    modality: Any
    weights_hash: str
    class_names: tuple[str, ...]
    settings: EvaluationSettings
    device: str
    n_requested: int


def merge(store: ShardStore, indices: Iterable[int], header: RunHeader, *, cancelled: bool
          ) -> EvaluationResult:
    """The shards' cases in input order as one result (what a local run would return)."""
    cases: list[CaseOutcome] = []
    notes: list[str] = []
    seconds = 0.0
    for index in sorted(indices):
        shard_cases, shard_notes, shard_seconds = store.read(index)
        cases.extend(shard_cases)
        notes.extend(shard_notes)
        seconds += shard_seconds
    shares = [float(np.mean(c.expected)) for c in cases if c.expected is not None]
    return EvaluationResult(
        model_name=header.model_name, model_title=header.model_title, modality=header.modality,
        weights_hash=header.weights_hash, class_names=header.class_names,
        settings=header.settings, cases=tuple(cases), n_requested=header.n_requested,
        cancelled=cancelled, seconds=seconds, device=header.device,
        expected_area_share=float(np.mean(shares)) if shares else math.nan, notes=tuple(notes))


class Progress:
    """Cases per second and time left, from the cases computed in this run (reused shards
    count as done, not as speed)."""

    def __init__(self, total_cases: int) -> None:
        self.total = total_cases
        self.done = 0
        self._computed = 0
        self._started = time.perf_counter()

    def reuse(self, n_cases: int) -> None:
        self.done += n_cases

    def add(self, n_cases: int) -> str:
        self.done += n_cases
        self._computed += n_cases
        rate = self._computed / max(time.perf_counter() - self._started, 1e-9)
        left = max(self.total - self.done, 0) / rate if rate > 0 else math.inf
        eta = f"ETA {left:.0f} s" if math.isfinite(left) else "ETA unknown"
        return f"{self.done}/{self.total} cases, {rate:.2f} cases/s, {eta}"
