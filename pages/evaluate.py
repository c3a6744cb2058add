"""Evaluate page: layout only (logic in dashboard/evaluate/ and attribution_core)."""

import streamlit as st

from dashboard.evaluate import inputs as evaluate_inputs
from dashboard.evaluate import results as evaluate_results
from dashboard.evaluate import validity as evaluate_validity
from dashboard.widgets import figures

st.title("Evaluate explanation methods")
st.caption("Run every method on many cases and compare how faithful (deletion / insertion), "
           "complete and plausible (agreement with expected features) their maps are.")
figures.warm_up_charts()
request = evaluate_inputs.request_panel()
evaluate_results.run_section(request)
evaluate_results.results_section(request)
evaluate_validity.validity_section()
