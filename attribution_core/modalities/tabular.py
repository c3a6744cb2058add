"""Table rows in, standardised model rows for the core; feature attributions out.

No Streamlit here. :func:`read_csv_rows` validates an uploaded CSV against a model's feature
schema and reports every problem per cell (missing / extra columns, text in numeric columns,
NaN, infinities): nothing is dropped silently, rows with problems are listed with the reason.
:func:`ranked_features`, :func:`waterfall_steps` and :func:`row_summary` turn one row's
attributions into what the page shows; the waterfall carries the completeness residual as its
own bar, so it closes at f(x) exactly whatever the integration error.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from attribution_core.limits import header_problem

MAX_CSV_BYTES = 5 * 1024 * 1024
MAX_CSV_ROWS = 2_000
MAX_PROBLEMS_LISTED = 200
FLOAT32_MAX = float(np.finfo(np.float32).max)  # models compute in float32: beyond, it is inf
BASELINE_KINDS = ("mean", "median", "zeros", "reference_row")
BASELINE_LABELS = {
    "mean": "training means", "median": "training medians", "zeros": "zeros (raw units)",
    "reference_row": "a chosen reference row",
}


class TabularInputError(ValueError):
    """The rows cannot be used at all; the message says why."""


@dataclass(frozen=True)
class CellProblem:
    """One bad cell (``column`` None: the whole row or file; ``row`` None: a whole column)."""

    row: int | None
    column: str | None
    problem: str

    def describe(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row + 1}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return (", ".join(where) + ": " if where else "") + self.problem


@dataclass(frozen=True)
class RowValidation:
    """Rows that passed (raw values ``[R, F]`` in schema order, with their CSV row numbers) and
    every problem found; ``ignored_columns`` are extra columns that were not used."""

    values: np.ndarray
    row_numbers: tuple[int, ...]
    problems: tuple[CellProblem, ...]
    ignored_columns: tuple[str, ...]
    n_rows_read: int

    @property
    def rejected_rows(self) -> tuple[int, ...]:
        bad = {p.row for p in self.problems if p.row is not None}
        return tuple(sorted(bad))


@dataclass(frozen=True)
class FeatureAttribution:
    rank: int
    name: str
    value: float  # raw feature value of the explained row
    baseline_value: float  # raw value of the baseline
    attribution: float
    share: float  # attribution / sum |attributions|


@dataclass(frozen=True)
class WaterfallStep:
    label: str
    measure: str  # "absolute" (start / end), "relative" (a bar), "total"
    value: float


def check_size(n_bytes: int, limit: int = MAX_CSV_BYTES) -> None:
    if n_bytes > limit:
        raise TabularInputError(f"The CSV is {n_bytes / 1024**2:.1f} MB; at most "
                                f"{limit / 1024**2:.0f} MB are accepted. Upload fewer rows.")


def parse_csv(data: bytes, limit: int = MAX_CSV_BYTES) -> pd.DataFrame:
    """The CSV as text cells (nothing converted yet, so every cell can be checked)."""
    check_size(len(data), limit)
    if not data.strip():
        raise TabularInputError("The CSV is empty: it needs a header line with the feature "
                                "names and at least one row.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise TabularInputError(f"The CSV is not UTF-8 text ({error.reason} at byte "
                                f"{error.start}).") from error
    try:
        header = next(csv.reader(io.StringIO(text)), [])
    except csv.Error as error:
        raise TabularInputError(f"The CSV header could not be read: {error}.") from error
    # Before pandas: it would silently rename repeats to "name.1", and it is slow per column.
    problem = header_problem([name.strip() for name in header])
    if problem is not None:
        raise TabularInputError(problem)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                            skipinitialspace=True)
    except pd.errors.EmptyDataError as error:
        raise TabularInputError("The CSV has no header line with column names.") from error
    except (pd.errors.ParserError, ValueError) as error:
        raise TabularInputError(f"The CSV could not be parsed: {error}") from error
    if frame.empty:
        raise TabularInputError("The CSV has a header but no data rows.")
    return frame


def validate_rows(frame: pd.DataFrame, feature_names: Sequence[str],
                  max_rows: int = MAX_CSV_ROWS) -> RowValidation:
    """Check every cell against the schema; keep the rows without problems."""
    names = list(feature_names)
    columns = [str(c).strip() for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    problem = header_problem(columns)
    if problem is not None:
        raise TabularInputError(problem)
    present, wanted = set(columns), set(names)  # sets: a long header stays linear
    missing = [n for n in names if n not in present]
    if missing:
        raise TabularInputError(
            f"The CSV lacks {len(missing)} of the model's {len(names)} feature columns: "
            f"{_listing(missing)}. Expected exactly these columns (any order): "
            f"{_listing(names, 40)}.")
    if len(frame) > max_rows:
        raise TabularInputError(f"The CSV has {len(frame):,} rows; at most {max_rows:,} are "
                                "explained at once. Split it into smaller files.")
    ignored = tuple(c for c in columns if c not in wanted)
    problems: list[CellProblem] = [CellProblem(None, c, "not a feature of this model; ignored")
                                   for c in ignored]
    values = np.full((len(frame), len(names)), np.nan)
    bad_rows: set[int] = set()
    for j, name in enumerate(names):
        for i, cell in enumerate(frame[name].tolist()):
            number, problem = _parse_cell(cell)
            if problem is not None:
                problems.append(CellProblem(i, name, problem))
                bad_rows.add(i)
            else:
                values[i, j] = number
    keep = [i for i in range(len(frame)) if i not in bad_rows]
    return RowValidation(values[keep], tuple(keep), tuple(problems), ignored, len(frame))


def _parse_cell(cell: object) -> tuple[float, str | None]:
    text = "" if cell is None else str(cell).strip()
    if text == "":
        return math.nan, "empty cell (a number is needed)"
    try:
        number = float(text)
    except ValueError:
        return math.nan, f"{_short(text)!r} is not a number"
    if math.isnan(number):
        return number, "NaN (a number is needed)"
    if math.isinf(number):
        return number, f"{text} is infinite"
    if abs(number) > FLOAT32_MAX:  # finite here, infinite in the model's float32 rows
        return math.nan, (f"{_short(text)} is beyond what the model's float32 input holds "
                          f"(±{FLOAT32_MAX:.1e})")
    return number, None


def read_csv_rows(data: bytes, feature_names: Sequence[str], limit: int = MAX_CSV_BYTES,
                  max_rows: int = MAX_CSV_ROWS) -> RowValidation:
    """Parse and validate an uploaded CSV (raises :class:`TabularInputError` when unusable)."""
    return validate_rows(parse_csv(data, limit), feature_names, max_rows)


def validate_edited_row(values: Sequence[object], feature_names: Sequence[str]
                        ) -> tuple[np.ndarray, tuple[CellProblem, ...]]:
    """One edited row (raw values in schema order): the numbers, or the per-cell problems."""
    if len(values) != len(feature_names):
        raise TabularInputError(f"Expected {len(feature_names)} values, got {len(values)}.")
    numbers = np.full(len(values), np.nan)
    problems = []
    for j, (name, cell) in enumerate(zip(feature_names, values, strict=True)):
        number, problem = _parse_cell(cell)
        if problem is None:
            numbers[j] = number
        else:
            problems.append(CellProblem(None, name, problem))
    return numbers, tuple(problems)


def _short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _listing(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def ranked_features(attributions: Sequence[float] | np.ndarray | torch.Tensor,
                    feature_names: Sequence[str], raw_values: Sequence[float],
                    baseline_values: Sequence[float] | None = None,
                    top_k: int | None = None) -> list[FeatureAttribution]:
    """Features ordered by |attribution| (largest first; ties keep schema order)."""
    scores = _floats(attributions)
    if len(scores) != len(feature_names):
        raise ValueError(f"{len(scores)} attributions for {len(feature_names)} features.")
    base = list(baseline_values) if baseline_values is not None else [math.nan] * len(scores)
    magnitude = math.fsum(abs(s) for s in scores)
    order = sorted(range(len(scores)), key=lambda j: (-abs(scores[j]), j))
    if top_k is not None:
        order = order[:top_k]
    return [FeatureAttribution(rank, str(feature_names[j]), float(raw_values[j]),
                               float(base[j]), scores[j],
                               scores[j] / magnitude if magnitude > 0 else 0.0)
            for rank, j in enumerate(order, start=1)]


def waterfall_steps(attributions: Sequence[float] | np.ndarray | torch.Tensor,
                    feature_names: Sequence[str], f_baseline: float, f_input: float,
                    top_k: int | None = None, start_label: str = "f(baseline)",
                    end_label: str = "f(x)") -> list[WaterfallStep]:
    """f(baseline), one bar per feature (by |attribution|), the rest, the residual, f(x).

    The residual is ``f(x) - f(baseline) - sum(attributions)`` (minus the completeness delta):
    with it as its own bar the chart ends at f(x) exactly, and its size shows how far the
    attributions alone fall short.
    """
    scores = _floats(attributions)
    order = sorted(range(len(scores)), key=lambda j: (-abs(scores[j]), j))
    shown = order if top_k is None else order[:top_k]
    steps = [WaterfallStep(start_label, "absolute", float(f_baseline))]
    steps.extend(WaterfallStep(str(feature_names[j]), "relative", scores[j]) for j in shown)
    rest = [scores[j] for j in order if j not in set(shown)]
    if rest:
        steps.append(WaterfallStep(f"{len(rest)} other features", "relative", math.fsum(rest)))
    residual = float(f_input) - float(f_baseline) - math.fsum(scores)
    steps.append(WaterfallStep("completeness residual", "relative", residual))
    steps.append(WaterfallStep(end_label, "total", float(f_input)))
    return steps


def waterfall_end(steps: Sequence[WaterfallStep]) -> float:
    """Where the bars end: the start plus every relative bar (what the 'total' bar shows)."""
    start = next(s.value for s in steps if s.measure == "absolute")
    return start + math.fsum(s.value for s in steps if s.measure == "relative")


def row_summary(attributions: Sequence[float] | np.ndarray | torch.Tensor,
                feature_names: Sequence[str], top_k: int = 3) -> list[tuple[str, float]]:
    scores = _floats(attributions)
    order = sorted(range(len(scores)), key=lambda j: (-abs(scores[j]), j))[:top_k]
    return [(str(feature_names[j]), scores[j]) for j in order]


def distant_target_indices(targets: Sequence[float] | np.ndarray | torch.Tensor,
                           value: float, k: int = 8, seed: int = 0,
                           fraction: float = 0.25) -> np.ndarray:
    """Regression IG2 references: a seeded draw among the rows whose target is farthest from
    ``value`` (the top ``fraction`` by distance, at least ``k`` rows)."""
    ys = np.asarray(_floats(targets), dtype=np.float64)
    if ys.size == 0:
        raise ValueError("The reference pool is empty.")
    distance = np.abs(ys - float(value))
    n_far = min(ys.size, max(k, math.ceil(fraction * ys.size)))
    far = np.argsort(-distance, kind="stable")[:n_far]
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(far)[: min(k, far.size)])


def _floats(values: Sequence[float] | np.ndarray | torch.Tensor) -> list[float]:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().reshape(-1).numpy()
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
