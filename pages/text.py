"""Text page: layout only (logic in dashboard/text/ and attribution_core)."""

import streamlit as st

from dashboard.text import inputs as text_inputs
from dashboard.text import results as text_results

st.title("Explain a text classifier")
left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Model and text")
    model = text_inputs.current_model()
    source = text_inputs.input_panel(model) if model is not None else None
with right:
    st.subheader("Settings")
    if model is not None:
        settings = text_inputs.settings_panel(model, source)
        text_results.explain_section(model, source, settings)
text_results.results_section(model)
