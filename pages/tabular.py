"""Tabular page: layout only (logic in dashboard/tabular/ and attribution_core)."""

import streamlit as st

from dashboard.tabular import inputs as tabular_inputs
from dashboard.tabular import results as tabular_results

st.title("Explain a prediction on a table row")
left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Model and row")
    model = tabular_inputs.current_model()
    source = tabular_inputs.input_panel(model) if model is not None else None
with right:
    st.subheader("Settings")
    if model is not None:
        settings = tabular_inputs.settings_panel(model, source)
        tabular_results.explain_section(model, source, settings)
tabular_results.results_section(model)
