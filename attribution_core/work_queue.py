"""A fair work queue per device: heavy runs take turns, round-robin over sessions.

A shared server runs many sessions' explanations on one device. Every heavy run asks the queue
of its device for a turn (:meth:`WorkQueue.submit`), waits until it is granted
(:meth:`Job.wait_for_turn`), runs in its own thread, and gives the turn back
(:meth:`Job.finish`). A GPU runs one job at a time; the CPU a small configurable number
(``IG_DASHBOARD_CPU_WORKERS``, default 2), so a long run cannot hold every session up.

Fairness (round-robin over sessions): each job gets a *round* when it is submitted, one more
than its session's previous job, but never below the round being served now (an idle session
saves up no credit); turns go by round, then by arrival. So a session's second job waits behind
every other session's first job, and a session that keeps clicking cannot starve the others.

Cancelling a queued job removes it; cancelling a running job makes its next progress callback
(:meth:`Job.progress` / :meth:`Job.check`) raise :class:`JobCancelled`. The run itself happens
in the caller's thread, so it keeps the caller's context (a Streamlit session's, for instance).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch

from attribution_core.validation import check_positive_int

CPU_WORKERS_VARIABLE = "IG_DASHBOARD_CPU_WORKERS"
DEFAULT_CPU_WORKERS = 2
MAX_CPU_WORKERS = 8
POLL_SECONDS = 0.25

JobState = Literal["queued", "running", "finished", "cancelled"]
T = TypeVar("T")


class JobCancelled(RuntimeError):
    """Raised inside a cancelled job at its next progress callback."""


@dataclass(frozen=True)
class QueueEntry:
    """One job as a queue snapshot shows it."""

    job_id: int
    session: str
    label: str
    state: JobState
    position: int  # 0 while running, 1.. while queued (1 = next)


class Job:
    """One request for a turn on a device; created by :meth:`WorkQueue.submit`."""

    def __init__(self, queue: WorkQueue, job_id: int, session: str, label: str,
                 round_number: int) -> None:
        self.queue = queue
        self.job_id = job_id
        self.round_number = round_number
        self.session = session
        self.label = label
        self.state: JobState = "queued"
        self._turn = threading.Event()
        self._cancel_requested = threading.Event()

    @property
    def running(self) -> bool:
        return self.state == "running"

    def position(self) -> int:
        """0 while running, 1.. while queued (1 = next), -1 once finished or cancelled."""
        return self.queue.position_of(self)

    def wait_for_turn(self, timeout: float | None = None) -> bool:
        """True once the job may run; False after ``timeout`` seconds of waiting. Raises
        :class:`JobCancelled` when the job was cancelled while it waited."""
        granted = self._turn.wait(timeout)
        if self.state == "cancelled":
            raise JobCancelled(f"{self.label} was cancelled.")
        return granted

    def cancel(self) -> None:
        """Remove a queued job; ask a running one to stop at its next progress callback."""
        self._cancel_requested.set()
        self.queue.cancel(self)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested.is_set()

    def check(self) -> None:
        """Raise :class:`JobCancelled` if a cancel was requested (a run's checkpoints)."""
        if self._cancel_requested.is_set():
            raise JobCancelled(f"{self.label} was cancelled.")

    def progress(self, report: Callable[..., None] | None = None) -> Callable[..., None]:
        """``report`` wrapped so that every call first checks for a cancel request."""

        def checked(*args: object) -> None:
            self.check()
            if report is not None:
                report(*args)

        return checked

    def finish(self) -> None:
        """Give the turn back (running), or leave the queue (queued); idempotent."""
        self.queue.release(self)


class WorkQueue:
    """Round-robin-over-sessions queue of one device with ``workers`` concurrent turns."""

    def __init__(self, key: str, workers: int = 1) -> None:
        check_positive_int("workers", workers)
        self.key = key
        self.workers = workers
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every queue change
        self._ids = itertools.count(1)
        self._running: list[Job] = []
        self._queued: list[Job] = []  # arrival order; turns are granted by _order()
        self._round_now = 0  # the round of the job granted last
        self._next_round: dict[str, int] = {}

    # -- submitting and finishing ---------------------------------------------------------------

    def submit(self, session: str, label: str = "run") -> Job:
        """Queue a job for ``session``; it may be granted at once when a worker is free."""
        with self._lock:
            round_number = max(self._next_round.get(session, 0), self._round_now)
            self._next_round[session] = round_number + 1
            job = Job(self, next(self._ids), session, label, round_number)
            self._queued.append(job)
            self._grant()
        return job

    def release(self, job: Job) -> None:
        with self._lock:
            if job in self._running:
                self._running.remove(job)
                job.state = "finished"
            elif job in self._queued:
                self._withdraw(job)
            job._turn.set()  # a waiter wakes up (and sees "cancelled" if it never ran)
            self._grant()

    def cancel(self, job: Job) -> None:
        with self._lock:
            if job in self._queued:
                self._withdraw(job)
                self._grant()

    def _withdraw(self, job: Job) -> None:
        """Take a queued job out; its session's last round is handed back when it was the
        newest, so cancelling and clicking again costs no place. Caller holds the lock."""
        self._queued.remove(job)
        job.state = "cancelled"
        job._turn.set()
        if self._next_round.get(job.session) == job.round_number + 1:
            self._next_round[job.session] = job.round_number

    def run(self, session: str, work: Callable[[Job], T], label: str = "run", *,
            on_wait: Callable[[Job], None] | None = None,
            poll_seconds: float = POLL_SECONDS) -> T:
        """Submit, wait for the turn (calling ``on_wait(job)`` every ``poll_seconds``; it may
        raise to give up), run ``work(job)`` in this thread, and always give the turn back."""
        job = self.submit(session, label)
        try:
            while not job.wait_for_turn(poll_seconds):
                if on_wait is not None:
                    on_wait(job)
            return work(job)
        finally:
            job.finish()

    # -- scheduling -----------------------------------------------------------------------------

    def _order(self) -> list[Job]:
        """Queued jobs in the order they get turns: by round, then by arrival. Caller holds
        the lock."""
        return sorted(self._queued, key=lambda job: (job.round_number, job.job_id))

    def _grant(self) -> None:
        """Start queued jobs while workers are free; every change passes here. Caller holds
        the lock."""
        while len(self._running) < self.workers and self._queued:
            job = self._order()[0]
            self._queued.remove(job)
            self._running.append(job)
            self._round_now = max(self._round_now, job.round_number)
            job.state = "running"
            job._turn.set()
        self._changed.notify_all()

    def wait_until(self, condition: Callable[[tuple[QueueEntry, ...]], bool],
                   timeout: float | None = None) -> bool:
        """Block until ``condition(snapshot)`` holds (checked at every change); False after
        ``timeout`` seconds. For observers (tests, a status page), never for the jobs."""
        with self._changed:
            return self._changed.wait_for(lambda: condition(self._snapshot()), timeout)

    # -- what the pages show ----------------------------------------------------------------------

    def position_of(self, job: Job) -> int:
        with self._lock:
            if job in self._running:
                return 0
            order = self._order()
            return order.index(job) + 1 if job in order else -1

    def snapshot(self) -> tuple[QueueEntry, ...]:
        """Running jobs (position 0), then queued ones in the order they will run."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> tuple[QueueEntry, ...]:
        running = [QueueEntry(j.job_id, j.session, j.label, j.state, 0) for j in self._running]
        queued = [QueueEntry(j.job_id, j.session, j.label, j.state, i + 1)
                  for i, j in enumerate(self._order())]
        return tuple(running + queued)


# -- one queue per device ----------------------------------------------------------------

_QUEUES: dict[str, WorkQueue] = {}
_QUEUES_GUARD = threading.Lock()


def device_key(device: str | torch.device) -> str:
    """One name per physical device: ``cuda`` and ``cuda:0`` (when 0 is current) are the same
    queue, and so are ``cpu`` and ``cpu:0``."""
    resolved = torch.device(device)
    if resolved.type == "cpu":
        return "cpu"
    index = resolved.index
    if index is None:
        index = _current_index(resolved.type)
    return f"{resolved.type}:{index}"


def _current_index(device_type: str) -> int:
    if device_type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.current_device())
    return 0


def cpu_workers() -> int:
    """``IG_DASHBOARD_CPU_WORKERS`` clamped to 1..8, else the default."""
    raw = os.environ.get(CPU_WORKERS_VARIABLE, "").strip()
    try:
        value = int(raw)
    except ValueError:
        return DEFAULT_CPU_WORKERS
    return min(max(value, 1), MAX_CPU_WORKERS)


def queue_for(device: str | torch.device) -> WorkQueue:
    """The process-wide queue of ``device`` (created on first use): an accelerator runs one job
    at a time, the CPU :func:`cpu_workers` jobs."""
    key = device_key(device)
    with _QUEUES_GUARD:
        queue = _QUEUES.get(key)
        if queue is None:
            queue = WorkQueue(key, cpu_workers() if key == "cpu" else 1)
            _QUEUES[key] = queue
        return queue
