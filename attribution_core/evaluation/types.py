"""The Evaluate contract: cases in, per-case and per-method outcomes out (frozen, CPU, numpy).

A :class:`EvalCase` is one explicand already in model-input space with everything the metrics
need (baseline, perturbation units, the expected features if known). :func:`evaluate` (in
``runner.py``) turns a sequence of cases into an :class:`EvaluationResult`, whose outcomes hold
plain floats and numpy arrays so that reports, the page and the command line never touch the
model again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

Modality = Literal["image", "text", "tabular"]

METHOD_IG = "IG"
METHOD_IG2 = "IG2"
METHOD_SALIENCY = "Saliency"
METHOD_GRAD_X_INPUT = "Gradient x Input"
METHOD_SMOOTHGRAD = "SmoothGrad (IG)"
METHOD_GRADIENT_SHAP = "GradientSHAP"
ALL_METHODS: tuple[str, ...] = (METHOD_IG, METHOD_IG2, METHOD_SALIENCY, METHOD_GRAD_X_INPUT,
                                METHOD_SMOOTHGRAD, METHOD_GRADIENT_SHAP)
# Offered, not run by default: IG2 with the path diagnostic's best settings per case (several
# IG2 runs per case; evaluation/ig2_method.py).
METHOD_IG2_BEST_PATH = "IG2 (best path)"
OPTIONAL_METHODS: tuple[str, ...] = (METHOD_IG2_BEST_PATH,)
KNOWN_METHODS: tuple[str, ...] = ALL_METHODS + OPTIONAL_METHODS
# Methods that need reference samples of other classes (a case may have none).
REFERENCE_METHODS: tuple[str, ...] = (METHOD_IG2, METHOD_GRADIENT_SHAP, METHOD_IG2_BEST_PATH)
# Methods whose sign is not evidence for or against the target: ranked by magnitude.
UNSIGNED_METHODS: frozenset[str] = frozenset({METHOD_SALIENCY})


class EvaluationInputError(ValueError):
    """Cases or uploads that cannot be evaluated; the message says what to change."""


@dataclass(frozen=True)
class EvalCase:
    """One explicand, ready for every method and metric.

    ``inputs`` and ``baseline`` are [1, ...] model-input tensors. ``units`` gives every feature
    of one input row its perturbation unit (``metrics`` ``groups``: patches for images, tokens
    for text, None = one unit per feature for tabular rows). ``reading_shape`` is the shape of
    the map people read (image [H, W], text [L], tabular [F]); ``expected`` is a bool mask of
    that shape (the mask image, the expected words' tokens, the expected features) or None.
    ``references`` [R, ...] are IG2's references (other classes) and GradientSHAP's
    distribution (R = 0 when the model has none: those two methods refuse such cases),
    ``reference_kwargs`` their forward kwargs (e.g. attention masks).
    ``removal`` is what the deletion / insertion curves put in place of removed units (None:
    the baseline). ``unit_names`` label the reading map's entries (tokens, feature names;
    empty for images).
    ``display`` is what a figure shows: an H x W x 3 uint8 array, the tokens, or raw values.
    """

    case_id: str
    inputs: torch.Tensor
    baseline: torch.Tensor
    target: int
    references: torch.Tensor
    units: torch.Tensor | None = None
    reading_shape: tuple[int, ...] = ()
    expected: torch.Tensor | None = None
    forward_kwargs: Mapping[str, torch.Tensor] = field(default_factory=dict)
    reference_kwargs: Mapping[str, torch.Tensor] = field(default_factory=dict)
    unit_names: tuple[str, ...] = ()
    label: int | None = None
    label_name: str | None = None
    display: Any = None
    text: str | None = None
    removal: torch.Tensor | None = None


@dataclass(frozen=True)
class EvaluationSettings:
    """Every parameter of an evaluation run (all recorded in the report)."""

    methods: tuple[str, ...] = ALL_METHODS
    ig_steps: int = 32
    quadrature: str = "gausslegendre"
    ig2_steps: int = 32
    ig2_references: int = 4
    ig2_step_size: float | None = None  # None: the model spec's default
    smoothgrad_samples: int = 8
    smoothgrad_noise: float = 0.15  # stdev as a share of the input's range
    gradient_shap_samples: int = 16
    curve_points: int = 21
    random_orders: int = 4
    cases_per_batch: int = 10
    seed: int = 0
    # What removed units become in the curves: None = each case's attribution baseline, else
    # the baseline kind the cases' ``removal`` was built with (recorded for the report).
    removal: str | None = None

    def record(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class MethodOutcome:
    """One method on one case. Curves are normalised: (f - f(baseline)) / (f(x) - f(baseline)).

    ``scores`` is the reading map (shape ``EvalCase.reading_shape``). Lower ``deletion_auc`` and
    higher ``insertion_auc`` are better. ``delta`` is the completeness error (sum of
    attributions minus f(x) - f(x'), x' the method's own baseline: the mean GradCF for IG2);
    NaN for methods that claim no completeness. Agreement fields are NaN without expectations.
    """

    method: str
    scores: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    delta: float
    relative_delta: float
    precision_at_k: float
    rank_correlation: float
    mask_share: float
    pointing_game: float
    seconds: float
    n_evaluations: int
    # The per-feature convergence of the map (the completeness error can be tiny while this is
    # not), / max |A|. IG: max |A(n steps) - A(n / 2 steps)|; IG2: its references' spread
    # bound plus the change against paths at half the steps. NaN for the other methods.
    convergence: float = math.nan
    # IG2 only: median over references of D_r(GradCF) / D_r(x) (how far the paths got), and
    # the share of references whose path kept more than SHORT_PATH_REACH of it. NaN else.
    path_reach: float = math.nan
    short_paths: float = math.nan


@dataclass(frozen=True)
class CaseOutcome:
    """Every method on one case, with the random-order reference curves and disagreement.

    ``disagreement`` is 1 minus the mean pairwise Spearman correlation of the methods' |scores|
    (0: all methods rank the features alike; NaN with fewer than two methods).
    """

    case_id: str
    target: int
    label: int | None
    predicted: int
    f_input: float
    f_baseline: float  # f at the curves' removal value (the baseline unless one was chosen)
    fractions: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray
    random_deletion_auc: float
    random_insertion_auc: float
    outcomes: tuple[MethodOutcome, ...]
    disagreement: float
    reading_shape: tuple[int, ...] = ()
    expected: np.ndarray | None = None
    unit_names: tuple[str, ...] = ()
    display: Any = None
    text: str | None = None

    def outcome(self, method: str) -> MethodOutcome:
        for item in self.outcomes:
            if item.method == method:
                return item
        raise KeyError(f"{method!r} was not run on case {self.case_id!r}.")


@dataclass(frozen=True)
class MethodSummary:
    """Mean, median and spread of one method's metrics over the cases (NaN-aware)."""

    method: str
    n_cases: int
    deletion_auc_mean: float
    deletion_auc_median: float
    insertion_auc_mean: float
    insertion_auc_median: float
    abs_relative_delta_median: float
    abs_relative_delta_max: float
    precision_at_k_mean: float
    rank_correlation_mean: float
    mask_share_mean: float
    pointing_game_rate: float
    beats_random_deletion_rate: float
    beats_random_insertion_rate: float
    seconds_total: float
    convergence_median: float = math.nan
    convergence_max: float = math.nan
    path_reach_median: float = math.nan  # IG2: median over cases of the per-case median
    short_path_share: float = math.nan  # IG2: mean share of paths that stopped short


@dataclass(frozen=True)
class EvaluationResult:
    """An evaluation run: what was asked, what came out, and whether it was cut short."""

    model_name: str
    model_title: str
    modality: Modality
    weights_hash: str
    class_names: tuple[str, ...]
    settings: EvaluationSettings
    cases: tuple[CaseOutcome, ...]
    n_requested: int
    cancelled: bool
    seconds: float
    device: str
    expected_area_share: float = math.nan  # mean share of the reading map that is expected
    notes: tuple[str, ...] = ()

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m in self.settings.methods
                     if any(c.outcomes and _has(c, m) for c in self.cases)) \
            if self.cases else self.settings.methods

    def summaries(self) -> tuple[MethodSummary, ...]:
        return tuple(summarise_method(self.cases, method) for method in self.methods)

    def most_disagreeing(self, n: int = 5) -> tuple[CaseOutcome, ...]:
        ranked = sorted((c for c in self.cases if not math.isnan(c.disagreement)),
                        key=lambda c: c.disagreement, reverse=True)
        return tuple(ranked[:n])


def _has(case: CaseOutcome, method: str) -> bool:
    return any(o.method == method for o in case.outcomes)


def _values(cases: Sequence[CaseOutcome], method: str, name: str) -> np.ndarray:
    return np.array([float(getattr(c.outcome(method), name)) for c in cases if _has(c, method)],
                    dtype=np.float64)


def _nan_stat(values: np.ndarray, how: str) -> float:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan
    return float({"mean": np.mean, "median": np.median, "max": np.max}[how](finite))


def summarise_method(cases: Sequence[CaseOutcome], method: str) -> MethodSummary:
    """Summary statistics of ``method`` over the cases that ran it."""
    ran = [c for c in cases if _has(c, method)]

    def column(name: str) -> np.ndarray:
        if name.startswith("random_"):
            return np.array([getattr(c, name) for c in ran], dtype=np.float64)
        return _values(ran, method, name)

    return summarise_columns(method, column)


def summarise_columns(method: str, column: Callable[[str], np.ndarray]) -> MethodSummary:
    """Summary statistics of ``method`` from its per-case columns.

    ``column(name)`` gives one metric over the cases that ran the method, in case order: a
    :class:`MethodOutcome` field, or the case's ``random_deletion_auc`` /
    ``random_insertion_auc``. Each statistic asks for the one or two columns it needs, so a
    caller that reads columns from disk (a sharded run's case table) holds no more than two
    at a time; the statistics are exact either way.
    """
    deletion = column("deletion_auc")
    with np.errstate(invalid="ignore"):
        random_deletion = column("random_deletion_auc")
        beats_deletion = _rate(deletion < random_deletion, deletion, random_deletion)
    n_cases = deletion.size
    deletion_mean, deletion_median = _nan_stat(deletion, "mean"), _nan_stat(deletion, "median")
    del deletion, random_deletion
    insertion = column("insertion_auc")
    with np.errstate(invalid="ignore"):
        random_insertion = column("random_insertion_auc")
        beats_insertion = _rate(insertion > random_insertion, insertion, random_insertion)
    insertion_mean, insertion_median = _nan_stat(insertion, "mean"), _nan_stat(insertion, "median")
    del insertion, random_insertion
    relative = np.abs(column("relative_delta"))
    relative_median, relative_max = _nan_stat(relative, "median"), _nan_stat(relative, "max")
    del relative
    convergence = column("convergence")
    return MethodSummary(
        method=method, n_cases=n_cases,
        deletion_auc_mean=deletion_mean, deletion_auc_median=deletion_median,
        insertion_auc_mean=insertion_mean, insertion_auc_median=insertion_median,
        abs_relative_delta_median=relative_median, abs_relative_delta_max=relative_max,
        precision_at_k_mean=_nan_stat(column("precision_at_k"), "mean"),
        rank_correlation_mean=_nan_stat(column("rank_correlation"), "mean"),
        mask_share_mean=_nan_stat(column("mask_share"), "mean"),
        pointing_game_rate=_nan_stat(column("pointing_game"), "mean"),
        beats_random_deletion_rate=beats_deletion,
        beats_random_insertion_rate=beats_insertion,
        seconds_total=float(column("seconds").sum()),
        convergence_median=_nan_stat(convergence, "median"),
        convergence_max=_nan_stat(convergence, "max"),
        path_reach_median=_nan_stat(column("path_reach"), "median"),
        short_path_share=_nan_stat(column("short_paths"), "mean"),
    )


class CurveMean:
    """The running mean of curves on one fraction ``grid``, one curve at a time.

    Cases may have different unit counts (sentences of different lengths), so each curve is
    interpolated onto the grid first; NaN values are left out of the mean, and a grid point
    with no finite value at all is NaN. Memory is two grid-sized arrays, however many curves.
    """

    def __init__(self, grid: np.ndarray) -> None:
        self.grid = np.asarray(grid, dtype=np.float64)
        self._totals = np.zeros(self.grid.shape)
        self._counts = np.zeros(self.grid.shape, dtype=np.int64)

    def add(self, curve: Any, fractions: Any) -> None:
        values = np.asarray(curve, dtype=np.float64)
        points = np.asarray(fractions, dtype=np.float64)
        if not values.size or values.size != points.size:
            return
        row = np.interp(self.grid, points, values)
        finite = np.isfinite(row)
        self._totals += np.where(finite, row, 0.0)
        self._counts += finite

    def mean(self) -> np.ndarray:
        return np.where(self._counts > 0, self._totals / np.maximum(self._counts, 1), np.nan)


def mean_curve(cases: Sequence[CaseOutcome], curve_of: Callable[[CaseOutcome], Any],
               grid: np.ndarray) -> np.ndarray:
    """The mean of ``curve_of(case)`` over the cases, on one fraction ``grid`` (see
    :class:`CurveMean`)."""
    accumulator = CurveMean(grid)
    for case in cases:
        accumulator.add(curve_of(case), case.fractions)
    return accumulator.mean()


def _rate(hits: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    valid = np.isfinite(a) & np.isfinite(b)
    return float(hits[valid].mean()) if valid.any() else math.nan


# -- raw cases, as uploaded or bundled (before the model turns them into EvalCases) -------------

@dataclass(frozen=True)
class ImageItem:
    """An image case: a decoded picture, and optionally a bool mask [H, W] of what matters
    (at the picture's own size; it is resized with the picture)."""

    name: str
    image: Any  # PIL.Image.Image, already decoded and checked by modalities.image
    mask: np.ndarray | None = None
    label: int | None = None


@dataclass(frozen=True)
class TextItem:
    """A text case, with optionally the words expected to matter and its true class."""

    name: str
    text: str
    expected_words: tuple[str, ...] = ()
    label: int | None = None


@dataclass(frozen=True)
class RowItem:
    """A tabular case in raw units (feature name -> value), with the expected feature names."""

    name: str
    values: Mapping[str, float]
    expected_features: tuple[str, ...] = ()
    label: int | float | None = None
