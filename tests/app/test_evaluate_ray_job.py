"""Evaluate page with ``RAY_ADDRESS`` set: large runs become Ray jobs (progress, Stop, Continue).

The job server is a stand-in (no Ray cluster in the test budget): ``FakeJobClient`` records
what the page submits and, when a job is due to finish, runs the submitted command itself with
``--engine local`` in place of the Ray options, so the page reads a real merged report from
the job folder. What is tested: the threshold, the submitted command and settings file, the
progress bar fed from the job's log, Stop, Continue (``--resume``) and reading the result. Not
tested here: a real job server (``JobSubmissionClient``) and a job running on a cluster.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from attribution_core.evaluation import ray_jobs
from attribution_core.evaluation.cli import main
from tests.app.test_evaluate_page import open_page

pytestmark = pytest.mark.app
RAY_ONLY = {"--engine": 1, "--address": 1, "--workers": 1, "--gpus-per-worker": 1,
            "--resume": 0}


class FakeJobClient:
    """Jobs that report RUNNING with a progress line for ``polls_to_finish`` polls (forever
    when None, until stopped), then run the command locally and report SUCCEEDED."""

    def __init__(self, polls_to_finish: int | None) -> None:
        self.polls_to_finish = polls_to_finish
        self.submitted: list[tuple[str, str]] = []
        self.stopped: list[str] = []
        self.polls: dict[str, int] = {}
        self.status: dict[str, str] = {}

    def submit_job(self, *, entrypoint: str, submission_id: str) -> str:
        self.submitted.append((submission_id, entrypoint))
        self.polls[submission_id] = 0
        self.status[submission_id] = "RUNNING"
        return submission_id

    def get_job_status(self, submission_id: str) -> str:
        self.polls[submission_id] += 1
        due = self.polls_to_finish is not None and self.polls[submission_id] > \
            self.polls_to_finish
        if self.status[submission_id] == "RUNNING" and due:
            self._run_locally(dict(self.submitted)[submission_id])
            self.status[submission_id] = "SUCCEEDED"
        return self.status[submission_id]

    def get_job_logs(self, submission_id: str) -> str:
        return "Evaluating…\nshard 0 done (3 cases, 0.1 s): 3/6 cases, 9.00 cases/s, ETA 1 s\n"

    def stop_job(self, submission_id: str) -> bool:
        self.stopped.append(submission_id)
        self.status[submission_id] = "STOPPED"
        return True

    @staticmethod
    def _run_locally(entrypoint: str) -> None:
        words = shlex.split(entrypoint)[3:]  # after "python -m attribution_core"
        local: list[str] = []
        skip = 0
        for word in words:
            if skip:
                skip -= 1
            elif word in RAY_ONLY:
                skip = RAY_ONLY[word]
            else:
                local.append(word)
        assert main(local) == 0, f"the job's command must run: {local}"


@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    def install(client: FakeJobClient, wait_seconds: float) -> FakeJobClient:
        monkeypatch.setenv(ray_jobs.ADDRESS_ENV, "http://127.0.0.1:8265")
        monkeypatch.setenv(ray_jobs.MIN_CASES_ENV, "5")
        monkeypatch.setenv(ray_jobs.JOB_DIR_ENV, str(tmp_path / "jobs"))
        monkeypatch.setenv(ray_jobs.POLL_ENV, "0.01")
        monkeypatch.setenv("IG_DASHBOARD_RAY_WAIT_SECONDS", str(wait_seconds))
        monkeypatch.setattr(ray_jobs, "make_client", lambda address: client)
        return client

    return install


def _results_caption(at) -> str:  # type: ignore[no-untyped-def]
    return " ".join(c.value for c in at.caption)


def test_a_large_run_is_a_ray_job_whose_report_the_page_shows(fake_cluster) -> None:  # type: ignore[no-untyped-def]
    client = fake_cluster(FakeJobClient(polls_to_finish=3), wait_seconds=60)
    at = open_page("image", "digits_cnn", n_cases=6, methods=("IG", "Saliency"))
    at.button(key="eval_run").click().run()
    assert not at.exception and not at.error, f"the run must not fail: {at.exception} {at.error}"
    assert len(client.submitted) == 1, "six cases (threshold five) must go to Ray as one job"
    entrypoint = client.submitted[0][1]
    words = shlex.split(entrypoint)
    assert words[:4] == ["python", "-m", "attribution_core", "explain"] and \
        "--bundled" in words and words[words.index("--n-cases") + 1] == "6", \
        f"the job runs the batch command line on the bundled cases: {entrypoint}"
    assert words[words.index("--engine") + 1] == "ray" and "--address" in words, \
        f"on the cluster's Ray: {entrypoint}"
    settings = json.loads(Path(words[words.index("--settings") + 1]).read_text())
    assert settings["methods"] == ["IG", "Saliency"] and settings["ig_steps"] == 8, \
        f"the page's settings travel with the job: {settings}"
    assert "6 cases" in _results_caption(at), \
        f"the merged report is shown: {_results_caption(at)[:300]}"
    assert all(b.key != "eval_stop" and b.key != "eval_ray_stop" for b in at.button), \
        "no Stop button after the job finished"


def test_stop_then_continue_resubmits_with_resume(fake_cluster) -> None:  # type: ignore[no-untyped-def]
    client = fake_cluster(FakeJobClient(polls_to_finish=None), wait_seconds=0.2)
    at = open_page("image", "digits_cnn", n_cases=6, methods=("IG", "Saliency"))
    at.button(key="eval_run").click().run()
    assert not at.exception, f"submitting raised: {at.exception}"
    assert any(b.key == "eval_ray_stop" for b in at.button), "a running job shows Stop"
    bars = [p.proto.text for p in at.get("progress")]
    assert any("3/6 cases" in text for text in bars), f"progress comes from the job's log: {bars}"

    at.button(key="eval_ray_stop").click().run()
    assert client.stopped == [client.submitted[0][0]], "Stop must stop the job on the cluster"
    warnings = " ".join(w.value for w in at.warning)
    assert "stopped after 3 of 6 cases" in warnings, f"the page says where it stopped: {warnings}"

    client.polls_to_finish = 1
    at.button(key="eval_ray_continue").click().run()
    assert not at.exception and not at.error, f"Continue must not fail: {at.exception} {at.error}"
    assert len(client.submitted) == 2 and "--resume" in shlex.split(client.submitted[1][1]), \
        f"Continue resubmits with --resume: {client.submitted}"
    assert "6 cases" in _results_caption(at), "the finished job's report is shown"
