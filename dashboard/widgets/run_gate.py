"""Bounded cost per click on a shared server: the estimate before a run, the per-click budget,
and a turn in the device's fair work queue (place in the queue, Cancel) around the run.

Every page's heavy run goes through :func:`run_queued`; the computation itself is unchanged and
runs in the session's own script thread once the queue grants it a turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st
import torch
from streamlit.delta_generator import DeltaGenerator
from streamlit.runtime.scriptrunner import get_script_run_ctx

from attribution_core.cost import CostEstimate, budget_message, evaluation_budget
from attribution_core.work_queue import Job, JobCancelled, queue_for
from dashboard.widgets import keys

T = TypeVar("T")
NO_SESSION = "no-session"

__all__ = ["JobCancelled", "refused", "run_queued", "session_id", "show_estimate"]


def session_id() -> str:
    """This browser session's id (the queue's fairness unit)."""
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else NO_SESSION


def show_estimate(estimate: CostEstimate | None) -> None:
    """The caption above a run button: what a click will cost, and the server's limit."""
    if estimate is None:
        return
    budget = evaluation_budget()
    text = f"A click costs {estimate.describe()}."
    if estimate.over_budget(budget):
        st.warning(text + f" That is over this server's limit of {budget:,} per click: "
                   "the run will be refused.", icon=":material/block:")
    else:
        st.caption(text + f" (Limit per click: {budget:,}.)")


def refused(estimate: CostEstimate | None, what_to_reduce: str) -> bool:
    """Show the refusal and return True when ``estimate`` is over the per-click budget."""
    if estimate is None:
        return False
    budget = evaluation_budget()
    if not estimate.over_budget(budget):
        return False
    st.error(budget_message(estimate, budget, what_to_reduce))
    return True


def run_queued(device: torch.device, label: str, work: Callable[[Job], T], *,
               cancel_button: bool = True) -> T:
    """Wait for a turn on ``device`` (showing the place in the queue and a Cancel button), then
    run ``work(job)``; ``job.progress(report)`` wraps a progress callback so that a cancel stops
    the run at its next call.

    Cancel, like any click, makes Streamlit stop this script at its next ``st`` call (the waiting
    note's refresh); the queue entry is then given back in ``finally``, so a left or cancelled
    session never holds a turn.
    """
    queue = queue_for(device)
    slot = st.empty()
    note: list[DeltaGenerator] = []

    def on_wait(job: Job) -> None:
        if not note:  # drawn once: a widget key may appear only once per script run
            with slot.container(border=True):
                note.append(st.empty())
                if cancel_button:  # pages with their own Cancel / Stop button pass False
                    st.button("Cancel", key=keys.queue_cancel(label),
                              help="Leave the queue; nothing is computed.")
        # Redrawn at every poll: an st call is where a click (Cancel) stops this script.
        note[0].info(f"Waiting for the {queue.key} device: place {job.position()} in the "
                     f"queue ({queue.workers} run{'s' if queue.workers > 1 else ''} at a "
                     "time; sessions take turns).", icon=":material/hourglass_top:")

    try:
        return queue.run(session_id(), work, label, on_wait=on_wait)
    finally:
        slot.empty()
