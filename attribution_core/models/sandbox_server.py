"""The process that runs upload checks for :mod:`.sandbox`: a fork server.

``python -m attribution_core.models.sandbox_server FD`` imports torch, onnx, the converters and
transformers once (seconds), then waits on the socket ``FD`` (a ``SOCK_SEQPACKET`` pair end) for
requests, one JSON object each with a pipe's write end attached. For each it forks a child (tens
of milliseconds, the imports shared), replies ``{"pid": N}`` and reaps children as they end. The
child limits its own memory (``RLIMIT_DATA``: heap and private mappings, so an allocation above
the budget fails inside it) and CPU time, runs the named job on the upload's bytes (and the
files attached to it: a reference CSV's cells) and writes one JSON object into the pipe. Nothing
is pickled either way: the child has handled hostile bytes, so the server only ever reads back
plain JSON.

The server runs in an empty private folder (its working directory), so a path in a crafted file
that slipped past every check would find nothing there. It exits when the dashboard closes its
end of the socket.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import select
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from attribution_core.models.spec import ModelLoadError

JOBS = {"onnx": "attribution_core.models.onnx_jobs:onnx_trial",
        "onnx_categorical": "attribution_core.models.onnx_jobs:categorical_trial",
        "hf_text": "attribution_core.models.hf_upload:trial"}
PRELOAD = ("torch", "onnx", "onnx.shape_inference", "onnx.reference", "onnx2torch",
           "attribution_core.cost", "attribution_core.models.onnx_models",
           "attribution_core.models.onnx_checks", "attribution_core.models.onnx_categorical",
           "transformers", "transformers.models.auto.modeling_auto",
           "transformers.models.auto.tokenization_auto", "attribution_core.models.hf_upload")
MAX_REQUEST_BYTES = 64 * 1024


def status_kb(field: str, pid: int | str = "self") -> int:
    """A ``/proc/<pid>/status`` field in kB (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def serve(fd: int) -> None:
    """The server loop (see the module docstring)."""
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    channel = socket.socket(fileno=fd)
    while True:
        _reap()
        ready, _, _ = select.select([channel], [], [], 0.5)
        if not ready:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(channel, MAX_REQUEST_BYTES, 1)
        except OSError:
            return
        if not message:
            return  # the dashboard closed its end
        if len(fds) != 1:
            for extra in fds:
                os.close(extra)
            channel.send(json.dumps({"pid": 0}).encode())
            continue
        pid = os.fork()
        if pid == 0:
            try:
                channel.close()
                _child(json.loads(message), fds[0])
            finally:
                os._exit(0)
        os.close(fds[0])
        channel.send(json.dumps({"pid": pid}).encode())


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _limit(memory_bytes: int, cpu_seconds: int) -> None:
    """Cap the heap and private mappings at what the child holds now plus ``memory_bytes``,
    and its CPU time (a backstop: the dashboard kills it at its wall-clock deadline)."""
    current = status_kb("VmData") * 1024
    if current > 0:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_DATA, (current + memory_bytes,
                                                      resource.getrlimit(resource.RLIMIT_DATA)[1]))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds,
                                                 resource.getrlimit(resource.RLIMIT_CPU)[1]))


def _child(request: dict[str, Any], fd: int) -> None:
    """Run one job, write one JSON object to ``fd``."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    start_kb = status_kb("VmRSS")
    payload: dict[str, Any]
    try:
        options = dict(request.get("options") or {})
        threads = max(1, int(options.get("threads", 1)))
        _limit(int(request["memory_bytes"]), int(float(request["seconds"]) * threads) + 5)
        import torch

        torch.set_num_threads(threads)
        module_name, function_name = JOBS[str(request["job"])].split(":")
        function = getattr(importlib.import_module(module_name), function_name)
        options["attachments"] = {str(name): Path(str(path)).read_bytes() for name, path in
                                  dict(request.get("attachments") or {}).items()}
        result = function(Path(str(request["path"])).read_bytes(), options)
        payload = {"ok": True, "result": result}
    except ModelLoadError as error:
        payload = {"ok": False, "message": str(error)}
    except MemoryError:
        payload = {"ok": False, "memory": True}
    except RuntimeError as error:
        failed = "allocate memory" in str(error) or "out of memory" in str(error)
        payload = {"ok": False, "memory": True} if failed else \
            {"ok": False, "unexpected": type(error).__name__}
    except BaseException as error:  # the dashboard gets one line whatever happened
        payload = {"ok": False, "unexpected": type(error).__name__}
    payload["peak_extra_bytes"] = max(0, status_kb("VmHWM") - start_kb) * 1024
    try:
        data = json.dumps(payload, default=str).encode("utf-8")
    except (TypeError, ValueError):
        data = json.dumps({"ok": False, "unexpected": "reply"}).encode("utf-8")
    with contextlib.suppress(OSError), os.fdopen(fd, "wb") as sink:
        sink.write(data)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
