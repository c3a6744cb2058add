"""Bounded cost per click through the pages: the estimate before a run, the per-click budget,
and a click that waits for its turn in the device's queue."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from attribution_core import cost
from attribution_core.work_queue import QueueEntry, queue_for
from tests.app.test_evaluate_page import open_page as open_evaluate
from tests.app.test_tabular_page import open_tabular_page
from tests.app.test_text_page import open_text_page

pytestmark = pytest.mark.app
WAIT_SECONDS = 120.0  # a deadlock guard: every wait is released by the queue's own events


def _captions(at: AppTest) -> str:
    return " ".join(str(c.value) for c in at.caption)


def _errors(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.error]


def test_the_image_page_shows_the_cost_before_the_run(
        image_page: Callable[[str], AppTest]) -> None:
    at = image_page("digits_cnn")
    at.radio(key="img_method").set_value("both").run()
    shown = _captions(at)
    assert "A click costs about" in shown and "gradient evaluations" in shown, \
        f"the estimate is on the page before any run: {shown!r}"
    assert "Limit per click" in shown, f"the limit is stated: {shown!r}"


def test_a_click_over_the_budget_is_refused_and_the_result_stays(
        image_page: Callable[[str], AppTest], monkeypatch: pytest.MonkeyPatch) -> None:
    at = image_page("digits_cnn")
    at.radio(key="img_method").set_value("IG").run()
    at.button(key="img_explain").click().run()
    assert not at.exception and not at.error, f"the first run works: {_errors(at)}"
    assert at.session_state["img_current"] is not None, "a result is on screen"
    first = at.session_state["img_current"]
    monkeypatch.setenv(cost.BUDGET_VARIABLE, "40")
    at.slider(key="img_steps").set_value(200).run()
    assert any("over this server's limit" in str(w.value) for w in at.warning), \
        "the page warns before the click that this run is over the limit"
    at.button(key="img_explain").click().run()
    assert not at.exception, f"a refusal is not an exception: {at.exception}"
    refused = [e for e in _errors(at) if "limit of 40 per click" in e]
    assert len(refused) == 1 and cost.BUDGET_VARIABLE in refused[0], \
        f"one clear refusal naming the limit and its variable: {_errors(at)}"
    assert at.session_state["img_current"] == first, "the earlier result stays on screen"


def test_a_click_waits_for_its_turn_behind_another_sessions_jobs(
        image_page: Callable[[str], AppTest]) -> None:
    at = image_page("digits_cnn")
    queue = queue_for("cpu")
    blockers = [queue.submit("another-session", f"blocker-{i}") for i in range(queue.workers)]
    assert all(b.running for b in blockers), "another session holds every CPU worker"
    seen: list[tuple[QueueEntry, ...]] = []

    def page_is_waiting(snapshot: tuple[QueueEntry, ...]) -> bool:
        return any(e.session != "another-session" and e.state == "queued" for e in snapshot)

    def other_session() -> None:
        try:
            if queue.wait_until(page_is_waiting, WAIT_SECONDS):
                seen.append(queue.snapshot())
        finally:
            for blocker in blockers:
                blocker.finish()

    thread = threading.Thread(target=other_session)
    thread.start()
    at.button(key="img_explain").click().run(timeout=WAIT_SECONDS)
    thread.join(WAIT_SECONDS)
    assert seen, "the page's job was queued behind the other session's"
    waiting = [e for e in seen[0] if e.session != "another-session"]
    assert [e.position for e in waiting] == [1], f"the page was first in line: {seen[0]}"
    assert not at.exception and not at.error, f"the run finished after its wait: {_errors(at)}"
    assert at.session_state["img_current"] is not None, "its result is on screen"
    assert queue.snapshot() == (), f"every turn was given back: {queue.snapshot()}"


def test_text_and_tabular_pages_show_their_cost_and_run_through_the_queue() -> None:
    pages = ((open_text_page("cue_transformer"), "txt_explain", "txt_current"),
             (open_tabular_page("wine_mlp"), "tab_explain", "tab_current"))
    for at, button, current in pages:
        assert "A click costs about" in _captions(at), \
            f"{button}: the page shows the estimate: {_captions(at)!r}"
        at.button(key=button).click().run()
        assert not at.exception and not at.error, f"{button} runs: {_errors(at)}"
        assert at.session_state[current] is not None, f"{button}: a result is on screen"
    assert queue_for("cpu").snapshot() == (), "both runs gave their turn back"


def test_the_evaluate_page_refuses_a_run_over_the_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_evaluate("tabular", "breast_cancer_mlp", n_cases=5)
    shown = _captions(at)
    assert "A click costs about" in shown and "forward-only rows" in shown, \
        f"Evaluate shows gradient and forward rows before the run: {shown!r}"
    monkeypatch.setenv(cost.BUDGET_VARIABLE, "100")
    at.button(key="eval_run").click().run()
    assert not at.exception, f"a refusal is not an exception: {at.exception}"
    assert any("limit of 100 per click" in e for e in _errors(at)), \
        f"the refusal says why: {_errors(at)}"
    assert "eval_results" not in at.session_state or not at.session_state["eval_results"], \
        "nothing was computed"
