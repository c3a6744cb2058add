"""Evaluate-page CSV uploads (a CSV of texts, a CSV of table rows) -> raw case items.

Bytes in, frozen results out; anything unusable raises :class:`EvaluationInputError` with words
a person can act on, and every row that is left out is listed in ``skipped``. Texts and numeric
cells go through the same checks as single uploads (``modalities``), so a text or row refused on
the Explain page is refused here for the same reason. The CSV helpers here are also used by
``uploads_images`` to read a zip's ``labels.csv``.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import pandas as pd

from attribution_core.evaluation.types import EvaluationInputError, RowItem, TextItem
from attribution_core.limits import header_problem
from attribution_core.modalities.tabular import (
    MAX_CSV_BYTES,
    TabularInputError,
    check_size,
    validate_rows,
)
from attribution_core.modalities.tabular_categorical import TabularSchema, validate_frame
from attribution_core.modalities.text import TextInputError, check_text

_WORD_SEPARATORS = re.compile(r"[;|,]")
_FEATURE_SEPARATORS = re.compile(r"[;|]")
_NAME_COLUMNS = ("name", "id")
_Case = TypeVar("_Case", TextItem, RowItem)


@dataclass(frozen=True)
class TextUpload:
    items: tuple[TextItem, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class RowUpload:
    """``problems``: one note per bad cell; ``skipped``: one note per row left out."""

    items: tuple[RowItem, ...]
    skipped: tuple[str, ...]
    problems: tuple[str, ...]


# -- small public helpers -------------------------------------------------------------------

def parse_expected_words(cell: str) -> tuple[str, ...]:
    """Words separated by ``;``, ``|`` or ``,``; stripped, empty ones dropped, repeats removed."""
    words = (part.strip() for part in _WORD_SEPARATORS.split(str(cell or "")))
    return tuple(dict.fromkeys(word for word in words if word))


def parse_expected_features(cell: str, feature_names: Sequence[str]) -> tuple[str, ...]:
    """Feature names separated by ``;`` or ``|``, returned in the model's own spelling.

    Matching is exact first, then case-insensitive (``AGE`` finds ``age``) when that is not
    ambiguous. Names the model does not have raise :class:`EvaluationInputError` naming them,
    with a close match when there is one, and the valid names.
    """
    names = [str(n) for n in feature_names]
    by_lower: dict[str, list[str]] = {}
    for name in names:
        by_lower.setdefault(name.lower(), []).append(name)
    found: list[str] = []
    unknown: list[str] = []
    for part in _FEATURE_SEPARATORS.split(str(cell or "")):
        wanted = part.strip()
        if not wanted:
            continue
        if wanted in names:
            found.append(wanted)
        elif len(by_lower.get(wanted.lower(), [])) == 1:
            found.append(by_lower[wanted.lower()][0])
        else:
            unknown.append(wanted)
    if unknown:
        raise EvaluationInputError(
            f"Expected feature(s) {_with_hints(unknown, names)} are not features of this "
            f"model. Valid names: {_listing(names, 40)}.")
    return tuple(dict.fromkeys(found))

# -- CSV files --------------------------------------------------------------------------------

def _read_csv_records(data: bytes, what: str = "The CSV"
                      ) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (spreadsheet row number, cells) per record; fully blank rows are dropped.

    The csv module (not pandas) is used so that row numbers match what a spreadsheet shows
    (blank lines and multi-line cells included) and no cell is ever coerced.
    """
    try:
        check_size(len(data), MAX_CSV_BYTES)
    except TabularInputError as error:
        raise EvaluationInputError(str(error)) from error
    if not data.strip():
        raise EvaluationInputError(f"{what} is empty: it needs a header line with the column "
                                   "names and at least one row.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise EvaluationInputError(f"{what} is not UTF-8 text ({error.reason} at byte "
                                   f"{error.start}); save it as CSV UTF-8.") from error
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise EvaluationInputError(f"{what} could not be read as CSV: {error}.") from error
    header = [name.strip() for name in records[0]] if records else []
    problem = header_problem(header, what, ignore_empty=True)
    if problem is not None:
        raise EvaluationInputError(problem)
    rows = [(number, cells) for number, cells in enumerate(records[1:], start=2)
            if any(cell.strip() for cell in cells)]
    if not rows:
        raise EvaluationInputError(f"{what} has a header but no data rows.")
    return header, rows


def _cell(row: Sequence[str], index: int | None) -> str:
    return row[index].strip() if index is not None and index < len(row) else ""


def _too_many_cells(row: Sequence[str], header: Sequence[str]) -> bool:
    return any(cell.strip() for cell in row[len(header):])


def _parse_label(text: str, *, integer: bool) -> int | float | str | None:
    """None for an empty cell, the number, or the text itself when it is not a usable label."""
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    if number.is_integer():
        return int(number)
    return text if integer else number


def _column(header: Sequence[str], name: str) -> int | None:
    matches = [j for j, c in enumerate(header) if c.lower() == name]
    return matches[0] if matches else None


def _check_case_count(rows: Sequence[object], max_cases: int) -> None:
    if len(rows) > max_cases:
        raise EvaluationInputError(f"The CSV has {len(rows):,} rows; at most {max_cases:,} cases "
                                   "are evaluated at once. Split it into smaller files.")


def read_text_csv(data: bytes, *, max_cases: int = 500) -> TextUpload:
    """A CSV of texts: ``text`` (or the only column), optional ``expected`` words separated by
    ``;``, ``|`` or ``,``, optional integer ``label`` and ``name``/``id``. Row numbers in notes
    count like a spreadsheet: the header is row 1."""
    header, rows = _read_csv_records(data)
    text_at = _column(header, "text")
    if text_at is None and len(header) == 1:
        text_at = 0
    if text_at is None:
        raise EvaluationInputError(
            f"The CSV needs a 'text' column (or a single column of texts); found the columns "
            f"{_listing(header)}. Optional columns: expected, label, name.")
    expected_at, label_at = _column(header, "expected"), _column(header, "label")
    name_at = next((j for j in (_column(header, n) for n in _NAME_COLUMNS) if j is not None), None)
    _check_case_count(rows, max_cases)
    items: list[TextItem] = []
    skipped: list[str] = []
    for number, row in rows:
        if _too_many_cells(row, header):
            skipped.append(f"row {number}: {len(row)} cells but {len(header)} columns; put "
                           "texts that contain commas in double quotes")
            continue
        text = row[text_at] if text_at < len(row) else ""
        if not text.strip():
            skipped.append(f"row {number}: the text is empty")
            continue
        try:
            check_text(text)
        except TextInputError as error:
            skipped.append(f"row {number}: {error}")
            continue
        label = _parse_label(_cell(row, label_at), integer=True)
        if isinstance(label, str):
            skipped.append(f"row {number}: label {label!r} is not a whole number (a class index)")
            continue
        items.append(TextItem(name=_cell(row, name_at) or f"row {number}", text=text,
                              expected_words=parse_expected_words(_cell(row, expected_at)),
                              label=label))
    return TextUpload(_deduplicated(items), tuple(skipped))


def _check_header(header: Sequence[str], names: Sequence[str]) -> None:
    """Every model feature is a column, and every other column is an optional known one."""
    in_header = set(header)  # sets: a long header stays linear
    missing = [n for n in names if n not in in_header]
    if missing:
        raise EvaluationInputError(
            f"The CSV lacks the feature column(s) {_with_hints(missing, header)}. The model "
            f"needs: {_listing(names, 40)}.")
    reserved = ("expected", "label", *_NAME_COLUMNS)
    known = set(names)
    extra = [c for c in header if c not in known and c.lower() not in reserved]
    if extra:
        raise EvaluationInputError(
            f"The CSV has column(s) this model does not know: {_with_hints(extra, names)}. Valid "
            f"columns: {_listing(names, 40)}, plus optional expected, label, name or id.")


def read_rows_csv(data: bytes, feature_names: Sequence[str], *, max_cases: int = 500,
                  schema: TabularSchema | None = None) -> RowUpload:
    """A CSV of table rows in raw units: every model feature as a column, optional
    ``expected`` (feature names separated by ``;`` or ``|``), ``label`` and ``name``/``id``.
    With a ``schema`` (a model with categorical columns) categorical cells hold category names
    (read as category codes) and imputed columns may be empty."""
    names = [str(n) for n in feature_names]
    header, rows = _read_csv_records(data)
    _check_header(header, names)
    known = set(names)
    role = {j: c for j, c in enumerate(header) if c in known}

    def column(name: str) -> int | None:
        return next((j for j, c in enumerate(header) if j not in role and c.lower() == name), None)

    expected_at, label_at = column("expected"), column("label")
    name_at = column("name") if column("name") is not None else column("id")
    _check_case_count(rows, max_cases)

    skipped = [f"row {number}: {len(row)} cells but {len(header)} columns"
               for number, row in rows if _too_many_cells(row, header)]
    shaped = [(number, row) for number, row in rows if not _too_many_cells(row, header)]
    expected: dict[int, tuple[str, ...]] = {}
    for number, row in shaped:  # every row, so the answer does not depend on its other cells
        try:
            expected[number] = parse_expected_features(_cell(row, expected_at), names)
        except EvaluationInputError as error:
            raise EvaluationInputError(f"Row {number}: {error}") from error
    frame = pd.DataFrame([[_cell(row, j) for j in role] for _, row in shaped],
                         columns=list(role.values()), dtype=str)
    checked = validate_rows(frame, names, max_rows=max(len(frame), 1)) if schema is None \
        else validate_frame(frame, schema, max_rows=max(len(frame), 1))
    problems: list[str] = []
    bad_cells: dict[int, list[str]] = {}
    for problem in checked.problems:
        if problem.row is None:
            continue
        number = shaped[problem.row][0]
        problems.append(f"row {number}, column {problem.column!r}: {problem.problem}")
        bad_cells.setdefault(number, []).append(f"{problem.column!r} {problem.problem}")
    skipped += [f"row {number}: skipped ({'; '.join(cells)})" for number, cells in
                bad_cells.items()]
    items: list[RowItem] = []
    for values, index in zip(checked.values, checked.row_numbers, strict=True):
        number, row = shaped[index]
        label = _parse_label(_cell(row, label_at), integer=False)
        if isinstance(label, str):
            skipped.append(f"row {number}: label {label!r} is not a number")
            continue
        items.append(RowItem(name=_cell(row, name_at) or f"row {number}",
                             values={n: float(v) for n, v in zip(names, values, strict=True)},
                             expected_features=expected[number], label=label))
    skipped.sort(key=lambda note: int(note.split(":")[0].split()[1]))
    return RowUpload(_deduplicated(items), tuple(skipped), tuple(problems))


def _deduplicated(items: Sequence[_Case]) -> tuple[_Case, ...]:
    """Case names made unique (a repeated name gets `` (2)``, `` (3)``...)."""
    seen: dict[str, int] = {}
    result = []
    for item in items:
        seen[item.name] = seen.get(item.name, 0) + 1
        result.append(item if seen[item.name] == 1 else
                      replace(item, name=f"{item.name} ({seen[item.name]})"))
    return tuple(result)


def _with_hints(unknown: Sequence[str], valid: Sequence[str]) -> str:
    by_lower = {v.lower(): v for v in valid}  # "Age" vs "age" is a likely slip, not a miss
    shown = []
    for name in unknown:
        close = difflib.get_close_matches(name.strip().lower(), list(by_lower), n=1, cutoff=0.6)
        shown.append(f"{name!r} (did you mean {by_lower[close[0]]!r}?)" if close else repr(name))
    return ", ".join(shown)


def _listing(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
