"""Run a check of an uploaded model in a child process, with a time and a memory budget.

Why a process: the dashboard is one process whose sessions are threads. Converting a graph and
running it once is pure Python and C++ that holds the interpreter (a 14 KB ONNX of 500 chained
matrix products took 25 s; one that allocates 1.6 GB needs no more bytes than that): in a thread
it would stall every other session, and no thread can be stopped from outside. A child can be
given a memory limit and be killed at its deadline; the dashboard also watches its resident
memory, and reads back one JSON object.

Children come from a fork server (:mod:`.sandbox_server`, started once per dashboard process, in
an empty private folder) that imported torch, onnx, onnx2torch and transformers once, so a check
starts in tens of milliseconds; :func:`warm_up` starts it before the first upload.
(``multiprocessing``'s own forkserver would re-run the main module in each child, and under
Streamlit ``__main__`` is the page script.) Only jobs named in ``sandbox_server.JOBS`` run, each
``job(data, options) -> dict`` of plain JSON values; a :class:`ModelLoadError` raised by the job
comes back as that one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attribution_core import limits
from attribution_core.models.sandbox_server import JOBS, status_kb
from attribution_core.models.spec import ModelLoadError

SECONDS_VARIABLE = "IG_DASHBOARD_MODEL_CHECK_SECONDS"
MAX_RESULT_BYTES = 8 * 2**20  # names and measurements; far below what a reply could hold
POLL_SECONDS = 0.02


@dataclass(frozen=True)
class SandboxBudget:
    """Wall-clock seconds and bytes on top of the child's memory at its start."""

    seconds: float
    memory_bytes: int


@dataclass(frozen=True)
class SandboxReport:
    """What the job returned and what it cost: seconds from the child's start to the answer,
    the child's peak resident memory above its start."""

    result: dict[str, Any]
    seconds: float
    peak_extra_bytes: int


def budget_for(upload_bytes: int) -> SandboxBudget:
    """The check's budget for an upload of ``upload_bytes``: seconds from
    ``IG_DASHBOARD_MODEL_CHECK_SECONDS`` (default :data:`~limits.MODEL_CHECK_SECONDS`) plus
    :data:`~limits.MODEL_CHECK_SECONDS_PER_MB` per MB, memory a base plus a multiple of the
    upload (a converted graph holds its weights about twice)."""
    text = os.environ.get(SECONDS_VARIABLE, "").strip()
    try:
        seconds = float(text) if text else limits.MODEL_CHECK_SECONDS
    except ValueError:
        seconds = limits.MODEL_CHECK_SECONDS
    memory = limits.MODEL_CHECK_BASE_BYTES + limits.MODEL_CHECK_BYTES_PER_UPLOAD_BYTE * \
        int(upload_bytes)
    # A large upload takes longer to inflate and read, whatever it holds.
    seconds = max(0.5, seconds) + limits.MODEL_CHECK_SECONDS_PER_MB * upload_bytes / 2**20
    return SandboxBudget(seconds, memory)


