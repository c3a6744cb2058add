"""The dashboard: Streamlit entry (app.py), one package per page, shared widgets."""
