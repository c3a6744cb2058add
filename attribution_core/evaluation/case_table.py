"""A sharded run's cases as one Parquet table, written shard by shard, read column by column.

``evaluation_cases.parquet`` has one row per case in input order (one row group per shard):
the case's facts, and for every method of the run its metrics and where its map lies
(``maps_file``, a shard's safetensors file relative to the output folder, and ``map_key``
inside it). Columns are named ``<method>.<metric>`` (``IG.deletion_auc``); a method a case did
not run has ``<method>.ran`` false and nulls elsewhere. Nothing here holds more than one shard
of rows: :class:`CaseTableWriter` appends a shard at a time, :func:`read_column` reads one
column, and :func:`table_summaries` computes every statistic of the report exactly from one
or two columns at a time (8 bytes per case per column).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attribution_core.evaluation.types import CaseOutcome, MethodSummary, summarise_columns

CASE_TABLE = "evaluation_cases.parquet"
METRICS = ("deletion_auc", "insertion_auc", "delta", "relative_delta", "precision_at_k",
           "rank_correlation", "mask_share", "pointing_game", "seconds", "convergence",
           "path_reach", "short_paths")
CASE_FLOATS = ("f_input", "f_baseline", "random_deletion_auc", "random_insertion_auc",
               "disagreement", "expected_share")


def column_name(method: str, field: str) -> str:
    return f"{method}.{field}"


def table_schema(methods: Sequence[str]) -> Any:
    import pyarrow as pa

    fields = [pa.field("position", pa.int64()), pa.field("case_id", pa.string()),
              pa.field("shard", pa.int32()), pa.field("shard_position", pa.int32()),
              pa.field("maps_file", pa.string()), pa.field("target", pa.int64()),
              pa.field("label", pa.int64()), pa.field("predicted", pa.int64()),
              *(pa.field(name, pa.float64()) for name in CASE_FLOATS),
              pa.field("has_expected", pa.bool_())]
    for method in methods:
        fields += [pa.field(column_name(method, "ran"), pa.bool_()),
                   *(pa.field(column_name(method, m), pa.float64()) for m in METRICS),
                   pa.field(column_name(method, "n_evaluations"), pa.int64()),
                   pa.field(column_name(method, "map_key"), pa.string())]
    return pa.schema(fields)


class CaseTableWriter:
    """Appends one shard's cases at a time (one row group each) to the Parquet file."""

    def __init__(self, path: Path, methods: Sequence[str]) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.methods = tuple(methods)
        self.schema = table_schema(self.methods)
        self.rows = 0
        self._writer = pq.ParquetWriter(str(self.path), self.schema)

    def add(self, shard: int, maps_file: str, cases: Sequence[CaseOutcome]) -> None:
        import pyarrow as pa

        if not cases:
            return
        columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for position, case in enumerate(cases):
            expected = None if case.expected is None else float(np.mean(case.expected))
            facts = {"position": self.rows + position, "case_id": case.case_id,
                     "shard": shard, "shard_position": position, "maps_file": maps_file,
                     "target": int(case.target), "label": case.label,
                     "predicted": int(case.predicted), "f_input": case.f_input,
                     "f_baseline": case.f_baseline,
                     "random_deletion_auc": case.random_deletion_auc,
                     "random_insertion_auc": case.random_insertion_auc,
                     "disagreement": case.disagreement, "expected_share": expected,
                     "has_expected": case.expected is not None}
            for name, value in facts.items():
                columns[name].append(value)
            outcomes = {o.method: o for o in case.outcomes}
            for method in self.methods:
                outcome = outcomes.get(method)
                columns[column_name(method, "ran")].append(outcome is not None)
                for metric in METRICS:
                    columns[column_name(method, metric)].append(
                        None if outcome is None else float(getattr(outcome, metric)))
                columns[column_name(method, "n_evaluations")].append(
                    None if outcome is None else int(outcome.n_evaluations))
                columns[column_name(method, "map_key")].append(
                    None if outcome is None else f"{position}/{method}")
        # NaN stays NaN (a metric that does not apply); null means "not run" or "no mask".
        self._writer.write_table(pa.table(columns, schema=self.schema))
        self.rows += len(cases)

    def close(self) -> None:
        self._writer.close()


def read_column(path: Path, name: str) -> np.ndarray:
    """One column as numpy (float columns: null as NaN; bool columns: null as False)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = pq.read_table(str(path), columns=[name]).column(0)
    if pa.types.is_boolean(column.type):
        return np.asarray(column.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_floating(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.asarray(column.to_numpy(zero_copy_only=False))


def table_summaries(path: Path, methods: Sequence[str]) -> tuple[MethodSummary, ...]:
    """Each method's summary, exact, from the table: the same numbers
    :meth:`EvaluationResult.summaries` gives for the same cases (pass :func:`methods_run`),
    one or two columns at a time (a method's ``ran`` mask is kept while its statistics are
    computed)."""
    summaries = []
    for method in methods:
        ran = read_column(path, column_name(method, "ran"))

        def column(name: str, ran: np.ndarray = ran, method: str = method) -> np.ndarray:
            source = name if name.startswith("random_") else column_name(method, name)
            return read_column(path, source)[ran]

        summaries.append(summarise_columns(method, column))
    return tuple(summaries)


def methods_run(path: Path, methods: Sequence[str]) -> tuple[str, ...]:
    """The methods at least one case ran, in the settings' order; all of them when the table
    is empty (as :attr:`EvaluationResult.methods`)."""
    ran = tuple(m for m in methods if read_column(path, column_name(m, "ran")).any())
    return ran if ran or _rows(path) else tuple(methods)


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(str(path)).metadata.num_rows)
