"""One place for the Explain-button plumbing every page shares.

A page's runs live in ``st.session_state`` under its own keys, newest last, keyed by every input
that affects the result; pressing Explain on inputs already explained shows the stored run
without calling the model. A failed run says why and leaves the previous result on screen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

MAX_RUNS = 8
PageProgress = Callable[[str, float], None]


def session_runs(runs_key: str) -> OrderedDict[str, Any]:
    """This session's stored runs for one page (oldest first)."""
    return st.session_state.setdefault(runs_key, OrderedDict())


def explain_once(runs_key: str, current_key: str, key: str,
                 compute: Callable[[PageProgress], Any]) -> bool:
    """Show the stored run for ``key``, or compute it with a progress bar and store it.

    Returns True when a new run was computed and stored (False when it was reused or failed).
    """
    runs = session_runs(runs_key)
    if key in runs:  # the same inputs again: show the stored result, no model call at all
        runs.move_to_end(key)
        st.session_state[current_key] = key
        return False
    bar = st.progress(0.0, text="Starting…")

    def progress(text: str, fraction: float) -> None:
        bar.progress(float(np.clip(fraction, 0.0, 1.0)), text=text)

    try:
        run = compute(progress)
    except Exception as error:  # show why, keep the previous result on screen
        bar.empty()
        st.error(f"The explanation could not be computed: {error}")
        return False
    bar.empty()
    runs[key] = run
    while len(runs) > MAX_RUNS:
        runs.popitem(last=False)
    st.session_state[current_key] = key
    return True
