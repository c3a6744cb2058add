"""Who may use the dashboard: nobody is asked to log in unless the operator configures it.

Access control is built on what Streamlit offers, no home-made cryptography: when
``.streamlit/secrets.toml`` has an ``[auth]`` section (OpenID Connect: ``redirect_uri``,
``cookie_secret``, ``client_id``, ``client_secret``, ``server_metadata_url``; Streamlit needs the
``Authlib`` package for it), every page asks for ``st.login`` first. Without it the dashboard is
open to whoever reaches it, which is why it listens on 127.0.0.1 by default (README, "Sharing the
dashboard": a reverse proxy with authentication is the other way).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from typing import Any

import streamlit as st

from dashboard.widgets import keys

LOG = logging.getLogger("dashboard.access")


def _auth_settings() -> Mapping[str, Any] | None:
    try:
        settings = st.secrets.get("auth")
    except Exception:  # no secrets.toml at all: login is not configured
        return None
    return settings if isinstance(settings, Mapping) and settings else None


def _provider(settings: Mapping[str, Any]) -> str | None:
    """None for a single provider configured in [auth] itself, else the first [auth.<name>]."""
    if "client_id" in settings:
        return None
    return next((name for name, value in settings.items() if isinstance(value, Mapping)), None)


def require_login() -> None:
    """When login is configured, stop here (showing only a log-in button) for a visitor who has
    not logged in; a logged-in user gets a log-out button in the sidebar."""
    settings = _auth_settings()
    if settings is None:
        return
    if getattr(st.user, "is_logged_in", False):  # absent where no user info exists (AppTest)
        st.sidebar.button("Log out", key=keys.ACCESS_LOGOUT, on_click=st.logout)
        return
    st.title("Why did the model say that?")
    if importlib.util.find_spec("authlib") is None:  # fail closed: configured but unusable
        LOG.error("[auth] is configured in secrets.toml but Authlib is not installed "
                  '(pip install "streamlit[auth]"); nobody can log in.')
        st.error("Logging in is not available on this server yet; the operator has been told.")
        st.stop()
    st.info("This dashboard is shared: log in to use it.")
    provider = _provider(settings)
    st.button("Log in", key=keys.ACCESS_LOGIN, type="primary",
              on_click=st.login, args=(provider,) if provider else ())
    st.stop()
