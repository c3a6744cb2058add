"""A sharded run's report, written from its shard files one shard at a time.

The driver of a sharded run never holds every case: :func:`write_streamed_report` reads the
finished shards in input order, twice, one shard in memory at a time.

1. The first pass appends each shard's cases to the Parquet case table
   (``evaluation_cases.parquet``, see ``case_table``), adds its curves to running means, keeps
   the most disagreeing cases' places in a heap of ``MAX_CASE_SECTIONS``, and plans the maps'
   file (key, dtype and shape of each map).
2. The summaries are computed exactly from the table, one or two columns at a time.
3. The second pass writes ``evaluation.json`` case by case (the same record a local run writes)
   and the maps into ``evaluation_attributions.safetensors`` tensor by tensor.
4. The HTML page is drawn from a :class:`ReportView` (the box plots' points read from the
   table up to ``MAX_POINT_CASES`` cases, exact quartiles above), with the hardest cases read
   back from their shards.

What grows with the number of cases: the files, one table column while it is summarised, and
(up to ``tensor_file.MAX_TENSORS`` maps) the maps file's header. Above that many maps the
combined maps file is not written: the maps stay in ``shards/shard-NNNNN.safetensors``, found
through the table's ``maps_file`` and ``<method>.map_key`` columns.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attribution_core.evaluation.case_table import (
    CASE_TABLE,
    CaseTableWriter,
    column_name,
    methods_run,
    read_column,
    table_summaries,
)
from attribution_core.evaluation.report import (
    SCHEMA_VERSION,
    ReportFiles,
    _case_record,
    summary_record,
    to_record,
)
from attribution_core.evaluation.report_html import render_view
from attribution_core.evaluation.report_view import (
    AGREEMENT_METRICS,
    CURVE_KINDS,
    MAX_CASE_SECTIONS,
    MAX_POINT_CASES,
    RANDOM_LABEL,
    ReportView,
    Spread,
    completeness_values,
    curve_grid,
)
from attribution_core.evaluation.shards import SHARD_FOLDER, RunHeader, ShardStore
from attribution_core.evaluation.tensor_file import MAX_TENSORS, TensorFileWriter
from attribution_core.evaluation.types import (
    CaseOutcome,
    CurveMean,
    EvaluationResult,
    MethodSummary,
)

# Notes (skipped rows, refused images) kept for the report; a huge input with many bad rows
# would otherwise grow them without bound. The rest are counted.
MAX_NOTES = 1_000


@dataclass(frozen=True)
class StreamedReport:
    """What was written, and the figures of the summary line."""

    files: ReportFiles
    table_path: Path
    attributions_written: bool
    n_done: int
    seconds: float
    summaries: tuple[MethodSummary, ...]


class _FirstPass:
    """Everything the report needs from the cases that is smaller than the cases."""

    def __init__(self, header: RunHeader) -> None:
        grid = curve_grid(header.settings)
        labels = (*header.settings.methods, RANDOM_LABEL)
        self.curves = {kind: {label: CurveMean(grid) for label in labels} for kind in CURVE_KINDS}
        self.hardest: list[tuple[float, int, int, int]] = []  # (disagreement, -position, ...)
        self.n_done = 0
        self.seconds = 0.0
        self.notes: list[str] = []
        self.notes_left_out = 0
        self.shares = [0.0, 0]
        self.maps = TensorFileWriter()
        self.map_index: list[list[str]] = []  # [key, case id, method]: the file's "keys"
        self.too_many_maps = False

    def add(self, shard: int, cases: tuple[CaseOutcome, ...], notes: tuple[str, ...],
            seconds: float) -> None:
        self.seconds += seconds
        room = MAX_NOTES - len(self.notes)
        self.notes.extend(notes[:max(room, 0)])
        self.notes_left_out += max(len(notes) - max(room, 0), 0)
        for position, case in enumerate(cases):
            self._add_case(shard, position, case)
        self.n_done += len(cases)

    def _add_case(self, shard: int, position: int, case: CaseOutcome) -> None:
        number = self.n_done + position
        for kind in CURVE_KINDS:
            for outcome in case.outcomes:
                self.curves[kind][outcome.method].add(getattr(outcome, kind), case.fractions)
            self.curves[kind][RANDOM_LABEL].add(getattr(case, f"random_{kind}"), case.fractions)
        if not math.isnan(case.disagreement):
            item = (case.disagreement, -number, shard, position)
            if len(self.hardest) < MAX_CASE_SECTIONS:
                heapq.heappush(self.hardest, item)
            elif item > self.hardest[0]:
                heapq.heapreplace(self.hardest, item)
        if case.expected is not None:
            self.shares[0] += float(np.mean(case.expected))
            self.shares[1] += 1
        if self.too_many_maps:
            return
        if len(self.maps) + len(case.outcomes) > MAX_TENSORS:
            self.too_many_maps = True
            self.maps, self.map_index = TensorFileWriter(), []  # let the plan go
            return
        for outcome in case.outcomes:
            scores = np.asarray(outcome.scores)
            key = _map_key(self.maps, case, number, outcome.method)
            self.maps.plan(key, scores.dtype, scores.shape)
            self.map_index.append([key, case.case_id, outcome.method])


def _map_key(maps: TensorFileWriter, case: CaseOutcome, number: int, method: str) -> str:
    # As ``report.attribution_tensors``: a repeated case id gets ``#<position>``.
    key = f"{case.case_id}/{method}"
    return key if key not in maps else f"{case.case_id}#{number}/{method}"


def write_streamed_report(store: ShardStore, indices: Iterable[int], header: RunHeader,
                          folder: Path, *, cancelled: bool,
                          extra: Mapping[str, Any] | None = None, stem: str = "evaluation"
                          ) -> StreamedReport:
    """Write the table, ``<stem>.json``, ``.html`` and ``_attributions.safetensors``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(folder / f"{stem}.json", folder / f"{stem}.html",
                        folder / f"{stem}_attributions.safetensors")
    table_path = folder / CASE_TABLE
    order = sorted(indices)
    first = _FirstPass(header)
    writer = CaseTableWriter(table_path, header.settings.methods)
    try:
        for index in order:
            cases, notes, seconds = store.read(index)
            writer.add(index, f"{SHARD_FOLDER}/{store.maps_name(index)}", cases)
            first.add(index, cases, notes, seconds)
    finally:
        writer.close()
    methods = methods_run(table_path, header.settings.methods)
    summaries = table_summaries(table_path, methods)
    notes = tuple(first.notes) + ((f"{first.notes_left_out} further notes are left out of "
                                   "the report.",) if first.notes_left_out else ())
    shares, counted = first.shares
    empty = EvaluationResult(
        model_name=header.model_name, model_title=header.model_title, modality=header.modality,
        weights_hash=header.weights_hash, class_names=header.class_names,
        settings=header.settings, cases=(), n_requested=header.n_requested,
        cancelled=cancelled, seconds=first.seconds, device=header.device,
        expected_area_share=shares / counted if counted else math.nan, notes=notes)
    record = to_record(empty, extra=extra)
    record.update(n_done=first.n_done, summary=summary_record(summaries))
    del record["cases"]
    write_maps = not first.too_many_maps
    if not write_maps:
        files.attributions_path.unlink(missing_ok=True)  # no stale file from an earlier run
    _second_pass(store, order, files, record, first if write_maps else None, header)
    view = _view(empty, first, table_path, methods, summaries, store)
    files.html_path.write_text(render_view(view, created=record["created"]), encoding="utf-8")
    return StreamedReport(files, table_path, write_maps, first.n_done, first.seconds, summaries)


