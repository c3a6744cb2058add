"""Auto IG's per-feature error estimate on a nested trapezoid grid: an upper bound in practice.

With r = grad f * (x - x') at the nodes, per leaf interval and per feature:

- a leaf of the initial grid (never bisected) counts its left-right spread w/2 |r(b) - r(a)|:
  the trapezoid error of any r that is monotone on the leaf is at most that;
- the two children of a bisected parent [p, q] (midpoint m, each of width w) share the parent's
  change D = w/2 |r_p + r_q - 2 r_m|. What is left in the children is D/3 for a smooth integrand
  (Richardson: the trapezoid error falls four-fold per bisection) and up to D for one kink (a
  ReLU switching inside a child: error <= |jump| w/2 = D). The pair gets D (1/3 + 2/3 rho), with
  rho = D / (s_left + s_right) in [0, 1] from the children's own spreads s (1 at a kink, -> 0
  for a smooth integrand), shared between the children in proportion to their spreads;
- piecewise-constant integrands (the gradient of a ReLU / max-pool net is constant between
  kinks, bit for bit, so neighbouring nodes repeat it exactly): each child counts at least its
  own spread, a bound for any monotone staircase inside it (two kinks can put r_m on the line
  through r_p and r_q and hide from D).

The pair estimate (the Richardson part, not the spreads, which are bounds already) is multiplied
by ``AUTO_SAFETY``; leaf estimates add up per feature in absolute value (errors of opposite sign
cannot hide each other). The relative estimate divides by a lower bound of the true
max_i |A_i|, max_i (|A_i| - E_i), not by max_i |A_i|, which the error itself inflates.

AUTO_SAFETY is set from the measured distribution of true / estimated error
(``python -m benchmarks.ig_vs_captum``, oracle section, and docs/AUTO_IG.md): without it the
largest ratio over 5,760 runs was above 1 on ReLU nets stopped at few nodes; with 1.5 and at
least ``AUTO_MIN_NODES`` nodes it stayed at or below 0.74.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from attribution_core.quadrature import trapezoid_weights

AUTO_SAFETY = 1.5
SMOOTH_SHARE = 1.0 / 3.0  # Richardson: error left after a bisection / the change it made
_BLOCK = 64  # node rows gathered at once


class NodeRows(Protocol):
    def gather(self, indices: np.ndarray) -> torch.Tensor: ...


@dataclass(frozen=True)
class FeatureError:
    """One explicand's trapezoid estimate on its grid, and how wrong it may be."""

    total: torch.Tensor  # [F] the trapezoid attributions
    error: torch.Tensor  # [F] the per-feature error estimate
    leaf_error: np.ndarray  # [intervals] each leaf interval's max over features of its share


def feature_error(alphas: np.ndarray, ids: np.ndarray, store: NodeRows, initial_width: float
                  ) -> FeatureError:
    """The trapezoid attributions and their per-feature error estimate, in blocks over the
    nodes."""
    widths = np.diff(alphas)
    weights = trapezoid_weights(alphas)
    first = store.gather(ids[:1])
    width = first.shape[1]
    total = torch.zeros(width, dtype=torch.float64)
    error = torch.zeros(width, dtype=torch.float64)
    leaf_error = np.zeros(widths.size)
    for start in range(0, alphas.size, _BLOCK):
        stop = min(alphas.size, start + _BLOCK)
        total += torch.as_tensor(weights[start:stop]) @ store.gather(ids[start:stop])
    piecewise = _piecewise_constant(ids, store)
    top = np.flatnonzero(widths >= initial_width * (1 - 1e-9))
    for start in range(0, len(top), _BLOCK):
        block = top[start:start + _BLOCK]
        spread = torch.as_tensor(0.5 * widths[block]).view(-1, 1) * \
            (store.gather(ids[block + 1]) - store.gather(ids[block])).abs()
        error += spread.sum(0)
        leaf_error[block] = spread.amax(1).numpy()
    triples = _parents(alphas, widths, initial_width)
    for start in range(0, len(triples), _BLOCK):
        block = triples[start:start + _BLOCK]
        nodes = np.searchsorted(alphas, np.array([(t.start, t.middle, t.end) for t in block]))
        rows = store.gather(ids[nodes.reshape(-1)]).view(len(block), 3, width)
        half = 0.5 * torch.as_tensor([t.width for t in block]).view(-1, 1)
        change = half * (rows[:, 0] + rows[:, 2] - 2 * rows[:, 1]).abs()
        spreads = (half * (rows[:, 1] - rows[:, 0]).abs(), half * (rows[:, 2] - rows[:, 1]).abs())
        both = spreads[0] + spreads[1]
        rho = torch.where(both > 0, change / both.clamp_min(1e-300), torch.ones_like(both))
        pair = AUTO_SAFETY * change * (SMOOTH_SHARE + (1 - SMOOTH_SHARE) * rho)
        for index, parent in enumerate(block):
            for leaf in parent.leaves:
                side = 0 if abs(alphas[leaf] - parent.start) < 1e-12 else 1
                share = torch.where(both[index] > 0, pair[index] * spreads[side][index]
                                    / both[index].clamp_min(1e-300), 0.5 * pair[index])
                if piecewise:
                    share = torch.maximum(share, spreads[side][index])
                error += share
                leaf_error[leaf] = float(share.max())
    return FeatureError(total, error, leaf_error)


@dataclass(frozen=True)
class _Parent:
    """An interval [start, end] of width 2 * ``width`` whose halves were refined, and which of
    its children (interval indices) are still leaves."""

    start: float
    middle: float
    end: float
    width: float
    leaves: tuple[int, ...]


def _parents(alphas: np.ndarray, widths: np.ndarray, initial_width: float) -> list[_Parent]:
    """Every parent with a child that is still a leaf: the aligned interval of twice a leaf's
    width."""
    child = np.flatnonzero(widths < initial_width * (1 - 1e-9))
    parent_start = np.floor(alphas[child] / (2 * widths[child]) + 1e-9) * 2 * widths[child]
    parents: dict[tuple[float, float], list[int]] = {}
    for leaf, start_alpha in zip(child, parent_start, strict=True):
        parents.setdefault((float(widths[leaf]), float(start_alpha)), []).append(int(leaf))
    return [_Parent(p, p + w, p + 2 * w, w, tuple(leaves)) for (w, p), leaves in parents.items()]


def _piecewise_constant(ids: np.ndarray, store: NodeRows) -> bool:
    """Whether two neighbouring nodes carry bit-identical, non-zero rows (a gradient that is
    constant between kinks; a smooth one never repeats exactly)."""
    for start in range(0, ids.size - 1, _BLOCK):
        rows = store.gather(ids[start:min(ids.size, start + _BLOCK + 1)])
        if bool(((rows[1:] == rows[:-1]).all(1) & (rows[1:] != 0).any(1)).any()):
            return True
    return False
