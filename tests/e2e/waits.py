"""Waiting for the dashboard's state, never for time: a loaded 2-core machine may take many
seconds for what a quiet one does at once, so every wait here is a condition with a generous
limit, and no test sleeps a fixed time.

Streamlit marks its root element with ``data-test-script-state`` ("running" while a script
run is going, "notRunning" once it is done). :func:`rerun` counts the runs that start after an
action (a MutationObserver on that attribute) and waits until one has started and the script is
idle again; :func:`wait_idle` waits for idle alone; :func:`wait_count` waits until a selector
matches at least a number of elements (charts drawn, tables rendered).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

UI_TIMEOUT_MS = 120_000  # a page, a widget, a chart renderer loading
RESULT_TIMEOUT_MS = 420_000  # an explanation or an evaluation under load

_APP = "document.querySelector('[data-testid=\"stApp\"]')"
_IDLE = (f"{_APP} && {_APP}.getAttribute('data-test-script-state') === 'notRunning' && "
         "!document.querySelector('[data-testid=\"stStatusWidget\"]')")
_WATCH_RUNS = f"""() => {{
  const app = {_APP};
  if (!app || window.__watchedApp === app) return;
  window.__watchedApp = app;
  window.__runs = window.__runs || 0;
  // Records, not the attribute's value now: a fast run goes running -> notRunning before the
  // observer is called, and only the records still show that it ran.
  new MutationObserver((records) => {{
    const ran = records.some((r) => r.oldValue === 'running' ||
                                    app.getAttribute('data-test-script-state') === 'running');
    if (ran) window.__runs += 1;
  }}).observe(app, {{attributes: true, attributeOldValue: true,
                     attributeFilter: ['data-test-script-state']}});
}}"""


def wait_idle(page: Any, timeout: int = RESULT_TIMEOUT_MS) -> None:
    """Until no script run is going (and the 'Running' status widget is gone)."""
    page.wait_for_function(f"() => {_IDLE}", timeout=timeout)


def rerun(page: Any, action: Callable[[], object], timeout: int = RESULT_TIMEOUT_MS) -> None:
    """Do ``action`` (a click, a key press) and wait for the script run it starts to end."""
    page.wait_for_function(f"() => !!{_APP}", timeout=UI_TIMEOUT_MS)
    page.evaluate(_WATCH_RUNS)
    before = page.evaluate("() => window.__runs")
    action()
    page.wait_for_function(f"() => window.__runs > {before} && {_IDLE}", timeout=timeout)


def choose(page: Any, group: str, option: str) -> None:
    """Pick ``option`` of the radio group labelled ``group`` (a rerun only when it changes).

    The radio is checked in the browser before the server has the choice, and a fast run may
    leave no trace to count: a test that next reads or fills what the choice draws waits for
    that content itself (an element only the new choice draws)."""
    radio = page.get_by_test_id("stRadio").filter(has_text=group)
    radio.first.wait_for(timeout=UI_TIMEOUT_MS)
    button = radio.get_by_role("radio", name=option, exact=True).first
    if button.is_checked():
        return
    radio.get_by_text(option, exact=True).first.click()
    # The choice is visible in the radio itself: wait for it and for the run it starts to end,
    # not for a count of runs, which a run faster than one frame can slip past.
    page.wait_for_function(
        "(el) => el.checked", arg=button.element_handle(), timeout=UI_TIMEOUT_MS)
    page.wait_for_timeout(50)  # let the widget's message reach the server before idling
    wait_idle(page)


def pick(page: Any, selectbox: Any, option: str) -> None:
    """Choose ``option`` in ``selectbox`` (a rerun only when the choice changes)."""
    selectbox.wait_for(timeout=UI_TIMEOUT_MS)
    selectbox.click()
    choice = page.get_by_role("option", name=option).first
    choice.wait_for(timeout=UI_TIMEOUT_MS)
    if choice.get_attribute("aria-selected") == "true":
        page.keyboard.press("Escape")
        return
    rerun(page, choice.click)


def wait_count(page: Any, selector: str, at_least: int, timeout: int = UI_TIMEOUT_MS) -> int:
    """Until ``selector`` matches at least ``at_least`` elements; returns the count."""
    page.wait_for_function(
        f"() => document.querySelectorAll({selector!r}).length >= {at_least}", timeout=timeout)
    return int(page.evaluate(f"() => document.querySelectorAll({selector!r}).length"))


def wait_drawn(page: Any, at_least: int, timeout: int = UI_TIMEOUT_MS) -> int:
    """Until at least ``at_least`` Plotly charts have drawn their SVG; returns how many have."""
    drawn = ("() => [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')]"
             ".filter(chart => chart.querySelector('.main-svg')).length")
    page.wait_for_function(f"() => ({drawn})() >= {at_least}", timeout=timeout)
    return int(page.evaluate(drawn))


CHARTS = '[data-testid="stPlotlyChart"]'
TABLES = '[data-testid="stDataFrame"]'
