"""Shared by every page: catalog, resources, session state, the run gate, figures."""
