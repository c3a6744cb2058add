"""How far an IG2 map can be trusted: its per-feature convergence and how far each path got.

Two error sources, estimated from the run itself (no extra model call):

- **References.** IG2 averages B per-reference maps A_r. The mean's error at feature i is about
  normal with standard deviation c * se_i, se_i = std_r(A_r,i) / sqrt(B). Against a run with
  ``REFERENCE_FACTOR`` x B independently drawn references, c = sqrt(1 + 1 / REFERENCE_FACTOR).
  The map's *largest* error is bounded by the union bound: the level q with
  sum_i P(|t_{B-1}| > q / (c se_i)) = ``ALPHA`` is exceeded by max_i |error_i| with
  probability at most ALPHA (features with a small spread add little to the sum, so q tracks
  the few uncertain ones instead of multiplying the largest se_i by a fixed factor).
- **Steps.** The same path integrated on every other point (T / 2 segments, the same rule where
  it can be: left, trapezoid; the midpoint rule's coarse grid takes the first midpoint, a
  first-order rule) gives a second quadrature of the same points; the change per feature
  estimates the fine grid's error (for a second-order rule on a smooth integrand it is about 3x
  the error, for a first-order rule or ReLU kinks about 1x): no point is added.

``convergence`` = (q + max_i |step change_i|) / max_i |A_i|, per explicand, the same scale as
IG's ``Attribution.convergence`` (max change / max |A|). NaN with a single reference.

The path diagnostic: ``reach`` = D_r(GradCF) / D_r(x) per reference, the share of the squared
representation distance that is left at the path's end; a path whose reach is above
``SHORT_PATH_REACH`` stopped short of its reference's representation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

ALPHA = 0.05
REFERENCE_FACTOR = 4
# A path that kept more than a quarter of its squared representation distance (more than half
# of the distance itself) did not get near its reference: its GradCF is not the counterfactual.
SHORT_PATH_REACH = 0.25


@dataclass(frozen=True)
class Ig2Convergence:
    """Per explicand [N] (float64, CPU) and per feature [N, ...] (the attributions' dtype)."""

    convergence: torch.Tensor  # [N] references + steps, / max |A|
    references: torch.Tensor  # [N] union-bound level q / max |A|
    steps: torch.Tensor  # [N] max |A(T) - A(T/2 on the same path)| / max |A|
    standard_error: torch.Tensor  # [N, ...] se_i = std_r(A_r,i) / sqrt(B)
    step_change: torch.Tensor  # [N, ...] A(T) - A(T/2), signed


class CoarseGrid:
    """The same path integrated on every other point, accumulated as the path advances.

    Coarse segment k joins fine segments 2k and 2k + 1 (step S_k = s_2k + s_2k+1). Rows are
    updated through the runner's row view (all rows, or those still moving).
    """

    def __init__(self, like: torch.Tensor, rule: str) -> None:
        self.rule = rule
        self.acc = torch.zeros_like(like)
        self.grad_even = torch.zeros_like(like)  # df/dz at the coarse segment's first point
        self.pair = torch.zeros_like(like)  # fine steps taken since that point
        self.last = torch.zeros_like(like)  # the previous coarse step S_{k-1} (trapezoid)

    def update(self, view: _View, j: int, grad: torch.Tensor | None, step: torch.Tensor,
               ended: torch.Tensor) -> None:
        """Point j of the left / trapezoid rules: ``grad`` = df/dz(g_j) (None where the rule
        needs none: the left rule's last point), ``step`` = s_j, ``ended`` [rows] bool: the
        rows take no further step (last point, or frozen by an early stop)."""
        if j % 2 == 1:
            joined = view.take(self.pair) + step
            if self.rule == "trapezoid":
                assert grad is not None
                # A row that ends here closes its segment with its own (unmoving) point.
                closing = grad * _column(ended, grad)
                view.add(self.acc, 0.5 * (view.take(self.grad_even) + closing) * joined)
                view.put(self.last, joined)
            else:
                view.add(self.acc, view.take(self.grad_even) * joined)
            return
        if grad is None:  # the left rule's last point: no segment starts here
            return
        if self.rule == "trapezoid":
            view.add(self.acc, 0.5 * grad * view.take(self.last))
        view.put(self.grad_even, grad)
        view.put(self.pair, step)

    def update_middle(self, view: _View, segment: int, grad: torch.Tensor,
                      step: torch.Tensor, ended: torch.Tensor) -> None:
        """Fine segment ``segment`` of the midpoint rule: its midpoint gradient and step;
        ``ended``: it is the row's last segment."""
        if segment % 2 == 1:
            view.add(self.acc, view.take(self.grad_even) * (view.take(self.pair) + step))
            return
        view.put(self.grad_even, grad)
        view.put(self.pair, step)
        # A coarse segment of one fine segment (the row ends here) equals the fine one.
        view.add(self.acc, grad * step * _column(ended, grad))


def _column(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


class _View:  # the runner's _RowView protocol, for type hints only
    def take(self, tensor: torch.Tensor) -> torch.Tensor: ...  # pragma: no cover

    def add(self, tensor: torch.Tensor, values: torch.Tensor) -> None: ...  # pragma: no cover

    def put(self, tensor: torch.Tensor, values: torch.Tensor) -> None: ...  # pragma: no cover


def estimate(per_reference: torch.Tensor, coarse: torch.Tensor, n_explicands: int
             ) -> Ig2Convergence:
    """The convergence estimate from the per-reference maps [N * B, ...] (fine) and their coarse
    counterparts (module docstring)."""
    n_refs = per_reference.shape[0] // n_explicands
    fine = per_reference.reshape(n_explicands, n_refs, -1).double()
    coarse_maps = coarse.reshape(n_explicands, n_refs, -1).double()
    attributions = fine.mean(1)
    scale = attributions.abs().amax(1).clamp_min(1e-300)
    change = attributions - coarse_maps.mean(1)
    if n_refs > 1:
        se = fine.std(1) / math.sqrt(n_refs)
        level = union_bound_level(se * math.sqrt(1 + 1 / REFERENCE_FACTOR), ALPHA,
                                  n_refs - 1)
    else:
        se = torch.full_like(attributions, math.nan)
        level = torch.full((n_explicands,), math.nan, dtype=torch.float64)
    references = (level / scale).cpu()
    steps = (change.abs().amax(1) / scale).cpu()
    shape = (n_explicands, *per_reference.shape[1:])
    return Ig2Convergence(references + steps, references, steps,
                          se.reshape(shape).to(per_reference.dtype),
                          change.reshape(shape).to(per_reference.dtype))


def union_bound_level(sd: torch.Tensor, alpha: float, dof: int) -> torch.Tensor:
    """Per row of ``sd`` [N, F]: the q with sum_i P(|t_dof| > q / sd_i) = alpha (bisection on the
    log scale; 0 where every sd is 0).

    Student's t with B - 1 degrees of freedom, not the normal: each sd_i is itself estimated
    from B maps, and with few references it is often too small (measured: with 4 references
    normal tails left 4 of 40 digits maps above the bound, t tails none). The spreads are
    binned on a log scale (``LEVEL_BINS`` bins, each at its upper edge: q can only grow), so an
    image of 150,000 features costs as much as one of 256.
    """
    from scipy.special import stdtr, stdtrit

    values = sd.detach().cpu().double().numpy()
    levels = np.zeros(values.shape[0])
    for row, spreads in enumerate(values):
        top = float(spreads.max())
        if top <= 0:
            continue
        weights, edges = _log_bins(spreads[spreads > 0], top)
        # The sum is at most F * P(|t| > q / max sd) and at least the largest term: q between
        # max sd * t_{1 - alpha / 2} and max sd * t_{1 - alpha / (2F)} holds the root.
        low = top * float(stdtrit(dof, 1 - alpha / 2))
        high = top * float(stdtrit(dof, 1 - alpha / (2 * values.shape[1])))
        for _ in range(50):  # the bracket spans a factor < 100: 50 halvings of its log suffice
            middle = math.sqrt(low * high)
            tails = 2 * float((weights * stdtr(dof, -middle / edges)).sum())
            low, high = (middle, high) if tails > alpha else (low, middle)
        levels[row] = high
    return torch.from_numpy(levels)


LEVEL_BINS = 256


def _log_bins(spreads: np.ndarray, top: float) -> tuple[np.ndarray, np.ndarray]:
    """(counts, upper edges) of the positive spreads in ``LEVEL_BINS`` log-spaced bins."""
    bottom = max(float(spreads.min()), top * 1e-12)
    if bottom >= top:
        return np.array([float(spreads.size)]), np.array([top])
    edges = np.geomspace(bottom, top, LEVEL_BINS + 1)
    counts, _ = np.histogram(np.clip(spreads, bottom, top), bins=edges)
    keep = counts > 0
    return counts[keep].astype(np.float64), edges[1:][keep]


@dataclass(frozen=True)
class Ig2TrustSummary:
    """One explicand's convergence and path figures as plain floats (pages, reports)."""

    convergence: float  # NaN when not estimated (one reference)
    references_part: float
    steps_part: float
    steps_from: str
    relative_delta: float
    reach: tuple[float, ...]  # D_r(GradCF) / D_r(x) per reference

    @property
    def n_references(self) -> int:
        return len(self.reach)

    @property
    def short_paths(self) -> int:
        return sum(value > SHORT_PATH_REACH for value in self.reach)

    @property
    def reach_median(self) -> float:
        return float(np.median(self.reach)) if self.reach else math.nan


def trust_summary(result: Any, index: int = 0) -> Ig2TrustSummary:
    """Explicand ``index`` of an ``IG2Attribution`` (NaN for estimates it does not carry)."""
    def item(name: str) -> float:
        value = getattr(result, name, None)
        return math.nan if value is None else float(value[index])

    reach = path_reach(result.distance_trace)[index]
    return Ig2TrustSummary(item("convergence"), item("convergence_references"),
                           item("convergence_steps"), str(result.convergence_steps_from),
                           item("relative_delta"), tuple(float(r) for r in reach.tolist()))


def path_reach(distance_trace: torch.Tensor) -> torch.Tensor:
    """D_r(GradCF) / D_r(x) per explicand and reference [N, B] (0 where D_r(x) is 0: the
    explicand already sits at the reference's representation)."""
    start, end = distance_trace[..., 0], distance_trace[..., -1]
    return torch.where(start > 0, end / start.clamp_min(1e-300), torch.zeros_like(start))


def short_paths(distance_trace: torch.Tensor, threshold: float = SHORT_PATH_REACH
                ) -> torch.Tensor:
    """[N, B] bool: the paths that kept more than ``threshold`` of their squared distance."""
    return path_reach(distance_trace) > threshold
