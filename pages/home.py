"""Home page (placeholder until the dashboard issue lands)."""

import streamlit as st

st.title("Why did the model say that?")
st.write(
    "Integrated Gradients (IG) and IG2 explanations with their completeness error. "
    "The image, text and tabular pages arrive with the dashboard issues."
)
