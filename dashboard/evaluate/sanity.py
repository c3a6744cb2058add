"""Evaluate page, the model-randomisation sanity check: a button, a chart and a verdict.

It runs on demand (it explains the cases once per re-initialised layer, so it costs several
evaluations' worth of IG and IG2) and is stored under the result's key, so it is shown again
with that result and goes into its JSON record.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from attribution_core.evaluation import EvaluationInputError
from attribution_core.evaluation.figure_style import method_colour
from attribution_core.evaluation.sanity import (
    DEFAULT_SANITY_CASES,
    SanityCheck,
    randomisation_sanity,
)
from attribution_core.evaluation.types import METHOD_IG, METHOD_IG2
from dashboard.evaluate import keys
from dashboard.evaluate.inputs import EvaluationRequest
from dashboard.widgets import run_gate


def stored(key: str) -> SanityCheck | None:
    return st.session_state.setdefault(keys.SANITY, {}).get(key)


def record_of(key: str) -> dict[str, Any] | None:
    """The check as plain data for the JSON record (None when it was not run)."""
    check = stored(key)
    return None if check is None else dataclasses.asdict(check)


def sanity_section(request: EvaluationRequest | None, key: str) -> None:
    """Offer the check for the result ``key`` when the current inputs are that result's."""
    st.subheader("Sanity check: model randomisation")
    check = stored(key)
    if check is None:
        if request is None or request.key != key:
            st.caption("Run the evaluation on the current inputs to check them.")
            return
        methods = [m for m in (METHOD_IG, METHOD_IG2) if m in request.settings.methods]
        if not methods:
            st.caption("The check explains with IG and IG2; choose at least one of them.")
            return
        st.caption(f"Re-initialises the model's layers one by one, from the output down, and "
                   f"compares {' and '.join(methods)} maps of the first "
                   f"{DEFAULT_SANITY_CASES} cases with the trained model's. Maps that explain "
                   "the model must change; maps that stay alike mostly echo the input.")
        if not st.button("Run the randomisation check", key=keys.SANITY_RUN,
                         icon=":material/shuffle:"):
            return
        with st.spinner("Re-initialising layers and explaining again…"):
            try:
                check = run_gate.run_queued(  # a turn in the device's fair queue
                    request.model.device, keys.SANITY, lambda job: randomisation_sanity(
                        request.model, request.cases, request.settings, methods=methods,
                        seed=request.settings.seed, progress=job.progress()))
            except EvaluationInputError as error:
                st.error(f"The check cannot run: {error}")
                return
            except Exception as error:  # a message, never a traceback; results stay
                st.error(f"The check failed ({type(error).__name__}): {error}")
                return
        st.session_state[keys.SANITY][key] = check
    st.plotly_chart(sanity_figure(check), key=keys.SANITY_CHART, width="stretch")
    for method in check.methods:
        final = check.final(method)
        verdict = (f"**{method}** passes: with every layer re-initialised its maps keep a rank "
                   f"correlation of {final:.2f} with the trained model's (below "
                   f"{check.threshold:.1f}), so they depend on what the model learned.")
        if check.passed(method):
            st.success(verdict, icon=":material/check_circle:")
        else:
            st.warning(f"**{method}** keeps a rank correlation of {final:.2f} (not below "
                       f"{check.threshold:.1f}) after every layer is re-initialised: its maps "
                       "may reflect the input more than the model.", icon=":material/warning:")
    st.caption(f"{check.n_cases} cases, {len(check.layers)} layers, {check.seconds:.1f} s.")


def sanity_figure(check: SanityCheck) -> go.Figure:
    steps = ["trained"] + [f"+ {name}" for name in check.layers]
    figure = go.Figure()
    for method in check.methods:
        figure.add_trace(go.Scatter(
            x=steps, y=list(check.correlations[method]), mode="lines+markers", name=method,
            line={"color": method_colour(method), "width": 2},
            hovertemplate=f"{method}<br>%{{x}}<br>rank correlation %{{y:.3f}}<extra></extra>"))
    figure.add_hline(y=check.threshold, line={"dash": "dot", "color": "#888"},
                     annotation_text=f"{check.threshold:.1f}", annotation_position="right")
    figure.update_layout(
        title={"text": "Rank correlation with the trained model's maps"}, height=360,
        xaxis={"title": {"text": "layers re-initialised (cumulative, output first)"}},
        yaxis={"title": {"text": "mean Spearman of |map|"}, "range": [-0.2, 1.05]},
        margin={"l": 60, "r": 40, "t": 60, "b": 60})
    return figure
