"""The fair work queue: round-robin over sessions, cancellation, one queue per device.

Every ordering is forced with events (no sleeps): a test decides when each job may start or end.
"""

from __future__ import annotations

import threading

import pytest
import torch

from attribution_core import work_queue
from attribution_core.work_queue import JobCancelled, WorkQueue, device_key, queue_for

JOIN_SECONDS = 30.0  # a deadlock guard only: every wait below is released by an event


def _sessions_in_order(queue: WorkQueue) -> list[str]:
    return [f"{e.session}{e.job_id}" for e in queue.snapshot() if e.state == "queued"]


def test_a_sessions_second_job_waits_behind_other_sessions_first_jobs() -> None:
    queue = WorkQueue("test", workers=1)
    a1 = queue.submit("A")
    a2, a3 = queue.submit("A"), queue.submit("A")
    b1 = queue.submit("B")
    c1 = queue.submit("C")
    b2 = queue.submit("B")
    assert a1.running, "the first job on an idle queue runs at once"
    order = [j.session + str(j.job_id) for j in (b1, c1, a2, b2, a3)]
    assert _sessions_in_order(queue) == order, (
        f"round 0 (B, C) before A's second job, then round by round: {_sessions_in_order(queue)}")
    assert [b1.position(), c1.position(), a2.position(), b2.position(), a3.position()] == \
        [1, 2, 3, 4, 5], "positions follow the fair order"
    assert a1.position() == 0, "a running job's position is 0"


def test_turns_are_granted_in_fair_order_when_jobs_finish() -> None:
    queue = WorkQueue("test", workers=1)
    jobs = {name: queue.submit(name[0], name) for name in ("A1", "A2", "A3", "B1", "C1")}
    ran: list[str] = []
    while any(job.state != "finished" for job in jobs.values()):
        running = [name for name, job in jobs.items() if job.running]
        assert len(running) == 1, f"one worker runs exactly one job at a time, got {running}"
        ran.append(running[0])
        jobs[running[0]].finish()
    assert ran == ["A1", "B1", "C1", "A2", "A3"], f"round-robin over sessions, got {ran}"