class _ForkServer:
    """The dashboard's end of :mod:`.sandbox_server`: started on first use, restarted if it
    died; requests go one at a time (a request is answered as soon as the child is forked)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def _start(self) -> None:
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._folder = tempfile.TemporaryDirectory(prefix="ig-sandbox-")
        paths = [path for path in sys.path if path]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "attribution_core.models.sandbox_server",
                 str(theirs.fileno())], pass_fds=[theirs.fileno()], cwd=self._folder.name,
                env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        self._channel = ours

    def _stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=5)
        self._channel = self._process = None

    def ensure(self) -> None:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()

    def launch(self, request: Mapping[str, Any], result_fd: int) -> int:
        """Fork a child for ``request``, its answer to go to ``result_fd``; its pid."""
        message = json.dumps(dict(request)).encode()
        with self._lock:
            for attempt in (1, 2):
                if self._process is None or self._process.poll() is not None:
                    self._start()
                assert self._channel is not None
                try:
                    socket.send_fds(self._channel, [message], [result_fd])
                    reply = self._channel.recv(4096)
                    if reply:
                        return int(json.loads(reply)["pid"])
                except OSError:
                    if attempt == 2:
                        raise
                self._start()  # the server died: once more with a new one
        raise ModelLoadError("The model could not be checked: its checking process is "
                             "unavailable.")

    def server_pid(self) -> int | None:
        return None if self._process is None else self._process.pid


_SERVER = _ForkServer()


def warm_up() -> None:
    """Start the fork server now (its imports take seconds), without waiting for it."""
    _SERVER.ensure()


def run_sandboxed(job: str, data: bytes, options: Mapping[str, Any] | None = None,
                  budget: SandboxBudget | None = None, what: str = "The model",
                  attachments: Mapping[str, bytes] | None = None) -> SandboxReport:
    """``job(data, options)`` in a child within ``budget`` (default :func:`budget_for` of the
    upload and its ``attachments``: other files of the same upload, such as a reference CSV,
    which the job finds as bytes in ``options["attachments"]``).
    Raises :class:`ModelLoadError` with one line when the job refuses the upload, runs out of
    time or memory, or the child dies; the error carries ``sandbox_report`` (what it cost)."""
    if job not in JOBS:
        raise ValueError(f"Unknown sandbox job {job!r}.")
    extra = dict(attachments or {})
    budget = budget or budget_for(len(data) + sum(len(blob) for blob in extra.values()))
    with tempfile.TemporaryDirectory(prefix="ig-upload-") as folder:
        path = Path(folder) / "upload.bin"  # a private folder (0700): the child reads it back
        path.write_bytes(data)
        attached = {}
        for index, (name, blob) in enumerate(extra.items()):
            attached[str(name)] = str(Path(folder) / f"attachment-{index}.bin")
            Path(attached[str(name)]).write_bytes(blob)
        request = {"job": job, "path": str(path), "options": dict(options or {}),
                   "attachments": attached, "memory_bytes": budget.memory_bytes,
                   "seconds": budget.seconds}
        reader, writer = os.pipe()
        try:
            pid = _SERVER.launch(request, writer)
        finally:
            os.close(writer)
        started = time.perf_counter()
        try:
            payload, peak = _watch(pid, reader, budget, started)
        finally:
            os.close(reader)
    seconds = time.perf_counter() - started
    peak = max(peak, int(payload.get("peak_extra_bytes", 0))) if payload else peak
    try:
        return SandboxReport(_answer(payload, budget, what), seconds, peak)
    except ModelLoadError as error:
        error.sandbox_report = SandboxReport({}, seconds, peak)  # type: ignore[attr-defined]
        raise


def _watch(pid: int, reader: int, budget: SandboxBudget, started: float
           ) -> tuple[dict[str, Any] | None, int]:
    """Read the child's answer, killing it past its deadline or its memory budget."""
    if pid <= 0:
        return None, 0
    chunks: list[bytes] = []
    received = 0
    first_rss: int | None = None
    peak = 0
    while True:
        ready, _, _ = select.select([reader], [], [], POLL_SECONDS)
        if ready:
            chunk = os.read(reader, 1 << 16)
            if not chunk:  # the child closed the pipe: it answered or died
                return _decoded(b"".join(chunks)), peak
            received += len(chunk)
            if received > MAX_RESULT_BYTES:
                _kill(pid)
                return None, peak
            chunks.append(chunk)
            continue
        rss = status_kb("VmRSS", pid) * 1024
        if rss:
            first_rss = rss if first_rss is None else first_rss
            peak = max(peak, rss - first_rss)
            if peak > budget.memory_bytes:
                _kill(pid)
                return {"ok": False, "memory": True}, peak
        if time.perf_counter() - started > budget.seconds:
            _kill(pid)
            return {"ok": False, "timeout": True}, peak


def _decoded(raw: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _kill(pid: int) -> None:
    """SIGKILL the child, if it is still the fork server's child (a reaped pid can be reused)."""
    server = _SERVER.server_pid()
    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return
    if parent == server:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _answer(payload: dict[str, Any] | None, budget: SandboxBudget, what: str
            ) -> dict[str, Any]:
    if payload is None:
        raise ModelLoadError(f"{what} could not be checked: the checking process ended "
                             "abruptly (a crash in the converter, or out of memory).")
    if payload.get("ok"):
        result = payload.get("result")
        return result if isinstance(result, dict) else {}
    if payload.get("timeout"):
        raise ModelLoadError(f"{what} took longer than {budget.seconds:.3g} s to convert and run "
                             f"once; this server allows {budget.seconds:.3g} s "
                             f"({SECONDS_VARIABLE}).")
    if payload.get("memory"):
        raise ModelLoadError(f"{what} needed more than {budget.memory_bytes / 2**20:,.0f} MB of "
                             "memory to convert and run once; this server allows that much for "
                             "a model of this size.")
    message = payload.get("message")
    if isinstance(message, str) and message:
        raise ModelLoadError(message.splitlines()[0][:2000])
    raise ModelLoadError(f"{what} could not be checked ({payload.get('unexpected', 'error')}).")
