"""IG2's error bar and path diagnostic beside its completeness gauge (image, text, tabular).

The map convergence has two parts: the references' (how much the average over B references
could still move: their spread, a 95 % union bound) and the steps' (the change against a path
at half the steps). The path diagnostic says how far each reference's path got: the share of
its squared representation distance left at GradCF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import streamlit as st

from attribution_core.methods.ig2 import SHORT_PATH_REACH, Ig2TrustSummary
from dashboard.widgets.figures import AMBER_BELOW, GREEN_BELOW, completeness_colour

_MARKDOWN_COLOURS = {"green": "green", "amber": "orange", "red": "red", "grey": "gray"}


def colour_of(value: float) -> str:
    if not math.isfinite(value):
        return "grey"
    return "green" if value < GREEN_BELOW else "amber" if value < AMBER_BELOW else "red"


def convergence_summary(trust: Ig2TrustSummary) -> str:
    if not math.isfinite(trust.convergence):
        return ("IG2 map convergence not estimated: it needs at least two references (their "
                "spread is the error bar).")
    steps = ("a path at half the steps" if trust.steps_from == "half-steps path"
             else "the same path on every other point")
    return (f"IG2 map convergence: attributions may move by up to {100 * trust.convergence:.3g} % "
            f"of the largest one: {100 * trust.references_part:.3g} % from the "
            f"{trust.n_references} references (95 % bound from their spread), "
            f"{100 * trust.steps_part:.3g} % from the steps (against {steps}).")


def reach_summary(trust: Ig2TrustSummary) -> tuple[str, int]:
    """One line on the paths, and how many stopped short."""
    if not trust.reach:
        return "", 0
    reach = np.asarray(trust.reach)
    short = trust.short_paths
    line = (f"GradPath reach: the paths kept {100 * float(np.median(reach)):.3g} % (median; "
            f"{100 * float(reach.min()):.3g} to {100 * float(reach.max()):.3g} %) of their "
            "squared representation distance to the reference.")
    return line, short


def show_ig2_trust(trust: Ig2TrustSummary) -> None:
    """The convergence metric, its parts, the path reach, and their warnings."""
    shown = "n/a" if not math.isfinite(trust.convergence) else f"{100 * trust.convergence:.3g} %"
    colour = colour_of(trust.convergence)
    st.metric("IG2 map convergence", shown,
              help="How far single attributions may still move, relative to the largest one: "
                   "the references' part (95 % bound from the spread of the per-reference "
                   "maps) plus the steps' part (change against a path at half the steps). "
                   "green < 1 %, amber < 5 %, red above.")
    st.markdown(f":{_MARKDOWN_COLOURS[colour]}[{colour}] {convergence_summary(trust)}")
    if completeness_colour(trust.relative_delta) == "green" and colour in ("amber", "red"):
        st.warning("IG2's attributions add up (completeness is green) but the map is not "
                   "converged: " + ("add references (their spread dominates)."
                                    if trust.references_part >= trust.steps_part
                                    else "raise the path steps."))
    line, short = reach_summary(trust)
    if line:
        st.caption(line)
    if short:
        st.warning(f"{short} of {len(trust.reach)} paths stopped short: they kept more than "
                   f"{100 * SHORT_PATH_REACH:.0f} % of their squared representation distance, "
                   "so their GradCF is not the counterfactual the map is measured against. "
                   "Raise the step size or the path steps.")


def reach_rows(trust: Ig2TrustSummary, labels: Sequence[str]) -> list[dict[str, object]]:
    """One table row per reference: its label, reach and whether it stopped short."""
    return [{"reference": label, "reach D(GradCF)/D(x)": round(value, 4),
             "stopped short": value > SHORT_PATH_REACH}
            for label, value in zip(labels, trust.reach, strict=False)]


def trust_record(trust: Ig2TrustSummary) -> dict[str, object]:
    """The figures a run record (JSON download) keeps."""
    return {"convergence": trust.convergence, "convergence_references": trust.references_part,
            "convergence_steps": trust.steps_part, "convergence_steps_from": trust.steps_from,
            "path_reach": list(trust.reach), "short_paths": trust.short_paths,
            "short_path_reach_threshold": SHORT_PATH_REACH}
