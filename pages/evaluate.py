"""Evaluate page: layout only (logic in dashboard/components/evaluate_* and attribution_core)."""

import streamlit as st

from dashboard.components import evaluate_inputs, evaluate_results, evaluate_validity

st.title("Evaluate explanation methods")
st.caption("Run every method on many cases and compare how faithful (deletion / insertion), "
           "complete and plausible (agreement with expected features) their maps are.")
request = evaluate_inputs.request_panel()
evaluate_results.run_section(request)
evaluate_results.results_section(request)
evaluate_validity.validity_section()
