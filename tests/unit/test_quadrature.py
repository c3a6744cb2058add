"""Quadrature rules: exactness on polynomials, Captum's conventions, nested refinement."""

from __future__ import annotations

import numpy as np
import pytest
from captum.attr._utils.approximation_methods import approximation_parameters

from attribution_core.quadrature import (
    QUADRATURE_METHODS,
    custom_rule,
    quadrature,
    trapezoid_weights,
)


@pytest.mark.parametrize("method", QUADRATURE_METHODS)
def test_weights_sum_to_one_and_alphas_in_unit_interval(method: str) -> None:
    rule = quadrature(method, 17)
    assert abs(rule.step_sizes.sum() - 1.0) < 1e-14, f"{method}: weights must integrate 1 exactly"
    assert rule.alphas.min() >= 0.0 and rule.alphas.max() <= 1.0, f"{method}: alphas leave [0, 1]"
    assert rule.n_steps == 17, "n_steps counts nodes (gradient evaluations), as in Captum"


@pytest.mark.parametrize("method", ["riemann_left", "riemann_right", "riemann_middle",
                                    "gausslegendre"])
def test_same_nodes_and_weights_as_captum(method: str) -> None:
    step_sizes, alphas = approximation_parameters(method)
    rule = quadrature(method, 12)
    np.testing.assert_allclose(rule.alphas, alphas(12), rtol=0, atol=1e-7,
                               err_msg=f"{method}: nodes differ from Captum's")
    np.testing.assert_allclose(rule.step_sizes, step_sizes(12), rtol=1e-7,
                               err_msg=f"{method}: weights differ from Captum's")


def test_trapezoid_is_captums_rescaled_by_n_over_n_minus_one() -> None:
    """Captum's trapezoid weights sum to (n-1)/n; ours are the textbook ones summing to 1."""
    step_sizes, alphas = approximation_parameters("riemann_trapezoid")
    n = 12
    rule = quadrature("riemann_trapezoid", n)
    np.testing.assert_allclose(rule.alphas, alphas(n), atol=1e-7, err_msg="same nodes")
    np.testing.assert_allclose(rule.step_sizes * (n - 1) / n, step_sizes(n), rtol=1e-12,
                               err_msg="Captum's weights are ours times (n-1)/n")
    assert abs(sum(step_sizes(n)) - (n - 1) / n) < 1e-12, "Captum's trapezoid sums to (n-1)/n"


@pytest.mark.parametrize("method,degree", [
    ("riemann_middle", 1), ("riemann_trapezoid", 1), ("gausslegendre", 2 * 6 - 1),
])
def test_polynomial_exactness(method: str, degree: int) -> None:
    rule = quadrature(method, 6)
    for power in range(degree + 1):
        estimate = float((rule.step_sizes * rule.alphas**power).sum())
        assert abs(estimate - 1.0 / (power + 1)) < 1e-13, (
            f"{method} must integrate alpha^{power} exactly, got {estimate}"
        )


@pytest.mark.parametrize("bad", [0, -3])
def test_rejects_too_few_steps(bad: int) -> None:
    with pytest.raises(ValueError, match="n_steps"):
        quadrature("gausslegendre", bad)
    with pytest.raises(ValueError, match="n_steps"):
        quadrature("riemann_trapezoid", 1)


def test_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="Unknown quadrature method"):
        quadrature("simpson", 8)


def test_custom_rule_is_trapezoid_on_given_nodes() -> None:
    nodes = np.array([0.0, 0.1, 0.5, 1.0])
    rule = custom_rule(nodes[::-1])
    np.testing.assert_allclose(rule.alphas, nodes, err_msg="nodes are sorted")
    np.testing.assert_allclose(rule.step_sizes, [0.05, 0.25, 0.45, 0.25],
                               err_msg="weights are half the neighbouring widths")
    with pytest.raises(ValueError, match="from 0 to 1"):
        trapezoid_weights(np.array([0.1, 1.0]))
