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
    distribution, ``reference_kwargs`` their forward kwargs (e.g. attention masks).
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
    deletion = _values(ran, method, "deletion_auc")
    insertion = _values(ran, method, "insertion_auc")
    random_deletion = np.array([c.random_deletion_auc for c in ran], dtype=np.float64)
    random_insertion = np.array([c.random_insertion_auc for c in ran], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        beats_deletion = _rate(deletion < random_deletion, deletion, random_deletion)
        beats_insertion = _rate(insertion > random_insertion, insertion, random_insertion)
    return MethodSummary(
        method=method, n_cases=len(ran),
        deletion_auc_mean=_nan_stat(deletion, "mean"),
        deletion_auc_median=_nan_stat(deletion, "median"),
        insertion_auc_mean=_nan_stat(insertion, "mean"),
        insertion_auc_median=_nan_stat(insertion, "median"),
        abs_relative_delta_median=_nan_stat(np.abs(_values(ran, method, "relative_delta")),
                                            "median"),
        abs_relative_delta_max=_nan_stat(np.abs(_values(ran, method, "relative_delta")), "max"),
        precision_at_k_mean=_nan_stat(_values(ran, method, "precision_at_k"), "mean"),
        rank_correlation_mean=_nan_stat(_values(ran, method, "rank_correlation"), "mean"),
        mask_share_mean=_nan_stat(_values(ran, method, "mask_share"), "mean"),
        pointing_game_rate=_nan_stat(_values(ran, method, "pointing_game"), "mean"),
        beats_random_deletion_rate=beats_deletion,
        beats_random_insertion_rate=beats_insertion,
        seconds_total=float(_values(ran, method, "seconds").sum()),
        convergence_median=_nan_stat(_values(ran, method, "convergence"), "median"),
        convergence_max=_nan_stat(_values(ran, method, "convergence"), "max"),
        path_reach_median=_nan_stat(_values(ran, method, "path_reach"), "median"),
        short_path_share=_nan_stat(_values(ran, method, "short_paths"), "mean"),
    )


def mean_curve(cases: Sequence[CaseOutcome], curve_of: Callable[[CaseOutcome], Any],
               grid: np.ndarray) -> np.ndarray:
    """The mean of ``curve_of(case)`` over the cases, on one fraction ``grid``.

    Cases may have different unit counts (sentences of different lengths), so each curve is
    interpolated onto the grid first; NaN values are left out of the mean, and a grid point
    with no finite value at all is NaN.
    """
    rows = []
    for case in cases:
        curve = np.asarray(curve_of(case), dtype=np.float64)
        fractions = np.asarray(case.fractions, dtype=np.float64)
        if curve.size and curve.size == fractions.size:
            rows.append(np.interp(grid, fractions, curve))
    if not rows:
        return np.full(np.shape(grid), np.nan)
    stacked = np.vstack(rows)
    finite = np.isfinite(stacked)
    counts = finite.sum(axis=0)
    totals = np.where(finite, stacked, 0.0).sum(axis=0)
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


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
