"""The version of every cached method's numerical rule: part of every cache key.

A result cached under an older rule must never be served after the rule changed (a constant of
the auto stopping rule, a quadrature weight, IG2's path step). Every change that moves a
method's numbers bumps its version here.
"""

from __future__ import annotations

RULE_VERSIONS: dict[str, int] = {
    # Fixed-step IG: quadrature rules, accumulation, completeness bookkeeping.
    "integrated_gradients": 1,
    # Auto IG: nested trapezoid refinement, its stopping rule and per-feature estimate.
    "integrated_gradients.auto": 1,
    # IG2: the GradPath walk, its step sizes and the path integral.
    "ig2": 1,
}


def rule_version(kind: str) -> int:
    """The version of ``kind``'s rule; an unknown kind is a programming error (no key without
    a version)."""
    try:
        return RULE_VERSIONS[kind]
    except KeyError:
        raise ValueError(f"No rule version for {kind!r}: add it to RULE_VERSIONS.") from None
