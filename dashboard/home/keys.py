"""Every widget key of the Home page, in one place (see ``dashboard/image/keys.py``)."""

from __future__ import annotations


def example(method: str) -> str:
    """One figure of the explained example."""
    return f"home_example_{method}"
