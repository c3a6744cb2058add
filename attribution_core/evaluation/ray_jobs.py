"""Evaluations submitted to a Ray cluster as jobs (the Evaluate page's large runs).

When ``RAY_ADDRESS`` names a cluster's job server (``http://head:8265``), a run of at least
``IG_DASHBOARD_RAY_MIN_CASES`` cases (default 200) is not computed in the dashboard process:
its settings (and the uploaded file, if any) are written to a job folder, and the job runs
``python -m attribution_core explain --engine ray --address auto ...`` on the cluster, which
writes the usual report into that folder. The folder (``IG_DASHBOARD_RAY_JOB_DIR``) must be
on storage that both the dashboard and the cluster see (NFS, a mounted bucket).

Progress comes from the job's log (the command's "N/M cases, r cases/s, ETA" lines), Stop is
the job server's stop, Continue resubmits with ``--resume`` (finished shards are kept). Nothing
here imports Streamlit; :func:`make_client` speaks the Ray Jobs REST API to an ``http(s)``
address and uses Ray's ``JobSubmissionClient`` otherwise (the page tests replace it).

A cluster with Ray's token authentication (the default of a Ray 2.60 cluster started where a
token exists) answers 401 without it: the REST client sends the token of Ray's own variables,
``RAY_AUTH_TOKEN`` or the file named by ``RAY_AUTH_TOKEN_PATH``, as ``Authorization: Bearer``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attribution_core.evaluation.types import EvaluationResult, EvaluationSettings

ADDRESS_ENV = "RAY_ADDRESS"
MIN_CASES_ENV = "IG_DASHBOARD_RAY_MIN_CASES"
JOB_DIR_ENV = "IG_DASHBOARD_RAY_JOB_DIR"
WORKERS_ENV = "IG_DASHBOARD_RAY_WORKERS"
GPUS_ENV = "IG_DASHBOARD_RAY_GPUS_PER_WORKER"
POLL_ENV = "IG_DASHBOARD_RAY_POLL_SECONDS"
SHARD_SIZE_ENV = "IG_DASHBOARD_RAY_SHARD_SIZE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
DEFAULT_MIN_CASES = 200
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_PROGRESS = re.compile(r"(\d+)/(\d+) cases(?:, ([\d.]+) cases/s, ETA (\S+) s)?")


@dataclass(frozen=True)
class JobConfig:
    address: str
    min_cases: int
    folder: Path
    workers: int
    gpus_per_worker: float
    poll_seconds: float = 2.0
    shard_size: int | None = None  # None: the command's default

    @staticmethod
    def from_environment(environ: Mapping[str, str] | None = None) -> JobConfig | None:
        """None when no cluster is configured (the page then runs everything itself)."""
        env = os.environ if environ is None else environ
        address = env.get(ADDRESS_ENV, "").strip()
        if not address:
            return None
        shard_size = env.get(SHARD_SIZE_ENV, "").strip()
        return JobConfig(
            address=address, min_cases=max(1, int(env.get(MIN_CASES_ENV, DEFAULT_MIN_CASES))),
            # Absolute: the job runs in the cluster's working directory, not the dashboard's.
            folder=Path(env.get(JOB_DIR_ENV, ".attribution_cache/ray_jobs")).resolve(),
            workers=max(1, int(env.get(WORKERS_ENV, "2"))),
            gpus_per_worker=float(env.get(GPUS_ENV, "0")),
            poll_seconds=max(0.01, float(env.get(POLL_ENV, "2"))),
            shard_size=max(1, int(shard_size)) if shard_size else None)


@dataclass(frozen=True)
class JobInput:
    """Where a page's cases come from: the bundled set (``n_cases``) or an uploaded file."""

    n_cases: int
    baseline: str | None
    upload_name: str | None = None
    upload: bytes | None = None


@dataclass(frozen=True)
class JobHandle:
    submission_id: str
    folder: Path
    command: tuple[str, ...]


@dataclass(frozen=True)
class JobProgress:
    status: str
    done: int
    total: int
    line: str

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def make_client(address: str) -> Any:
    """An ``http(s)://`` job server is spoken to through its REST API (what Ray's SDK does
    under the hood; the dashboard then needs no Ray at all); other addresses (``auto``,
    ``ray://...``) through Ray's ``JobSubmissionClient``, which needs ``ray[default]``."""
    if address.startswith(("http://", "https://")):
        return RestJobClient(address, token=auth_token())
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def auth_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The cluster's token from Ray's variables, or None (no token authentication)."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV, "").strip()
    if not token and env.get(TOKEN_PATH_ENV, "").strip():
        path = Path(env[TOKEN_PATH_ENV].strip()).expanduser()
        with path.open("rb") as handle:
            token = handle.read(4096).decode("utf-8", errors="replace").strip()
    return token or None


