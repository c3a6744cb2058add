"""Quadrature rules on [0, 1]: step sizes (weights) and alphas (nodes).

The conventions follow Captum's ``approximation_methods`` (``n_steps`` is the number of nodes,
i.e. of gradient evaluations), so that results can be compared at the same ``n_steps``, with one
deliberate difference: ``riemann_trapezoid`` uses the textbook weights (step 1/(n-1)), whose sum
is 1, where Captum's sum to (n-1)/n; ours therefore equal Captum's times n/(n-1).

Nested grids serve the adaptive ("auto") step count: a trapezoid grid whose intervals are bisected
keeps every node it had, so gradients already computed are reused as the grid grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from attribution_core.validation import check_choice, check_requirement, check_step_count

QuadratureMethod = Literal[
    "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"
]
QUADRATURE_METHODS: tuple[str, ...] = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)


@dataclass(frozen=True)
class QuadratureRule:
    """Nodes and weights on [0, 1]: ``sum(weights * g(alphas))`` approximates the integral."""

    method: str
    alphas: np.ndarray
    step_sizes: np.ndarray

    @property
    def n_steps(self) -> int:
        return int(self.alphas.shape[0])


def quadrature(method: str, n_steps: int) -> QuadratureRule:
    """Return the step sizes and alphas of ``method`` with ``n_steps`` nodes (float64).

    Parameters
    ----------
    method : str
        "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid" or
        "gausslegendre".
    n_steps : int
        Nodes (gradient evaluations), >= 1 (>= 2 for "riemann_trapezoid").

    Returns
    -------
    QuadratureRule
        The ``method``, its ``alphas`` in [0, 1] and ``step_sizes`` (read-only float64 arrays,
        shared between calls through a cache).
    """
    check_step_count(int(n_steps) if isinstance(n_steps, np.integer) else n_steps, auto=False)
    return _quadrature(method, int(n_steps))


@lru_cache(maxsize=256)
def _quadrature(method: str, n_steps: int) -> QuadratureRule:
    # Cached (Gauss-Legendre nodes cost an eigen-solve); arrays are frozen so sharing is safe.
    rule = _build_rule(method, n_steps)
    rule.alphas.setflags(write=False)
    rule.step_sizes.setflags(write=False)
    return rule


def _build_rule(method: str, n_steps: int) -> QuadratureRule:
    check_choice("quadrature method", method, QUADRATURE_METHODS)
    minimum = 2 if method == "riemann_trapezoid" else 1
    check_requirement(n_steps >= minimum, f"{method} needs n_steps >= {minimum}, got {n_steps}.")
    n = int(n_steps)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return QuadratureRule(method, 0.5 * (nodes + 1.0), 0.5 * weights)
    if method == "riemann_trapezoid":
        steps = np.full(n, 1.0 / (n - 1))
        steps[0] = steps[-1] = 0.5 / (n - 1)
        return QuadratureRule(method, np.linspace(0.0, 1.0, n), steps)
    steps = np.full(n, 1.0 / n)
    if method == "riemann_left":
        alphas = np.linspace(0.0, 1.0 - 1.0 / n, n)
    elif method == "riemann_right":
        alphas = np.linspace(1.0 / n, 1.0, n)
    else:
        alphas = np.linspace(1.0 / (2 * n), 1.0 - 1.0 / (2 * n), n)
    return QuadratureRule(method, alphas, steps)


def trapezoid_weights(nodes: np.ndarray) -> np.ndarray:
    """Trapezoid weights for sorted, possibly non-uniform nodes covering [0, 1].

    Parameters
    ----------
    nodes : array
        At least two nodes, strictly increasing from exactly 0 to exactly 1.

    Returns
    -------
    array
        Float64 weights, one per node (half the widths of its neighbouring intervals); they
        sum to 1.
    """
    nodes = np.asarray(nodes, dtype=np.float64)
    check_requirement(nodes.ndim == 1 and nodes.shape[0] >= 2,
                      "A trapezoid grid needs at least two nodes.")
    check_requirement(bool(nodes[0] == 0.0 and nodes[-1] == 1.0 and np.all(np.diff(nodes) > 0)),
                      "Trapezoid nodes must be strictly increasing from 0 to 1.")
    widths = np.diff(nodes)
    weights = np.zeros_like(nodes)
    weights[:-1] += 0.5 * widths
    weights[1:] += 0.5 * widths
    return weights


def custom_rule(alphas: np.ndarray) -> QuadratureRule:
    """A trapezoid rule on the given nodes (used to replay an adaptive grid in one shot).

    Parameters
    ----------
    alphas : array
        The nodes, in any order (they are sorted); sorted, they must run strictly increasing
        from 0 to 1.

    Returns
    -------
    QuadratureRule
        Method "riemann_trapezoid" with the sorted nodes as ``alphas`` and their trapezoid
        weights as ``step_sizes``.
    """
    nodes = np.sort(np.asarray(alphas, dtype=np.float64))
    return QuadratureRule("riemann_trapezoid", nodes, trapezoid_weights(nodes))
