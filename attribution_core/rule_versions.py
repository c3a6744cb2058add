"""The version of every cached method's numerical rule: part of every cache key.

A result cached under an older rule must never be served after the rule changed (a constant of
the auto stopping rule, a quadrature weight, IG2's path step). Every change that moves a
method's numbers bumps its version here and records the new fingerprint in
``rule_fingerprints.RECORDED`` (``python -m attribution_core.rule_fingerprints`` prints it);
``tests/unit/test_rule_versions.py`` fails when the numbers move and the version does not.
"""

from __future__ import annotations

RULE_VERSIONS: dict[str, int] = {
    # Fixed-step IG: quadrature rules, accumulation, completeness bookkeeping.
    "integrated_gradients": 1,
    # Auto IG: nested trapezoid refinement, its stopping rule and per-feature estimate.
    # 2: the estimate shares each bisection's change by the children's spreads (x AUTO_SAFETY),
    # spreads bound piecewise-constant integrands, a lower bound of max |A| divides, at least
    # AUTO_MIN_NODES nodes, the completeness target never below float resolution.
    "integrated_gradients.auto": 2,
    # IG2: the GradPath walk, its step sizes and the path integral.
    # 2: results carry the per-feature convergence estimate and the path reach (attributions
    # as in version 1; cached version-1 results lack those fields).
    "ig2": 2,
}


def rule_version(kind: str) -> int:
    """The version of ``kind``'s rule; an unknown kind is a programming error (no key without
    a version)."""
    try:
        return RULE_VERSIONS[kind]
    except KeyError:
        raise ValueError(f"No rule version for {kind!r}: add it to RULE_VERSIONS.") from None
