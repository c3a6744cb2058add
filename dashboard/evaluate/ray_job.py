"""Evaluate page: large runs as Ray jobs (when ``RAY_ADDRESS`` is set), with progress and Stop.

A run of at least ``IG_DASHBOARD_RAY_MIN_CASES`` cases is submitted to the cluster instead of
being computed in this (shared) server process; the job is remembered in the session, so every
script run polls it: a box with a progress bar and Stop while it runs, the merged report read
into the session's results when it succeeds, a one-line error when it fails, and Continue
(resubmitted with ``--resume``: finished shards are kept) after a Stop. Any click during the
wait reruns the script, which polls again; only Stop stops the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import streamlit as st

from attribution_core.evaluation import ray_jobs
from attribution_core.evaluation.types import EvaluationSettings
from dashboard.evaluate import keys
from dashboard.evaluate.inputs import BUNDLED, EvaluationRequest
from dashboard.evaluate.state import EvaluationStore

WAIT_ENV = "IG_DASHBOARD_RAY_WAIT_SECONDS"


@dataclass(frozen=True)
class PageJob:
    """This session's job: what it computes and where its result is stored."""

    handle: ray_jobs.JobHandle
    result_key: str
    model_name: str
    settings: EvaluationSettings
    n_cases: int


def wanted(request: EvaluationRequest) -> bool:
    """A large run of a built-in or plugin model. A model of this session (an upload) exists
    only in this process, so a job elsewhere could not load it: it always runs here."""
    config = ray_jobs.JobConfig.from_environment()
    return config is not None and len(request.cases) >= config.min_cases and \
        not request.own_model


def _job_input(request: EvaluationRequest) -> ray_jobs.JobInput:
    """The page's source of cases, read from this session's widgets (bundled count, upload)."""
    state = st.session_state
    spec = request.model.spec
    baseline = state.get(keys.baseline(spec.name))
    if state.get(keys.SOURCE, BUNDLED) == BUNDLED:
        return ray_jobs.JobInput(n_cases=len(request.cases), baseline=baseline)
    upload = state.get(keys.upload(spec.modality))
    return ray_jobs.JobInput(n_cases=len(request.cases), baseline=baseline,
                             upload_name=getattr(upload, "name", "cases"),
                             upload=upload.getvalue() if upload is not None else None)


def start(request: EvaluationRequest) -> None:
    """Submit the request as a job; the next polls show it."""
    config = ray_jobs.JobConfig.from_environment()
    assert config is not None, "start() is only called when wanted() said yes"
    try:
        client = ray_jobs.make_client(config.address)
        handle = ray_jobs.submit(client, config, request.model.spec.name, request.settings,
                                 _job_input(request))
    except Exception as error:  # the cluster is unreachable or refuses: one line, nothing lost
        st.error(f"The evaluation could not be submitted to Ray ({type(error).__name__}): "
                 f"{str(error).splitlines()[0] if str(error) else 'no detail'}")
        return
    st.session_state[keys.RAY_JOB] = PageJob(handle, request.key, request.model.spec.name,
                                        request.settings, len(request.cases))


def track(store: EvaluationStore) -> bool:
    """Poll this session's job; True while it runs (the caller then draws no Run button)."""
    job: PageJob | None = st.session_state.get(keys.RAY_JOB)
    config = ray_jobs.JobConfig.from_environment()
    if job is None or config is None:
        return False
    client = ray_jobs.make_client(config.address)
    if st.session_state.get(keys.RAY_STOP):
        ray_jobs.stop(client, job.handle)
    if st.session_state.get(keys.RAY_CONTINUE):
        job = PageJob(ray_jobs.resubmit(client, job.handle), job.result_key, job.model_name,
                      job.settings, job.n_cases)
        st.session_state[keys.RAY_JOB] = job
    progress = ray_jobs.poll(client, job.handle)
    if not progress.finished:
        progress = _wait(client, job, config.poll_seconds, _wait_window())
    if not progress.finished:
        st.button("Refresh", key=keys.RAY_REFRESH, icon=":material/refresh:",
                  help="The job is still running on the cluster; check on it again.")
        return True
    if progress.status == "SUCCEEDED":
        _finish(store, job)
        return False
    if progress.status == "STOPPED":
        st.warning(f"The Ray job was stopped after {progress.done} of {job.n_cases} cases.",
                   icon=":material/pause_circle:")
        st.button("Continue on Ray", key=keys.RAY_CONTINUE,
                  help="Resubmit the job; the shards it finished are kept.")
        return False
    st.error("The Ray job failed: " + (progress.line or "see the job's log on the cluster "
                                       f"({job.handle.submission_id})."))
    del st.session_state[keys.RAY_JOB]
    return False


def _wait_window() -> float:
    """How long one script run follows the job before it hands the page back (seconds)."""
    import os

    return max(0.0, float(os.environ.get(WAIT_ENV, "600")))


def _wait(client: object, job: PageJob, poll_seconds: float, window: float
          ) -> ray_jobs.JobProgress:
    slot = st.empty()  # emptied when the job ends, so its Stop button goes with it
    with slot.container(border=True):
        stop_column, bar_column = st.columns([1, 6], vertical_alignment="center")
        # A click reruns the script; the next run sees keys.RAY_STOP and stops the job.
        stop_column.button("Stop", key=keys.RAY_STOP, icon=":material/stop_circle:")
        bar = bar_column.progress(0.0, text=f"Ray job {job.handle.submission_id}: submitted")
        deadline = time.monotonic() + window
        while True:
            progress = ray_jobs.poll(client, job.handle)
            total = progress.total or job.n_cases
            bar.progress(min(progress.done / max(total, 1), 1.0),
                         text=f"Ray job: {progress.status.lower()}, "
                              + (progress.line or f"0/{total} cases"))
            if progress.finished:
                slot.empty()
                return progress
            if time.monotonic() >= deadline:
                return progress
            time.sleep(poll_seconds)


def _finish(store: EvaluationStore, job: PageJob) -> None:
    try:
        result = ray_jobs.load_result(job.handle)
    except (OSError, ValueError) as error:
        st.error(f"The Ray job finished but its report cannot be read: {error}")
    else:
        store.begin(job.result_key, job.model_name, (), job.settings)
        store.finish(result)
    del st.session_state[keys.RAY_JOB]
