"""Table rows with categorical columns and missing values: the column schema, per-cell checks,
and attributions folded back from the encoded space to the user's columns.

No Streamlit here. A model whose pipeline encodes its columns (one-hot, ordinal, embeddings,
imputation) is explained in the *encoded* space, where gradients exist; each original column
owns a group of encoded slots, and its attribution is the sum over its slots. Completeness is
kept exactly: the sum over columns is the sum over slots.

Raw rows stay float arrays ``[F]`` (so digests, pools and baselines work as for numeric
models): a numeric cell is its number, a categorical cell the index of its category in
:attr:`TabularColumn.categories`, :data:`UNKNOWN` positions (``len(categories)``) stand for a
category the model does not know (kept only where its encoder accepts one), ``NaN`` is a missing
cell (kept only where the pipeline imputes it) and :data:`NO_CATEGORY` (-1) is the "no
category" baseline: every slot of the column zero.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import pandas as pd
import torch

from attribution_core.limits import header_problem
from attribution_core.modalities.tabular import (
    MAX_CSV_BYTES,
    MAX_CSV_ROWS,
    CellProblem,
    RowValidation,
    TabularInputError,
    parse_csv,
)

NO_CATEGORY = -1.0
MISSING_WORDS = frozenset({"", "nan", "na", "n/a", "null", "none", "(missing)"})
ColumnKind = Literal["numeric", "categorical"]
# What an empty cell becomes: refused, imputed by the pipeline, or an unknown category.
MissingPolicy = Literal["refused", "imputed", "unknown"]
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class TabularColumn:
    """One original column: its kind, its categories (in the encoder's order) and what the
    pipeline does with empty cells and unknown categories (``*_note`` says it in words)."""

    name: str
    kind: ColumnKind = "numeric"
    categories: tuple[str, ...] = ()
    missing: MissingPolicy = "refused"
    missing_note: str = ""
    unknown_accepted: bool = False
    unknown_note: str = ""

    @property
    def unknown_code(self) -> int:
        return len(self.categories)


@dataclass(frozen=True)
class TabularSchema:
    """The columns a user sees, and for each encoded slot the column it belongs to.

    ``groups[e]`` is the column index of encoded slot ``e`` (every column owns at least one
    slot); ``slot_names[e]`` says what the slot is (``city = Paris``, ``age (scaled)``).
    ``one_hot`` is true when every categorical column's slots are a one-hot (or embedding)
    vector, so that "all slots zero" means "no category" and can serve as a baseline.
    """

    columns: tuple[TabularColumn, ...]
    groups: tuple[int, ...]
    slot_names: tuple[str, ...]
    one_hot: bool = False

    def __post_init__(self) -> None:
        used = set(self.groups)
        if used != set(range(len(self.columns))):
            lacking = [c.name for j, c in enumerate(self.columns) if j not in used]
            raise ValueError(f"Columns without an encoded slot: {lacking}.")
        if len(self.slot_names) != len(self.groups):
            raise ValueError("One slot name per encoded slot.")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def width(self) -> int:
        """Encoded slots E."""
        return len(self.groups)

    @property
    def categorical(self) -> tuple[int, ...]:
        return tuple(j for j, c in enumerate(self.columns) if c.kind == "categorical")

    def group_tensor(self) -> torch.Tensor:
        """``[E]`` long: the column of every slot (``metrics`` ``groups``, Evaluate's units)."""
        return torch.tensor(self.groups, dtype=torch.long)

    def slots_of(self, column: int) -> tuple[int, ...]:
        return tuple(e for e, g in enumerate(self.groups) if g == column)


@dataclass(frozen=True)
class SchemaRowValidation(RowValidation):
    """:class:`RowValidation` plus ``notes``: cells that are kept but read in a way the user
    should know (an unknown category the encoder accepts, an imputed empty cell)."""

    notes: tuple[CellProblem, ...] = ()


# -- cells ----------------------------------------------------------------------------------

def parse_cell(column: TabularColumn, cell: object) -> tuple[float, str | None, str | None]:
    """(raw value, problem that refuses the cell, note on a kept cell) for one cell."""
    text = "" if cell is None or (isinstance(cell, float) and math.isnan(cell)) else \
        str(cell).strip()
    if text.lower() in MISSING_WORDS:
        if column.missing == "refused":
            needed = "a number" if column.kind == "numeric" else "a category"
            return math.nan, f"empty cell ({needed} is needed: the pipeline does not impute " \
                             "this column)", None
        return math.nan, None, column.missing_note or "missing; imputed by the pipeline"
    if column.kind == "numeric":
        try:
            number = float(text)
        except ValueError:
            return math.nan, f"{_short(text)!r} is not a number", None
        if math.isinf(number):
            return number, f"{text} is infinite", None
        return number, None, None
    if text in column.categories:
        return float(column.categories.index(text)), None, None
    hint = _close(text, column.categories)
    if column.unknown_accepted:
        return float(column.unknown_code), None, \
            f"{_short(text)!r} is not a category the model knows{hint}; " \
            f"{column.unknown_note or 'its encoder accepts unknown categories'}"
    return math.nan, f"{_short(text)!r} is not one of the {len(column.categories)} " \
                     f"categories{hint} ({_listing(column.categories)}), and the encoder " \
                     "refuses unknown ones", None


def _close(text: str, categories: Sequence[str]) -> str:
    lowered = {c.lower(): c for c in categories}
    match = lowered.get(text.lower())
    return f" (did you mean {match!r}?)" if match is not None else ""


def display_value(column: TabularColumn, value: float) -> str:
    """A raw value as the user wrote it: the number, the category, or what the code means."""
    if value != value:  # NaN
        return "(missing)"
    if column.kind == "numeric":
        return f"{value:.6g}"
    if value == NO_CATEGORY:
        return "(no category)"
    code = round(value)
    if 0 <= code < len(column.categories):
        return column.categories[code]
    return "(unknown category)"


def display_row(schema: TabularSchema, row: Sequence[float] | np.ndarray) -> list[str]:
    return [display_value(c, float(v)) for c, v in zip(schema.columns, row, strict=True)]


def display_frame(schema: TabularSchema, raw: np.ndarray) -> pd.DataFrame:
    """Raw rows ``[R, F]`` as a table of numbers (numeric columns) and category names."""
    data: dict[str, list[object]] = {}
    for j, column in enumerate(schema.columns):
        values = np.asarray(raw[:, j], dtype=np.float64)
        data[column.name] = values.tolist() if column.kind == "numeric" else \
            [display_value(column, float(v)) for v in values]
    return pd.DataFrame(data, columns=list(schema.names))


def validate_frame(frame: pd.DataFrame, schema: TabularSchema, max_rows: int = MAX_CSV_ROWS
                   ) -> SchemaRowValidation:
    """Every cell of a text table checked against the schema; rows without problems kept."""
    columns = [str(c).strip() for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    problem = header_problem(columns)
    if problem is not None:
        raise TabularInputError(problem)
    present, wanted = set(columns), set(schema.names)
    missing = [n for n in schema.names if n not in present]
    if missing:
        raise TabularInputError(
            f"The CSV lacks {len(missing)} of the model's {len(schema.names)} columns: "
            f"{_listing(missing)}. Expected exactly these columns (any order): "
            f"{_listing(schema.names, 40)}.")
    if len(frame) > max_rows:
        raise TabularInputError(f"The CSV has {len(frame):,} rows; at most {max_rows:,} are "
                                "explained at once. Split it into smaller files.")
    ignored = tuple(c for c in columns if c not in wanted)
    problems = [CellProblem(None, c, "not a feature of this model; ignored") for c in ignored]
    notes: list[CellProblem] = []
    values = np.full((len(frame), len(schema.columns)), np.nan)
    bad: set[int] = set()
    for j, column in enumerate(schema.columns):
        for i, cell in enumerate(frame[column.name].tolist()):
            value, refused, note = parse_cell(column, cell)
            if refused is not None:
                problems.append(CellProblem(i, column.name, refused))
                bad.add(i)
                continue
            values[i, j] = value
            if note is not None:
                notes.append(CellProblem(i, column.name, note))
    keep = [i for i in range(len(frame)) if i not in bad]
    kept_notes = tuple(n for n in notes if n.row not in bad)
    return SchemaRowValidation(values[keep], tuple(keep), tuple(problems), ignored, len(frame),
                               kept_notes)


def read_csv_rows(data: bytes, schema: TabularSchema, limit: int = MAX_CSV_BYTES,
                  max_rows: int = MAX_CSV_ROWS) -> SchemaRowValidation:
    """Parse and check an uploaded CSV against the schema (raises :class:`TabularInputError`
    when it is unusable as a whole)."""
    return validate_frame(parse_csv(data, limit), schema, max_rows)


def validate_edited_row(cells: Sequence[object], schema: TabularSchema
                        ) -> tuple[np.ndarray, tuple[CellProblem, ...], tuple[CellProblem, ...]]:
    """One edited row (cells in schema order): raw values, refusals, notes."""
    if len(cells) != len(schema.columns):
        raise TabularInputError(f"Expected {len(schema.columns)} values, got {len(cells)}.")
    values = np.full(len(cells), np.nan)
    problems, notes = [], []
    for j, (column, cell) in enumerate(zip(schema.columns, cells, strict=True)):
        value, refused, note = parse_cell(column, cell)
        if refused is not None:
            problems.append(CellProblem(None, column.name, refused))
        else:
            values[j] = value
            if note is not None:
                notes.append(CellProblem(None, column.name, note))
    return values, tuple(problems), tuple(notes)


def row_problem(schema: TabularSchema, raw: np.ndarray) -> str | None:
    """Why a raw row (e.g. from Evaluate's cases) cannot be encoded, or None."""
    for column, value in zip(schema.columns, np.asarray(raw, dtype=np.float64), strict=True):
        if value != value:
            if column.missing == "refused":
                return f"{column.name!r} is missing and the pipeline does not impute it"
        elif math.isinf(value):
            return f"{column.name!r} is infinite"
        elif column.kind == "categorical":
            code = round(value)
            if (code == column.unknown_code and not column.unknown_accepted) or \
                    not -1 <= code <= column.unknown_code or code != value:
                return f"{column.name!r} holds no category the model accepts"
    return None


# -- baselines ------------------------------------------------------------------------------

def baseline_kinds(schema: TabularSchema, has_reference: bool) -> tuple[str, ...]:
    """Baselines that make sense for the schema: with reference rows, the mean / median of the
    numeric columns with the most frequent category of the others, a reference row, and "no
    category" where categories are one-hot or embedded."""
    kinds: list[str] = ["mean", "median"] if has_reference else []
    if schema.one_hot and schema.categorical and has_reference:
        kinds.append("no_category")
    if has_reference:
        kinds.append("reference_row")
    if not kinds:
        kinds.append("first_category")
    return tuple(kinds)


BASELINE_LABELS = {
    "mean": "training means (numeric), most frequent category (categorical)",
    "median": "training medians (numeric), most frequent category (categorical)",
    "no_category": "training means (numeric), no category: all slots zero (categorical)",
    "reference_row": "a chosen reference row",
    "first_category": "zeros (numeric), the first category (categorical)",
}


def baseline_row(schema: TabularSchema, kind: str, reference: np.ndarray | None) -> np.ndarray:
    """A baseline in raw units ``[F]`` (categorical columns as codes, see the module doc)."""
    width = len(schema.columns)
    if kind == "first_category":
        return np.zeros(width)
    if reference is None or reference.shape[0] == 0:
        raise ValueError(f"The {kind} baseline needs reference rows.")
    row = np.zeros(width)
    for j, column in enumerate(schema.columns):
        values = np.asarray(reference[:, j], dtype=np.float64)
        known = values[np.isfinite(values)]
        if column.kind == "numeric":
            if known.size == 0:
                row[j] = 0.0
            else:
                row[j] = float(np.median(known)) if kind == "median" else float(known.mean())
        elif kind == "no_category":
            row[j] = NO_CATEGORY
        else:
            row[j] = most_frequent(known, len(column.categories))
    return row


def most_frequent(codes: np.ndarray, n_categories: int) -> float:
    """The most frequent known category (ties: the first in the encoder's order; none: 0)."""
    valid = codes[(codes >= 0) & (codes < n_categories)].astype(np.int64)
    if valid.size == 0:
        return 0.0
    return float(np.bincount(valid, minlength=n_categories).argmax())


# -- folding attributions back to columns --------------------------------------------------

def fold_columns(values: torch.Tensor, schema: TabularSchema) -> torch.Tensor:
    """``[..., E]`` slot values -> ``[..., F]`` column sums, in float64 (a float32 round of
    the sums would break the exact equality of the sum over columns and over slots)."""
    if values.shape[-1] != schema.width:
        raise ValueError(f"{values.shape[-1]} slots for a schema of {schema.width}.")
    index = schema.group_tensor().to(values.device)
    out = torch.zeros(*values.shape[:-1], len(schema.columns), dtype=torch.float64,
                      device=values.device)
    return out.index_add_(values.dim() - 1, index, values.detach().double())


def fold_result(result: ResultT, schema: TabularSchema) -> ResultT:
    """An Attribution / IG2Attribution with its ``attributions`` summed per column; every
    other field (baselines, counterfactuals, deltas) stays as computed in the encoded space.
    The completeness delta does not change: a sum over slots is a sum over columns."""
    attributions = result.attributions  # type: ignore[attr-defined]
    if attributions.shape[-1] != schema.width:
        return result  # already folded
    params = dict(getattr(result, "params", {}) or {})
    params["folded_from_slots"] = schema.width
    return dataclasses.replace(result, attributions=fold_columns(attributions, schema),  # type: ignore[type-var]
                               params=params)


def categorical_note(schema: TabularSchema) -> str:
    """What IG means for a categorical column, in words for the page."""
    return ("Categorical columns are explained in the encoded space: the path moves the "
            "column's one-hot (or embedding) vector in a straight line from the baseline's "
            "category to this row's category, through blends of the two that no real row "
            "has, and the column's attribution is the sum over its slots. It answers \"how "
            "much did changing this column from the baseline's category to this one move "
            "the output\", not \"how important is this category in general\". A column equal "
            "to the baseline's category gets exactly zero.")


def _short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _listing(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
