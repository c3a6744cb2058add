"""Ray job plumbing for the Evaluate page, without a cluster: configuration, command, progress."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from attribution_core.evaluation import ray_jobs
from attribution_core.evaluation.types import EvaluationSettings


def test_no_address_means_no_jobs_and_the_threshold_is_configurable(tmp_path: Path) -> None:
    assert ray_jobs.JobConfig.from_environment({}) is None, "without RAY_ADDRESS the page " \
        "computes every run itself"
    config = ray_jobs.JobConfig.from_environment({
        "RAY_ADDRESS": "http://head:8265", "IG_DASHBOARD_RAY_MIN_CASES": "1000",
        "IG_DASHBOARD_RAY_JOB_DIR": str(tmp_path), "IG_DASHBOARD_RAY_GPUS_PER_WORKER": "0.5"})
    assert config is not None and config.min_cases == 1000 and config.gpus_per_worker == 0.5, \
        f"the environment configures the jobs: {config}"


class _Client:
    def __init__(self) -> None:
        self.submitted: list[tuple[str, str]] = []

    def submit_job(self, *, entrypoint: str, submission_id: str) -> str:
        self.submitted.append((submission_id, entrypoint))
        return submission_id

    def get_job_status(self, submission_id: str) -> str:
        return "RUNNING"

    def get_job_logs(self, submission_id: str) -> str:
        return ("Evaluating 60 case(s)…\nshard 1 done (20 cases, 1.0 s): 20/60 cases, "
                "5.00 cases/s, ETA 8 s\nshard 0 done (20 cases, 1.1 s): 40/60 cases, "
                "6.00 cases/s, ETA 3 s\n")


def test_an_upload_job_writes_its_file_and_settings_and_reads_progress(tmp_path: Path) -> None:
    config = ray_jobs.JobConfig("http://head:8265", 10, tmp_path, workers=3,
                                gpus_per_worker=1.0)
    client = _Client()
    settings = EvaluationSettings(methods=("IG", "IG2"), ig_steps=16)
    handle = ray_jobs.submit(client, config, "cue_transformer", settings, ray_jobs.JobInput(
        n_cases=60, baseline="pad", upload_name="../../etc/My Texts.CSV", upload=b"text\nhi\n"))
    words = shlex.split(client.submitted[0][1])
    given = Path(words[words.index("--input") + 1])
    assert given == handle.folder / "input.csv" and given.read_bytes() == b"text\nhi\n", \
        f"the upload is stored under a name of ours, its extension kept: {given}"
    assert json.loads(Path(words[words.index("--settings") + 1]).read_text())["ig_steps"] == 16, \
        "the settings file holds the page's settings"
    for option, value in (("--workers", "3"), ("--gpus-per-worker", "1.0"),
                          ("--baseline", "pad"), ("--n-cases", "60")):
        assert words[words.index(option) + 1] == value, f"{option} must be {value}: {words}"
    progress = ray_jobs.poll(client, handle)
    assert (progress.status, progress.done, progress.total) == ("RUNNING", 40, 60), \
        f"the last progress line of the log counts: {progress}"
    again = ray_jobs.resubmit(client, handle)
    assert again.submission_id != handle.submission_id and again.command[-1] == "--resume", \
        "Continue is a new submission of the same command with --resume"
