"""One explanation run, as every page and Evaluate do it (no Streamlit here).

IG (:func:`run_ig`): an optional labelled preview handed to a hook (never cached), the exact
run (cached), the step ladder (the same run at fewer steps, each cached), and the exact result
carrying the map's convergence estimate against the nearest coarser run of the ladder.

IG2 (:func:`run_ig2`): an optional labelled preview on a quarter of the references handed to a
hook (never cached), the exact run with its half-steps companion paths (cached), the preview's
summary against the exact map and the trust summary (convergence and path reach).

A caller describes *what* to compute in a frozen request (:class:`IgRequest`,
:class:`Ig2Request`; they decide the result and the cache keys) and passes *how* to follow it
separately: the result cache, a progress callback receiving :class:`IgProgress` /
:class:`Ig2Progress` events (each page turns them into its own words) and the preview hook.
"""

from attribution_core.explain_flow.ig2_run import Ig2Outcome, Ig2Progress, Ig2Request, run_ig2
from attribution_core.explain_flow.ig_run import (
    IgOutcome,
    IgProgress,
    IgRequest,
    LadderRun,
    run_ig,
)

__all__ = [
    "Ig2Outcome",
    "Ig2Progress",
    "Ig2Request",
    "IgOutcome",
    "IgProgress",
    "IgRequest",
    "LadderRun",
    "run_ig",
    "run_ig2",
]
