"""One line for the person, the details for the server log.

``client.showErrorDetails = "none"`` keeps Streamlit's own tracebacks (with server paths) off
the page; this helper is what the pages' run paths show instead when something unexpected
fails: one sentence and a short reference id that is also in the server's log next to the full
traceback, so a report can be matched to its cause without showing strangers our internals.
"""

from __future__ import annotations

import logging
import secrets

import streamlit as st

LOGGER = logging.getLogger("dashboard")


def log_unexpected(error: BaseException, what: str) -> str:
    """Log ``error`` with its traceback under a fresh reference id and return the id."""
    reference = secrets.token_hex(4)
    LOGGER.error("%s failed (reference %s)", what, reference, exc_info=error)
    return reference


def unexpected_message(error: BaseException, what: str) -> str:
    """The one-line message for a failure nobody planned for (logged as a side effect)."""
    reference = log_unexpected(error, what)
    if isinstance(error, MemoryError):
        return (f"{what} needed more memory than the server could give (reference "
                f"{reference}). Try a smaller input, or again later.")
    return (f"{what} failed unexpectedly (reference {reference}); the details are in the "
            "server's log.")


def show_unexpected(error: BaseException, what: str) -> None:
    st.error(unexpected_message(error, what))
