"""What the HTML report draws, as data: built from a result in memory or from a case table.

:func:`report_html` renders a :class:`ReportView`. A run held in memory (the page, the local
command) becomes one with :func:`view_from_result`; a sharded run of any size becomes one
streamed from its shards and its Parquet case table (``streamed_report``), so the page never
needs every case at once. Both give the same view for the same cases, up to
``MAX_POINT_CASES``: above it the box plots are drawn from exact quartiles (:class:`BoxStats`)
instead of one point per case, which a browser could not draw for a million cases anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from attribution_core.evaluation.types import (
    CaseOutcome,
    EvaluationResult,
    EvaluationSettings,
    MethodSummary,
    Modality,
    mean_curve,
)

MAX_CASE_SECTIONS = 10
# Box plots show every case as a point up to this many cases; above it, exact quartiles only.
MAX_POINT_CASES = 5_000
# The smallest value a log axis shows: an exact completeness error of 0 would otherwise vanish.
LOG_FLOOR = 1e-12
RANDOM_LABEL = "random order"
CURVE_KINDS = ("deletion", "insertion")
AGREEMENT_METRICS = ("rank_correlation", "mask_share")


@dataclass(frozen=True)
class BoxStats:
    """A box plot's numbers, exact: quartiles by linear interpolation (plotly's default, and
    numpy's), whiskers at the furthest values within 1.5 interquartile ranges."""

    n: int
    q1: float
    median: float
    q3: float
    lower_fence: float
    upper_fence: float
    mean: float

    @staticmethod
    def of(values: np.ndarray) -> BoxStats | None:
        finite = np.asarray(values, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size == 0:
            return None
        q1, median, q3 = (float(v) for v in np.percentile(finite, (25, 50, 75)))
        reach = 1.5 * (q3 - q1)
        return BoxStats(int(finite.size), q1, median, q3,
                        float(finite[finite >= q1 - reach].min()),
                        float(finite[finite <= q3 + reach].max()), float(finite.mean()))


@dataclass(frozen=True)
class Spread:
    """One box of a box plot: every case's value (``ids`` may be empty), or, for many cases,
    only its :class:`BoxStats`."""

    label: str
    values: tuple[float, ...] = ()
    ids: tuple[str, ...] = ()
    box: BoxStats | None = None

    @staticmethod
    def of(label: str, values: np.ndarray, ids: Sequence[str] | None, n_cases: int) -> Spread:
        if n_cases > MAX_POINT_CASES:
            return Spread(label, box=BoxStats.of(values))
        return Spread(label, tuple(float(v) for v in values),
                      () if ids is None else tuple(str(i) for i in ids))


@dataclass(frozen=True)
class ReportView:
    """Everything the HTML report shows; its size does not grow with the number of cases
    beyond ``MAX_POINT_CASES``."""

    model_name: str
    model_title: str
    modality: Modality
    weights_hash: str
    class_names: tuple[str, ...]
    settings: EvaluationSettings
    device: str
    n_requested: int
    n_done: int
    cancelled: bool
    seconds: float
    expected_area_share: float
    notes: tuple[str, ...]
    methods: tuple[str, ...]
    summaries: tuple[MethodSummary, ...]
    # kind ("deletion"/"insertion") -> label (a method or RANDOM_LABEL) -> mean curve on grid
    mean_curves: Mapping[str, Mapping[str, np.ndarray]]
    # "<kind>_auc", "completeness", "rank_correlation", "mask_share" -> one spread per label
    spreads: Mapping[str, tuple[Spread, ...]]
    has_expectations: bool
    hardest: tuple[CaseOutcome, ...]

    @property
    def grid(self) -> np.ndarray:
        return curve_grid(self.settings)

    @property
    def points_drawn(self) -> bool:
        return self.n_done <= MAX_POINT_CASES


def curve_grid(settings: EvaluationSettings) -> np.ndarray:
    return np.linspace(0.0, 1.0, max(int(settings.curve_points), 2))


def completeness_values(values: np.ndarray) -> np.ndarray:
    """|relative delta| as the log axis draws it: finite values only, 0 shown at LOG_FLOOR."""
    finite = np.asarray(values, dtype=np.float64)
    return np.maximum(np.abs(finite), LOG_FLOOR)


def _per_case(cases: Sequence[CaseOutcome], method: str, name: str
              ) -> tuple[list[str], np.ndarray]:
    ran = [c for c in cases if any(o.method == method for o in c.outcomes)]
    return [c.case_id for c in ran], np.array(
        [float(getattr(c.outcome(method), name)) for c in ran], dtype=np.float64)


def view_from_result(result: EvaluationResult, max_cases: int = MAX_CASE_SECTIONS
                     ) -> ReportView:
    """The view of a result held in memory."""
    cases, n = result.cases, len(result.cases)
    grid = curve_grid(result.settings)
    curves: dict[str, dict[str, np.ndarray]] = {}
    spreads: dict[str, tuple[Spread, ...]] = {}
    for kind in CURVE_KINDS:
        per_method = {}
        for method in result.methods:
            ran = [c for c in cases if any(o.method == method for o in c.outcomes)]
            per_method[method] = mean_curve(
                ran, lambda c, m=method, k=kind: getattr(c.outcome(m), k), grid)
        per_method[RANDOM_LABEL] = mean_curve(cases, lambda c, k=kind: getattr(c, f"random_{k}"),
                                              grid)
        curves[kind] = per_method
        random_values = np.array([float(getattr(c, f"random_{kind}_auc")) for c in cases],
                                 dtype=np.float64)
        spreads[f"{kind}_auc"] = (
            *(Spread.of(m, values, ids, n) for m in result.methods
              for ids, values in [_per_case(cases, m, f"{kind}_auc")]),
            Spread.of(RANDOM_LABEL, random_values, [c.case_id for c in cases], n))
    completeness = []
    for method in result.methods:
        ids, deltas = _per_case(cases, method, "relative_delta")
        finite = np.isfinite(deltas)
        if finite.any():
            completeness.append(Spread.of(method, completeness_values(deltas[finite]),
                                          [i for i, f in zip(ids, finite, strict=True) if f], n))
    spreads["completeness"] = tuple(completeness)
    for metric in AGREEMENT_METRICS:
        spreads[metric] = tuple(
            Spread.of(m, values[np.isfinite(values)], None, n) for m in result.methods
            for _, values in [_per_case(cases, m, metric)])
    return ReportView(
        model_name=result.model_name, model_title=result.model_title, modality=result.modality,
        weights_hash=result.weights_hash, class_names=result.class_names,
        settings=result.settings, device=result.device, n_requested=result.n_requested,
        n_done=n, cancelled=result.cancelled, seconds=result.seconds,
        expected_area_share=result.expected_area_share, notes=result.notes,
        methods=result.methods, summaries=result.summaries(), mean_curves=curves,
        spreads=spreads, has_expectations=any(c.expected is not None for c in cases),
        hardest=result.most_disagreeing(max_cases))

