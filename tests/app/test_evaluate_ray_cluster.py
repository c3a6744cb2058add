"""The Evaluate page's Ray job on a real local cluster (``ray start --head`` on loopback).

What ``test_evaluate_ray_job.py`` does with a stand-in job client, here against Ray's own job
server (with token authentication on): the page submits the run through the Ray Jobs REST
API with the cluster's token, the job runs ``python -m attribution_core explain --engine ray
--address auto`` on the cluster (its own actor, the shards, the streamed report), the page
shows the job's state and progress while it runs, and reads the report back when it
succeeds. Six digits cases, IG and Saliency at 8 steps, one 1-CPU worker on a 2-CPU cluster:
small enough for two shared cores, where Ray itself takes tens of seconds to start; every
wait is for a state, with generous limits.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from attribution_core.evaluation import ray_jobs
from attribution_core.evaluation.report import read_report
from tests.app.ray_cluster import LocalCluster
from tests.app.test_evaluate_page import open_page
from tests.ray_sockets import not_loopback

pytestmark = [pytest.mark.app, pytest.mark.slow]
N_CASES = 6
JOB_SECONDS = 900  # the whole job on a loaded 2-core machine, far more than it needs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base = tmp_path_factory.mktemp("ray")
    # Ray's socket paths must stay short; pytest's base folder may be long (--basetemp).
    folder = base if len(str(base)) <= 48 else Path(tempfile.mkdtemp(prefix="ray-"))
    started = LocalCluster.start(folder / "r")
    try:
        yield started
    finally:
        left = started.stop()
        if folder != base:
            shutil.rmtree(folder, ignore_errors=True)
        assert not left, f"the cluster's processes must be gone: {sorted(left)}"


def _bars(at) -> list[str]:  # type: ignore[no-untyped-def]
    return [p.proto.text for p in at.get("progress")]


def test_the_page_runs_a_ray_job_on_a_real_cluster_and_shows_its_report(
        cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = not_loopback(cluster.processes())
    assert not outside, f"the cluster must listen on loopback only: {outside}"
    monkeypatch.setenv(ray_jobs.ADDRESS_ENV, cluster.dashboard_url)
    monkeypatch.delenv(ray_jobs.TOKEN_PATH_ENV, raising=False)
    monkeypatch.setenv(ray_jobs.TOKEN_ENV, cluster.token)  # the cluster requires its token
    monkeypatch.setenv(ray_jobs.MIN_CASES_ENV, "5")
    monkeypatch.setenv(ray_jobs.JOB_DIR_ENV, str(tmp_path / "jobs"))
    monkeypatch.setenv(ray_jobs.WORKERS_ENV, "1")
    monkeypatch.setenv(ray_jobs.SHARD_SIZE_ENV, "2")
    monkeypatch.setenv(ray_jobs.POLL_ENV, "0.5")
    monkeypatch.setenv("IG_DASHBOARD_RAY_WAIT_SECONDS", "0")  # the first run only submits
    at = open_page("image", "digits_cnn", n_cases=N_CASES, methods=("IG", "Saliency"))
    at.button(key="eval_run").click().run()
    assert not at.exception and not at.error, \
        f"submitting must work: {at.exception} {[e.value for e in at.error]}"
    jobs = list((tmp_path / "jobs").iterdir())
    assert len(jobs) == 1, f"one job folder: {jobs}"
    client = ray_jobs.make_client(cluster.dashboard_url)
    with pytest.raises(RuntimeError, match="401"):
        ray_jobs.RestJobClient(cluster.dashboard_url).get_job_status(jobs[0].name)
    submission = jobs[0].name
    assert client.get_job_status(submission) in ("PENDING", "RUNNING", "SUCCEEDED"), \
        "the real job server knows the job the page submitted"

    # Follow the job as a user would, pressing Refresh; each script run watches for 5 s.
    monkeypatch.setenv("IG_DASHBOARD_RAY_WAIT_SECONDS", "5")
    seen = [(any(b.key == "eval_ray_stop" for b in at.button), _bars(at))]
    deadline = time.monotonic() + JOB_SECONDS
    while any(b.key == "eval_ray_refresh" for b in at.button):
        assert time.monotonic() < deadline, \
            f"the job did not finish in {JOB_SECONDS} s: {client.get_job_logs(submission)[-2000:]}"
        at.button(key="eval_ray_refresh").click().run()
        assert not at.exception and not at.error, \
            f"polling must not fail: {at.exception} {[e.value for e in at.error]} " \
            f"log: {client.get_job_logs(submission)[-1500:]}"
        seen.append((any(b.key == "eval_ray_stop" for b in at.button), _bars(at)))

    waiting = [bars for has_stop, bars in seen if has_stop and bars]
    assert waiting and all(b.startswith("Ray job: ") for bars in waiting for b in bars), \
        f"while the job ran the page showed Stop and a progress bar: {seen}"
    states = {b.split(",")[0] for bars in waiting for b in bars}
    assert states & {"Ray job: pending", "Ray job: running"}, \
        f"the bar names the job server's state: {states}"
    assert client.get_job_status(submission) == "SUCCEEDED", \
        f"the job must succeed: {client.get_job_logs(submission)[-2000:]}"
    logs = client.get_job_logs(submission)
    assert f"{N_CASES}/{N_CASES} cases" in logs, \
        f"the job's log holds the command's progress lines: {logs[-1500:]}"
    progress = ray_jobs.poll(client, ray_jobs.JobHandle(submission, jobs[0], ()))
    assert (progress.done, progress.total) == (N_CASES, N_CASES), \
        f"the page's parser reads the real log: {progress}"

    captions = " ".join(c.value for c in at.caption)
    assert f"{N_CASES} cases" in captions, f"the job's report is on the page: {captions[:300]}"
    assert not any(b.key in ("eval_ray_stop", "eval_ray_refresh") for b in at.button), \
        "no Stop or Refresh once the job has finished"
    report = jobs[0] / "report"
    result = read_report(report / "evaluation.json")
    assert len(result.cases) == N_CASES and result.settings.methods == ("IG", "Saliency"), \
        "the job evaluated the page's cases with the page's settings"
    assert (report / "evaluation_cases.parquet").is_file() and \
        len(list((report / "shards").glob("shard-*.json"))) == N_CASES // 2, \
        "the job ran in shards of two and wrote the per-case table"
