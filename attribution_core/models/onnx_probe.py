"""Measuring what each column of an ONNX pipeline's encoding front is (see
:mod:`.onnx_categorical`): its categories, what an empty cell and an unknown category become,
and which encoded slots it owns, by running the front with one column changed at a time."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from attribution_core import limits
from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.models.onnx_split import FrontEvaluator
from attribution_core.models.spec import ModelLoadError

UNKNOWN_TEXT = "\u2063a category no encoder knows\u2063"
UNKNOWN_INT = -2_000_000_007
MAX_CATEGORIES = limits.MAX_COLUMN_CATEGORIES
MAX_CANDIDATES = limits.MAX_ENCODER_CATEGORIES  # probed per column (encoder lists + reference)
MAX_ENCODED_WIDTH = limits.MAX_ENCODED_WIDTH  # slots of the encoded row
# Rows per run of the front, while probing and always after: the check's child ran runs this
# large within its memory budget, so the shared process never runs a larger one.
PROBE_CHUNK = 256


@dataclass(frozen=True)
class ColumnFeed:
    """How one raw column reaches the graph: its input (or position in the one input)."""

    name: str
    kind: str  # "float", "int", "string"
    dtype: Any
    input_index: int
    position: int | None  # the column within a single multi-column input


class OnnxRowEncoder:
    """Raw rows (numbers, category codes) -> the front's feeds -> encoded rows."""

    def __init__(self, evaluator: FrontEvaluator, feeds: Sequence[ColumnFeed],
                 schema: cat_io.TabularSchema | None = None) -> None:
        self.evaluator = evaluator
        self.feeds = tuple(feeds)
        self.schema = schema  # type: ignore[assignment]

    def encode_cells(self, cells: Sequence[np.ndarray]) -> np.ndarray:
        """Cells per column (strings, ints or floats, one array of R values each)."""
        return self.evaluator(self._feeds(cells))

    def cut_dtype(self, cells: Sequence[np.ndarray]) -> np.dtype[Any]:
        """The element type of the cut tensor (float32 or float64)."""
        return self.evaluator.raw(self._feeds(cells)).dtype

    def _feeds(self, cells: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        inputs = self.evaluator.inputs
        feeds: dict[str, np.ndarray] = {}
        if len(inputs) == 1 and self.feeds[0].position is not None:
            graph = inputs[0]
            stacked = np.stack([np.asarray(c, dtype=self.feeds[0].dtype) for c in cells], 1)
            feeds[graph.name] = stacked if graph.rank != 1 else stacked[:, 0]
        else:
            for column, values in zip(self.feeds, cells, strict=True):
                graph = inputs[column.input_index]
                array = np.asarray(values, dtype=column.dtype)
                feeds[graph.name] = array if graph.rank == 1 else array.reshape(-1, 1)
        return feeds

    def encode_valid(self, raw: np.ndarray) -> np.ndarray:
        assert self.schema is not None
        cells = []
        for j, (feed, column) in enumerate(zip(self.feeds, self.schema.columns, strict=True)):
            values = raw[:, j]
            if column.kind == "numeric":
                cells.append(values.astype(feed.dtype) if feed.kind == "float" else
                             np.round(values).astype(feed.dtype))
                continue
            unknown = UNKNOWN_TEXT if feed.kind == "string" else UNKNOWN_INT
            cells.append(np.array([
                "" if v != v else column.categories[int(v)] if int(v) < len(column.categories)
                else unknown for v in values], dtype=object))
            if feed.kind == "int":
                cells[-1] = np.array([int(c) if c != "" else UNKNOWN_INT for c in cells[-1]],
                                     dtype=feed.dtype)
        try:
            if len(raw) <= PROBE_CHUNK:
                return self.encode_cells(cells)
            return np.concatenate([self.encode_cells([c[start:start + PROBE_CHUNK]
                                                      for c in cells])
                                   for start in range(0, len(raw), PROBE_CHUNK)])
        except ValueError as error:
            raise ModelLoadError(f"The pipeline refused a row: {error}") from error


class _Prober:
    """Runs the front on base rows with one column changed (see the module docstring)."""

    def __init__(self, encoder: OnnxRowEncoder, base: list[list[object]]) -> None:
        self.encoder = encoder
        self.base = base  # [B][F] front values
        self.base_encoded = [self.encode_rows([row])[0] for row in base]

    def encode_rows(self, rows: Sequence[Sequence[object]]) -> list[np.ndarray | None]:
        """Each row's encoding, None where the front refuses the row."""
        def cells(chosen: Sequence[Sequence[object]]) -> list[np.ndarray]:
            return [np.array([r[j] for r in chosen], dtype=object)
                    for j in range(len(self.encoder.feeds))]

        try:
            out = self.encoder.encode_cells(cells(rows))
            return [row if np.isfinite(row).all() else None for row in out]
        except ValueError:
            if len(rows) == 1:
                return [None]
        return [self.encode_rows([row])[0] for row in rows]

    def with_values(self, column: int, values: Sequence[object]
                    ) -> list[list[np.ndarray | None]]:
        """[B][V]: the encodings of each base row with ``column`` set to each value."""
        found = []
        for row in self.base:
            changed = [[*row[:column], value, *row[column + 1:]] for value in values]
            encoded: list[np.ndarray | None] = []
            for start in range(0, len(changed), PROBE_CHUNK):  # bounded memory per run
                encoded.extend(self.encode_rows(changed[start:start + PROBE_CHUNK]))
            found.append(encoded)
        return found

    def moved(self, encodings: list[list[np.ndarray | None]]) -> set[int]:
        slots: set[int] = set()
        for base, row in zip(self.base_encoded, encodings, strict=True):
            for encoded in row:
                if encoded is not None and base is not None:
                    slots.update(np.nonzero(np.abs(encoded - base) > 1e-12)[0].tolist())
        return slots


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is not None and b is not None and bool(np.allclose(a, b, rtol=0, atol=1e-12))


def _numeric_column(prober: _Prober, j: int, feed: ColumnFeed, observed: list[object]
                    ) -> tuple[cat_io.TabularColumn, set[int]]:
    numbers = np.array([v for v in observed if v is not None], dtype=np.float64)
    probes = list(np.quantile(numbers, [0.1, 0.5, 0.9])) if numbers.size else []
    probes += [float(prober.base[0][j]) + 1.0, float(prober.base[0][j]) - 1.0]  # type: ignore
    if feed.kind == "int":
        probes = [round(p) for p in probes]
    slots = prober.moved(prober.with_values(j, probes))
    missing: cat_io.MissingPolicy = "refused"
    note = ""
    if feed.kind == "float":
        with_nan = prober.with_values(j, [math.nan])
        if all(row[0] is not None for row in with_nan):
            missing, note = "imputed", "missing; imputed by the pipeline"
            slots |= prober.moved(with_nan)
    return cat_io.TabularColumn(feed.name, "numeric", missing=missing, missing_note=note), slots


def _categorical_column(prober: _Prober, j: int, feed: ColumnFeed, lists: list[list[object]],
                        observed: list[object]) -> tuple[cat_io.TabularColumn, set[int], bool]:
    unknown: object = UNKNOWN_TEXT if feed.kind == "string" else UNKNOWN_INT
    # The empty string is how an empty cell reaches the graph (a string imputer's
    # missing_values): it is probed as "missing" below, never offered as a category.
    candidates = list(dict.fromkeys([v for values in lists for v in values if v != ""] +
                                    [v for v in observed if v is not None]))
    if len(candidates) > MAX_CANDIDATES:
        raise ModelLoadError(f"Column {feed.name!r}: {len(candidates):,} candidate categories "
                             f"(encoder lists and reference values); at most "
                             f"{MAX_CATEGORIES:,} categories per column are supported.")
    probes = [*candidates, unknown] + ([""] if feed.kind == "string" else [])
    found = prober.with_values(j, probes)
    at = {value: index for index, value in enumerate(probes)}

    def per_base(value: object) -> list[np.ndarray | None]:
        return [row[at[value]] for row in found]

    unknown_rows = per_base(unknown)
    unknown_ok = all(e is not None for e in unknown_rows)
    valid = {c for c in candidates if all(e is not None for e in per_base(c))}
    differs = {c for c in valid if any(not _same(e, u) for e, u in
                                       zip(per_base(c), unknown_rows, strict=True))}
    categories: list[object] = []
    for values in lists:  # an encoder's whole list, once one of its values moves this column
        if any(v in differs for v in values):
            categories.extend(v for v in values if v in valid and v not in categories)
    categories.extend(sorted((c for c in differs if c not in categories), key=str))
    if not categories:
        raise ModelLoadError(f"Column {feed.name!r}: no category the pipeline accepts was found "
                             "(neither in its encoders nor in the reference CSV).")
    if len(categories) > MAX_CATEGORIES:
        raise ModelLoadError(f"Column {feed.name!r} has {len(categories):,} categories; at "
                             f"most {MAX_CATEGORIES:,} are supported.")
    slots = prober.moved([[row[at[v]] for v in [*categories, unknown]] for row in found])
    order = sorted(slots)
    missing, missing_note, empty_slots = _empty_cell(prober, feed, categories, per_base,
                                                     unknown_rows if unknown_ok else None)
    slots |= empty_slots
    unknown_note = _unknown_note(unknown_rows, order) if unknown_ok else ""
    first = per_base(categories[0])[0]
    one_hot = first is not None and all(
        e is not None and set(np.round(e[order], 12).tolist()) <= {0.0, 1.0}
        and float(e[order].sum()) <= 1.0 for e in (per_base(c)[0] for c in categories))
    column = cat_io.TabularColumn(
        feed.name, "categorical", tuple(str(c) for c in categories), missing, missing_note,
        unknown_ok, unknown_note)
    return column, slots, one_hot


Outcomes = Callable[[object], list[np.ndarray | None]]  # a value's encoding on each base row


def _empty_cell(prober: _Prober, feed: ColumnFeed, categories: Sequence[object],
                per_base: Outcomes, unknown_rows: list[np.ndarray | None] | None
                ) -> tuple[cat_io.MissingPolicy, str, set[int]]:
    """What an empty cell of a string column becomes (refused, imputed as a category or as
    the pipeline's own missing value, or encoded like an unknown category; ``unknown_rows``
    None when unknown categories are refused) and the slots it moves."""
    if feed.kind != "string" or not all(e is not None for e in per_base("")):
        return "refused", "", set()
    empty = per_base("")
    slots = prober.moved([[e] for e in empty])
    same = [c for c in categories if all(_same(a, b) for a, b in
                                         zip(empty, per_base(c), strict=True))]
    if same:
        return "imputed", f"missing; imputed as {same[0]!r} by the pipeline", slots
    if unknown_rows is not None and all(_same(a, b) for a, b in
                                        zip(empty, unknown_rows, strict=True)):
        return "unknown", "missing; encoded like an unknown category", slots
    return "imputed", "missing; encoded as the pipeline's missing value", slots


def _unknown_note(unknown_rows: list[np.ndarray | None], order: Sequence[int]) -> str:
    """How an accepted unknown category is encoded, in words."""
    zero = all(np.allclose(u[list(order)], 0.0) for u in unknown_rows if u is not None)
    return ("the encoder sets all of its slots to zero (handle_unknown='ignore')" if zero else
            "the encoder maps it to its own value (unknown_value or an 'infrequent' slot)")


def _slot_names(columns: Sequence[cat_io.TabularColumn], groups: Sequence[int],
                prober: _Prober) -> tuple[str, ...]:
    """``city = Paris`` for a one-hot slot, ``age`` for a column's only slot, else
    ``name [k/n]``."""
    names = []
    hot: dict[int, list[np.ndarray | None]] = {}
    for e, j in enumerate(groups):
        column = columns[j]
        own = [s for s, g in enumerate(groups) if g == j]
        name = column.name if len(own) == 1 else f"{column.name} [{own.index(e) + 1}/{len(own)}]"
        if column.kind == "numeric" and len(own) == 1 and not _passes_through(prober, j, e):
            name = f"{column.name} (scaled)"  # the out-of-domain notice reads slot values
        if column.kind == "categorical":
            if j not in hot:
                hot[j] = prober.with_values(j, [_front_value(prober.encoder.feeds[j], c)
                                                for c in column.categories])[0]
            ones = [c for c, enc in zip(column.categories, hot[j], strict=True)
                    if enc is not None and abs(float(enc[e]) - 1.0) < 1e-12
                    and np.count_nonzero(np.abs(enc[own]) > 1e-12) == 1]
            if len(ones) == 1:
                name = f"{column.name} = {ones[0]}"
        names.append(name)
    return tuple(names)


def _passes_through(prober: _Prober, j: int, slot: int) -> bool:
    """Whether the slot holds the column's raw value (no scaling before the model)."""
    start = float(prober.base[0][j])  # type: ignore[arg-type]
    values = [round(start) + 2, round(start) - 3]
    found = prober.with_values(j, values)[0]
    return all(e is not None and abs(float(e[slot]) - v) <= 1e-6 * max(1.0, abs(v))
               for e, v in zip(found, values, strict=True))


def _front_value(feed: ColumnFeed, category: str) -> object:
    return int(category) if feed.kind == "int" else category


def measure_schema(encoder: OnnxRowEncoder, lists: list[list[list[object]]],
                   observed: list[list[object]], base: list[list[object]]
                   ) -> cat_io.TabularSchema:
    """Every column's kind, categories, missing / unknown handling and slots, measured."""
    prober = _Prober(encoder, base)
    if any(e is None for e in prober.base_encoded):
        raise ModelLoadError("The pipeline refused its own reference rows.")
    width = int(prober.base_encoded[0].shape[0])  # type: ignore[union-attr]
    if width > MAX_ENCODED_WIDTH:
        raise ModelLoadError(f"The pipeline encodes a row into {width:,} slots; at most "
                             f"{MAX_ENCODED_WIDTH:,} are supported.")
    columns: list[cat_io.TabularColumn] = []
    owners: dict[int, list[int]] = {}
    one_hot = True
    for j, feed in enumerate(encoder.feeds):
        strings = feed.kind == "string"
        mine = [lst for lst in lists[j] if lst and all(isinstance(v, str) == strings
                                                       for v in lst)]
        found = None
        if feed.kind == "string" or (feed.kind == "int" and mine):
            try:
                found = _categorical_column(prober, j, feed, mine, observed[j])
            except ModelLoadError:
                if feed.kind == "string":
                    raise
        if found is not None:  # an integer column no encoder list moves is a number
            column, slots, hot = found
            one_hot &= hot
        else:
            column, slots = _numeric_column(prober, j, feed, observed[j])
        columns.append(column)
        for slot in slots:
            owners.setdefault(slot, []).append(j)
    shared = {e: js for e, js in owners.items() if len(js) > 1}
    if shared:
        e, js = next(iter(sorted(shared.items())))
        raise ModelLoadError(
            f"Encoded slot {e} depends on the columns "
            f"{', '.join(repr(columns[j].name) for j in js)}"
            " together, so its attribution cannot be given to one column (an interaction or a "
            "mixing step before the model). Export the model without that step.")
    silent = [c.name for j, c in enumerate(columns) if not any(j in v for v in owners.values())]
    if silent:
        raise ModelLoadError(f"Column(s) {', '.join(map(repr, silent))} never change the encoded "
                             "row: the pipeline reads them but does not use them.")
    groups: list[int] = []
    for e in range(width):  # constant slots (never moved) join their neighbour: attribution 0
        owner = owners.get(e, [None])[0]
        groups.append(owner if owner is not None else (groups[-1] if groups else -1))
    if groups and groups[0] == -1:
        first = next(g for g in groups if g != -1)
        groups = [first if g == -1 else g for g in groups]
    schema = cat_io.TabularSchema(tuple(columns), tuple(groups),
                                  ("",) * width, one_hot=one_hot)
    return cat_io.TabularSchema(schema.columns, schema.groups,
                                _slot_names(schema.columns, schema.groups, prober), one_hot)