class RestJobClient:
    """The four calls of the Ray Jobs REST API the page uses (``/api/jobs/...``)."""

    def __init__(self, address: str, timeout: float = 10.0, token: str | None = None) -> None:
        self.base = address.rstrip("/")
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method,
                                         headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode() or "{}")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace").strip().splitlines()
            hint = (f" (a cluster with token authentication: set {TOKEN_ENV} for the dashboard)"
                    if error.code in (401, 403) else "")
            raise RuntimeError(f"the Ray job server answered {error.code} to {method} {path}"
                               + (f": {detail[0][:200]}" if detail else "") + hint) from error
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise RuntimeError(f"the Ray job server at {self.base} cannot be reached "
                               f"({getattr(error, 'reason', error)})") from error

    def submit_job(self, *, entrypoint: str, submission_id: str) -> str:
        answer = self._call("POST", "/api/jobs/", {"entrypoint": entrypoint,
                                                    "submission_id": submission_id})
        return str(answer.get("submission_id", submission_id))

    def get_job_status(self, submission_id: str) -> str:
        return str(self._call("GET", f"/api/jobs/{submission_id}")["status"])

    def get_job_logs(self, submission_id: str) -> str:
        return str(self._call("GET", f"/api/jobs/{submission_id}/logs").get("logs", ""))

    def stop_job(self, submission_id: str) -> bool:
        return bool(self._call("POST", f"/api/jobs/{submission_id}/stop").get("stopped"))


def job_command(model_name: str, job_input: JobInput, folder: Path, config: JobConfig,
                *, resume: bool = False) -> tuple[str, ...]:
    """The command the job runs (paths inside the shared job folder)."""
    command = ["python", "-m", "attribution_core", "explain",
               "--model", model_name, "--settings", str(folder / "settings.json"),
               "--out", str(folder / "report"), "--n-cases", str(job_input.n_cases),
               "--engine", "ray", "--address", "auto", "--workers", str(config.workers)]
    if job_input.upload is None:
        command.append("--bundled")
    else:
        command += ["--input", str(folder / _safe_name(job_input.upload_name or "cases"))]
    if job_input.baseline:
        command += ["--baseline", job_input.baseline]
    if config.gpus_per_worker:
        command += ["--gpus-per-worker", str(config.gpus_per_worker)]
    if config.shard_size:
        command += ["--shard-size", str(config.shard_size)]
    if resume:
        command.append("--resume")
    return tuple(command)


def _safe_name(name: str) -> str:
    """The upload's extension is kept (it tells the reader the format); the rest is ours."""
    suffix = Path(name).suffix.lower()
    return "input" + (suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else "")


def submit(client: Any, config: JobConfig, model_name: str, settings: EvaluationSettings,
           job_input: JobInput) -> JobHandle:
    submission_id = f"attribution-eval-{uuid.uuid4().hex[:12]}"
    folder = config.folder / submission_id
    folder.mkdir(parents=True, exist_ok=False)
    record = settings.record()
    record["methods"] = list(record["methods"])
    (folder / "settings.json").write_text(json.dumps(record), encoding="utf-8")
    if job_input.upload is not None:
        (folder / _safe_name(job_input.upload_name or "cases")).write_bytes(job_input.upload)
    command = job_command(model_name, job_input, folder, config)
    client.submit_job(entrypoint=shlex.join(command), submission_id=submission_id)
    return JobHandle(submission_id, folder, command)


def resubmit(client: Any, handle: JobHandle) -> JobHandle:
    """Continue a stopped job: the same command with ``--resume`` under a new id."""
    command = handle.command if "--resume" in handle.command else (*handle.command, "--resume")
    submission_id = f"{handle.submission_id.split('~')[0]}~{uuid.uuid4().hex[:6]}"
    client.submit_job(entrypoint=shlex.join(command), submission_id=submission_id)
    return JobHandle(submission_id, handle.folder, command)


def poll(client: Any, handle: JobHandle) -> JobProgress:
    reported = client.get_job_status(handle.submission_id)  # a JobStatus enum (str values)
    status = str(getattr(reported, "value", reported)).split(".")[-1].upper()
    logs = client.get_job_logs(handle.submission_id) or ""
    done = total = 0
    last = ""
    for line in logs.splitlines():
        match = _PROGRESS.search(line)
        if match:
            done, total, last = int(match.group(1)), int(match.group(2)), line.strip()
    return JobProgress(status, done, total, last)


def stop(client: Any, handle: JobHandle) -> None:
    client.stop_job(handle.submission_id)


def load_result(handle: JobHandle) -> EvaluationResult:
    from attribution_core.evaluation.report import read_report

    return read_report(handle.folder / "report" / "evaluation.json")
