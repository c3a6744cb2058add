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
import torch

from attribution_core.cost import CostEstimate
from dashboard.widgets import keys, run_gate

MAX_RUNS = 8
PageProgress = Callable[[str, float], None]


def session_runs(runs_key: str) -> OrderedDict[str, Any]:
    """This session's stored runs for one page (oldest first)."""
    return st.session_state.setdefault(runs_key, OrderedDict())


def explain_once(runs_key: str, current_key: str, key: str,
                 compute: Callable[[PageProgress], Any], *, device: torch.device | None = None,
                 estimate: CostEstimate | None = None,
                 what_to_reduce: str = "lower the steps or references") -> bool:
    """Show the stored run for ``key``, or compute it with a progress bar and store it.

    With a ``device`` the run waits for its turn in that device's fair queue (place shown,
    Cancel offered); with an ``estimate`` over the per-click budget it is refused with a message.
    Returns True when a new run was computed and stored (False when it was reused or failed).
    """
    runs = session_runs(runs_key)
    if key in runs:  # the same inputs again: show the stored result, no model call at all
        runs.move_to_end(key)
        st.session_state[current_key] = key
        return False
    if run_gate.refused(estimate, what_to_reduce):
        return False
    slot = st.empty()
    with slot.container():
        bar_column, cancel_column = st.columns([6, 1], vertical_alignment="center")
        bar = bar_column.progress(0.0, text="Starting…")
        # Any click stops this script at its next st call (the bar's next update): the run ends
        # there and gives its queue turn back; the button needs no handler.
        cancel_column.button("Cancel", key=keys.cancel_running(runs_key))

    def progress(text: str, fraction: float) -> None:
        bar.progress(float(np.clip(fraction, 0.0, 1.0)), text=text)

    try:
        if device is None:
            run = compute(progress)
        else:
            run = run_gate.run_queued(device, runs_key,
                                      lambda job: compute(job.progress(progress)),
                                      cancel_button=False)
    except run_gate.JobCancelled:
        slot.empty()
        st.info("The run was cancelled; the previous result stays on screen.")
        return False
    except Exception as error:  # show why, keep the previous result on screen
        slot.empty()
        st.error(f"The explanation could not be computed: {error}")
        return False
    slot.empty()
    runs[key] = run
    while len(runs) > MAX_RUNS:
        runs.popitem(last=False)
    st.session_state[current_key] = key
    return True