def test_threads_run_in_fair_order_and_every_turn_is_given_back() -> None:
    queue = WorkQueue("test", workers=1)
    blocker = queue.submit("A", "blocker")
    ran: list[str] = []
    jobs = [queue.submit(session, f"{session}-job") for session in ("A", "A", "B", "C")]

    def worker(job: work_queue.Job) -> None:
        try:
            assert job.wait_for_turn(JOIN_SECONDS), f"{job.label} was granted a turn"
            ran.append(f"{job.session}{job.job_id}")
        finally:
            job.finish()

    threads = [threading.Thread(target=worker, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    assert [j.position() for j in jobs] == [3, 4, 1, 2], "all four wait behind the blocker"
    blocker.finish()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    expected = [f"{j.session}{j.job_id}" for j in (jobs[2], jobs[3], jobs[0], jobs[1])]
    assert ran == expected, f"B and C ran before A's queued jobs: {ran} vs {expected}"
    assert queue.snapshot() == (), f"every turn was given back: {queue.snapshot()}"


def test_cancelling_a_queued_job_removes_it_and_wakes_its_waiter() -> None:
    queue = WorkQueue("test", workers=1)
    running = queue.submit("A")
    waiting = queue.submit("B")
    behind = queue.submit("C")
    waiting.cancel()
    assert waiting.state == "cancelled" and waiting.position() == -1, "the job left the queue"
    assert behind.position() == 1, "the job behind moved up one place"
    with pytest.raises(JobCancelled):
        waiting.wait_for_turn(JOIN_SECONDS)
    running.finish()
    assert behind.running, "the next turn goes to the job behind, not the cancelled one"


def test_cancelling_a_running_job_stops_it_at_its_next_progress_call() -> None:
    queue = WorkQueue("test", workers=1)
    entered, proceed = threading.Event(), threading.Event()
    calls: list[float] = []
    outcome: list[BaseException | str] = []

    def work(job: work_queue.Job) -> str:
        report = job.progress(lambda fraction: calls.append(fraction))
        report(0.1)
        entered.set()
        proceed.wait(JOIN_SECONDS)
        report(0.5)  # the cancel arrived before this call: it raises
        return "finished"

    def session() -> None:
        try:
            outcome.append(queue.run("A", work, "long"))
        except JobCancelled as error:
            outcome.append(error)

    thread = threading.Thread(target=session)
    thread.start()
    assert entered.wait(JOIN_SECONDS), "the job started"
    job = next(j for j in queue._running if j.label == "long")
    nxt = queue.submit("B", "next")
    job.cancel()
    proceed.set()
    thread.join(JOIN_SECONDS)
    assert len(outcome) == 1 and isinstance(outcome[0], JobCancelled), \
        f"the run ended with JobCancelled, got {outcome}"
    assert calls == [0.1], f"the callback after the cancel never reached the page: {calls}"
    assert nxt.running, "the cancelled job gave its turn to the next one"


def test_the_cpu_runs_its_configured_number_of_jobs_at_once() -> None:
    queue = WorkQueue("cpu-test", workers=2)
    first, second, third = queue.submit("A"), queue.submit("B"), queue.submit("C")
    assert first.running and second.running, "two workers run two jobs"
    assert third.position() == 1, "the third waits first in line"
    second.finish()
    assert third.running, "a freed worker takes the next job"


def test_on_wait_may_give_up_and_the_queue_forgets_the_job() -> None:
    queue = WorkQueue("test", workers=1)
    holder = queue.submit("A")
    places: list[int] = []

    class GiveUp(Exception):
        pass

    def on_wait(job: work_queue.Job) -> None:
        places.append(job.position())
        raise GiveUp

    with pytest.raises(GiveUp):
        queue.run("B", lambda job: "never", "b", on_wait=on_wait, poll_seconds=0.0)
    assert places == [1], f"the waiter saw its place once before giving up: {places}"
    assert [e.job_id for e in queue.snapshot()] == [holder.job_id], \
        "only the holder is left in the queue"


def test_device_keys_resolve_one_name_per_device() -> None:
    # No test changes the current CUDA device, so "cuda" means cuda:0 with or without a GPU.
    assert device_key("cuda") == device_key("cuda:0") == "cuda:0", \
        "cuda without an index is the current cuda device"
    assert device_key(torch.device("cuda", 0)) == "cuda:0", "torch.device objects resolve too"
    assert device_key("cpu") == device_key("cpu:0") == "cpu", "cpu and cpu:0 are one device"
    assert queue_for("cuda") is queue_for("cuda:0"), "cuda and cuda:0 share one queue"
    assert queue_for("cpu") is queue_for("cpu:0"), "the CPU has one queue"
    assert device_key("cuda:1") != device_key("cuda:0"), "two GPUs have two queues"
    assert queue_for("cuda:1").workers == 1, "a GPU runs one job at a time"


def test_cpu_workers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(work_queue.CPU_WORKERS_VARIABLE, "3")
    assert work_queue.cpu_workers() == 3, "the variable sets the CPU's concurrent jobs"
    monkeypatch.setenv(work_queue.CPU_WORKERS_VARIABLE, "0")
    assert work_queue.cpu_workers() == 1, "at least one worker"
    monkeypatch.setenv(work_queue.CPU_WORKERS_VARIABLE, "lots")
    assert work_queue.cpu_workers() == work_queue.DEFAULT_CPU_WORKERS, "bad values: default"


def test_an_idle_session_saves_up_no_credit() -> None:
    queue = WorkQueue("test", workers=1)
    queue.submit("X").finish()  # X was served once, long ago (round 0)
    first = queue.submit("A")
    queue.submit("A")
    queue.submit("A")
    first.finish()
    next(j for j in queue._running).finish()  # A's second job ran: round 1 is being served
    b1 = queue.submit("B")
    x2 = queue.submit("X")
    assert b1.position() < x2.position(), (
        "X's next job joins the current round behind B instead of jumping ahead on old credit")


def test_cancelling_and_clicking_again_keeps_the_round() -> None:
    queue = WorkQueue("test", workers=1)
    queue.submit("A")
    a2 = queue.submit("A")
    b1 = queue.submit("B")
    b1.cancel()
    b1_again = queue.submit("B")
    assert b1_again.round_number == b1.round_number == 0, "the cancelled round is handed back"
    assert b1_again.position() < a2.position(), "B's new job is still ahead of A's second"
