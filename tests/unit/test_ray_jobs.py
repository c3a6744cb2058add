"""Ray job plumbing for the Evaluate page, without a cluster: configuration, command, progress."""

from __future__ import annotations

import json
import shlex
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

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


def test_the_job_folder_is_absolute_and_the_shard_size_travels(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the dashboard's working directory, not the cluster's
    config = ray_jobs.JobConfig.from_environment({
        "RAY_ADDRESS": "http://head:8265", "IG_DASHBOARD_RAY_JOB_DIR": "jobs",
        "IG_DASHBOARD_RAY_SHARD_SIZE": "4"})
    assert config is not None and config.folder == tmp_path / "jobs", \
        f"a relative job folder is made absolute: the job runs elsewhere: {config}"
    handle = ray_jobs.submit(_Client(), config, "digits_cnn", EvaluationSettings(),
                             ray_jobs.JobInput(n_cases=12, baseline=None))
    words = handle.command
    assert Path(words[words.index("--settings") + 1]).is_absolute() and \
        Path(words[words.index("--out") + 1]).is_absolute(), f"absolute paths: {words}"
    assert words[words.index("--shard-size") + 1] == "4", f"the shard size travels: {words}"


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


class _JobServer(BaseHTTPRequestHandler):
    """A loopback stand-in for the Ray job server's REST endpoints (one job at a time)."""

    jobs: ClassVar[dict[str, dict[str, str]]] = {}
    required_token: ClassVar[str | None] = None  # as a cluster with token authentication

    def _authorised(self) -> bool:
        if self.required_token is None or \
                self.headers.get("Authorization") == f"Bearer {self.required_token}":
            return True
        self.send_response(401)
        self.send_header("Content-Length", "43")
        self.end_headers()
        self.wfile.write(b"Unauthorized: Missing authentication token\n")
        return False

    def _answer(self, code: int, body: dict) -> None:  # type: ignore[type-arg]
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        if not self._authorised():
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/api/jobs/":
            self.jobs[body["submission_id"]] = {"status": "RUNNING",
                                                "entrypoint": body["entrypoint"]}
            self._answer(200, {"submission_id": body["submission_id"], "job_id": None})
        elif self.path.endswith("/stop") and self.path.split("/")[3] in self.jobs:
            self.jobs[self.path.split("/")[3]]["status"] = "STOPPED"
            self._answer(200, {"stopped": True})
        else:
            self._answer(404, {"error": "no such job"})

    def do_GET(self) -> None:
        if not self._authorised():
            return
        parts = self.path.split("/")
        job = self.jobs.get(parts[3]) if len(parts) > 3 else None
        if job is None:
            self._answer(404, {})
        elif self.path.endswith("/logs"):
            self._answer(200, {"logs": "shard 0 done (20 cases, 1 s): 20/40 cases, 20.00 "
                                       "cases/s, ETA 1 s\n"})
        else:
            self._answer(200, {"status": job["status"]})

    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        return


def test_the_rest_client_submits_polls_and_stops_on_a_loopback_job_server(
        tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JobServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"http://127.0.0.1:{server.server_address[1]}"
        client = ray_jobs.make_client(address)
        assert isinstance(client, ray_jobs.RestJobClient), "http addresses need no Ray SDK"
        config = ray_jobs.JobConfig(address, 10, tmp_path, workers=2, gpus_per_worker=0.0)
        handle = ray_jobs.submit(client, config, "digits_cnn", EvaluationSettings(),
                                 ray_jobs.JobInput(n_cases=40, baseline=None))
        assert "--bundled" in _JobServer.jobs[handle.submission_id]["entrypoint"], \
            "the server received the command"
        progress = ray_jobs.poll(client, handle)
        assert (progress.status, progress.done, progress.total) == ("RUNNING", 20, 40), \
            f"status and progress come back over HTTP: {progress}"
        ray_jobs.stop(client, handle)
        assert ray_jobs.poll(client, handle).status == "STOPPED", "stop reaches the server"
        try:
            client.get_job_status("no-such-job")
        except RuntimeError as error:
            assert "404" in str(error) and "\n" not in str(error), f"one line: {error}"
        else:
            raise AssertionError("an unknown job must raise")
    finally:
        server.shutdown()
        server.server_close()


def test_the_rest_client_sends_rays_token_to_a_server_that_requires_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "auth_token"
    token_file.write_text("f00d" * 16 + "\n", encoding="utf-8")
    monkeypatch.setattr(_JobServer, "required_token", "f00d" * 16)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JobServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.delenv(ray_jobs.TOKEN_ENV, raising=False)
        monkeypatch.delenv(ray_jobs.TOKEN_PATH_ENV, raising=False)
        with pytest.raises(RuntimeError, match=r"401.*set RAY_AUTH_TOKEN"):
            ray_jobs.make_client(address).submit_job(entrypoint="true", submission_id="a")
        monkeypatch.setenv(ray_jobs.TOKEN_PATH_ENV, str(token_file))
        assert ray_jobs.make_client(address).submit_job(entrypoint="true",
                                                        submission_id="b") == "b", \
            "the token from RAY_AUTH_TOKEN_PATH is sent"
        monkeypatch.setenv(ray_jobs.TOKEN_ENV, "f00d" * 16)
        monkeypatch.setenv(ray_jobs.TOKEN_PATH_ENV, str(tmp_path / "missing"))
        assert ray_jobs.make_client(address).get_job_status("b") == "RUNNING", \
            "RAY_AUTH_TOKEN comes first, as for Ray itself"
    finally:
        server.shutdown()
        server.server_close()
