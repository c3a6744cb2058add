"""Map convergence next to the completeness gauge: the sum can be right while the map is not."""

from __future__ import annotations

import math
from dataclasses import dataclass

import streamlit as st

from attribution_core.results import Attribution
from dashboard.widgets.figures import AMBER_BELOW, GREEN_BELOW, completeness_colour

_MARKDOWN_COLOURS = {"green": "green", "amber": "orange", "red": "red", "grey": "gray"}


@dataclass(frozen=True)
class MapConvergence:
    """The per-feature convergence of one IG result, in words and a traffic-light colour."""

    value: float  # max |change of A| / max |A|; NaN when not estimated
    colour: str  # green / amber / red / grey (not estimated)
    summary: str
    sum_right_map_not: bool  # completeness green while the map still moves


def map_convergence(result: Attribution) -> MapConvergence:
    value = math.nan if result.convergence is None else float(result.convergence[0])
    completeness_ok = completeness_colour(float(result.relative_delta[0])) == "green"
    if not math.isfinite(value):
        return MapConvergence(value, "grey", "Map convergence not estimated: turn on the "
                              "convergence curve (a run at fewer steps measures it).", False)
    colour = "green" if value < GREEN_BELOW else "amber" if value < AMBER_BELOW else "red"
    if result.n_steps == "auto":
        summary = (f"Map convergence: each attribution is estimated within {100 * value:.3g} % "
                   "of the largest one of its exact value (the adaptive grid's own estimate, "
                   "an upper bound in practice).")
    else:
        summary = (f"Map convergence: attributions move by up to {100 * value:.3g} % of the "
                   f"largest one between {result.convergence_reference_steps} and "
                   f"{result.n_steps} steps.")
    return MapConvergence(value, colour, summary, completeness_ok and colour != "green")


def show_map_convergence(result: Attribution) -> None:
    """A metric and one line under the IG gauge; a warning when the sum hides a moving map."""
    verdict = map_convergence(result)
    shown = "n/a" if not math.isfinite(verdict.value) else f"{100 * verdict.value:.3g} %"
    st.metric("IG map convergence", shown,
              help="Largest change of any single attribution between the two finest runs, "
                   "relative to the largest attribution. green < 1 %, amber < 5 %, red above.")
    st.markdown(f":{_MARKDOWN_COLOURS[verdict.colour]}[{verdict.colour}] {verdict.summary}")
    if verdict.sum_right_map_not:
        st.warning("The attributions add up (completeness is green) but the map is still "
                   "moving: per-feature errors cancel in the sum. Raise the step count before "
                   "reading individual features.")