def _second_pass(store: ShardStore, order: list[int], files: ReportFiles,
                 head: dict[str, Any], first: _FirstPass | None, header: RunHeader) -> None:
    """``evaluation.json`` case by case and (``first`` given) the maps tensor by tensor."""
    text = json.dumps(head, allow_nan=False, separators=(",", ":"))
    with contextlib.ExitStack() as stack:
        write_map = None
        if first is not None:
            write_map = stack.enter_context(first.maps.writing(files.attributions_path, {
                "model": header.model_name, "weights_sha256": header.weights_hash,
                "schema_version": str(SCHEMA_VERSION), "keys": json.dumps(first.map_index)}))
        handle = stack.enter_context(files.json_path.open("w", encoding="utf-8"))
        handle.write(text[:-1] + ',"cases":[')  # the head without its closing brace
        separator = ""
        for index in order:
            for case in store.read(index)[0]:
                handle.write(separator + json.dumps(_case_record(case), allow_nan=False,
                                                    separators=(",", ":")))
                separator = ","
                for outcome in case.outcomes if write_map is not None else ():
                    write_map(np.asarray(outcome.scores))
        handle.write("]}")


def _view(empty: EvaluationResult, first: _FirstPass, table: Path, methods: tuple[str, ...],
          summaries: tuple[MethodSummary, ...], store: ShardStore) -> ReportView:
    n = first.n_done
    ids = read_column(table, "case_id") if n <= MAX_POINT_CASES else None
    ran = {m: read_column(table, column_name(m, "ran")) for m in methods}  # 1 byte per case

    def of_method(method: str, metric: str) -> np.ndarray:
        return read_column(table, column_name(method, metric))[ran[method]]

    def ids_of(mask: np.ndarray) -> Any:
        return None if ids is None else ids[mask]

    spreads: dict[str, tuple[Spread, ...]] = {}
    for kind in CURVE_KINDS:
        spreads[f"{kind}_auc"] = (
            *(Spread.of(m, of_method(m, f"{kind}_auc"), ids_of(ran[m]), n) for m in methods),
            Spread.of(RANDOM_LABEL, read_column(table, f"random_{kind}_auc"), ids, n))
    completeness = []
    for method in methods:
        deltas = of_method(method, "relative_delta")
        finite = np.isfinite(deltas)
        if finite.any():
            method_ids = ids_of(ran[method])
            completeness.append(Spread.of(method, completeness_values(deltas[finite]),
                                          None if method_ids is None else method_ids[finite],
                                          n))
    spreads["completeness"] = tuple(completeness)
    for metric in AGREEMENT_METRICS:
        spreads[metric] = tuple(
            Spread.of(m, values[np.isfinite(values)], None, n)
            for m in methods for values in [of_method(m, metric)])
    ranked = sorted(first.hardest, key=lambda item: (-item[0], -item[1]))
    loaded: dict[int, tuple[CaseOutcome, ...]] = {}
    hardest = []
    for _, _, shard, position in ranked:  # at most MAX_CASE_SECTIONS shards are read
        if shard not in loaded:
            loaded[shard] = store.read(shard)[0]
        hardest.append(loaded[shard][position])
    loaded.clear()
    return ReportView(
        model_name=empty.model_name, model_title=empty.model_title, modality=empty.modality,
        weights_hash=empty.weights_hash, class_names=empty.class_names,
        settings=empty.settings, device=empty.device, n_requested=empty.n_requested,
        n_done=n, cancelled=empty.cancelled, seconds=empty.seconds,
        expected_area_share=empty.expected_area_share, notes=empty.notes, methods=methods,
        summaries=summaries,
        mean_curves={kind: {**{m: first.curves[kind][m].mean() for m in methods},
                            RANDOM_LABEL: first.curves[kind][RANDOM_LABEL].mean()}
                     for kind in CURVE_KINDS},
        spreads=spreads, has_expectations=bool(read_column(table, "has_expected").any()),
        hardest=tuple(hardest))
