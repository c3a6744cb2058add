"""Image page: layout only (logic in dashboard/image and attribution_core)."""

import streamlit as st

from dashboard.image import inputs as image_inputs
from dashboard.image import results as image_results

st.title("Explain an image classifier")
model = image_inputs.current_model()
if model is not None:
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("Input")
        source = image_inputs.input_panel(model)
    if source is not None:
        with right:
            st.subheader("Settings")
            settings, uploaded_baseline = image_inputs.settings_panel(model, source)
            image_results.explain_section(model, source, settings, uploaded_baseline)
    image_results.results_section(model)
