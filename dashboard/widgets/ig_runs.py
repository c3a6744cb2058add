"""What the pages share around the library's run flow (``attribution_core.explain_flow``):
the progress events in each page's own words, the convergence curve's points, and the step
ladders the pages ask for. No Streamlit here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from attribution_core.cost import curve_ladder
from attribution_core.explain_flow import IgOutcome
from attribution_core.results import Attribution
from dashboard.widgets.figures import CurvePoint

Event = TypeVar("Event")
PhaseProgress = Callable[[str, float], None]


def reporter(report: PhaseProgress, words: Callable[[Event], tuple[str, float] | None]
             ) -> Callable[[Event], None]:
    """A flow progress callback that shows ``words(event)`` (a message and a fraction) on the
    page's bar; events a page does not announce (None) change nothing."""
    def on_event(event: Event) -> None:
        shown = words(event)
        if shown is not None:
            report(*shown)

    return on_event


def ladder(n_steps: int | Literal["auto"], divisors: Sequence[int], wanted: bool, *,
           distinct: bool) -> tuple[int, ...]:
    """The convergence curve's smaller step counts, ascending (none when not ``wanted`` or for
    auto); ``distinct=False`` keeps repeats, as the text and tabular pages run them (and as
    ``attribution_core.cost`` prices them)."""
    if not wanted:
        return ()
    return tuple(curve_ladder(n_steps, divisors, distinct=distinct))


def curve_points(outcome: IgOutcome, *, ladder_x: Literal["steps", "evaluations"],
                 ladder_source: str) -> tuple[CurvePoint, ...]:
    """The run's own points (its adaptive refinement history, or itself) and the ladder's,
    sorted by cost; the ladder's x is its step count or its gradient evaluations."""
    points = own_curve(outcome.result)
    for run in outcome.ladder:
        x = run.steps if ladder_x == "steps" else run.n_evaluations
        points.append(CurvePoint(x, run.relative_delta[0], ladder_source))
    return tuple(sorted(points, key=lambda p: p.evaluations))


def own_curve(result: Attribution) -> list[CurvePoint]:
    """An adaptive run's refinement history, or the run's own single point."""
    evaluations, relative = result.convergence_evaluations, result.convergence_relative_delta
    if evaluations is None or relative is None:
        return [CurvePoint(int(result.n_evaluations[0]), float(result.relative_delta[0]),
                           "this run")]
    source = "adaptive refinement" if result.n_steps == "auto" else "this run"
    return [CurvePoint(int(e), float(r), source)
            for e, r in zip(evaluations[:, 0].tolist(), relative[:, 0].tolist(), strict=True)]
