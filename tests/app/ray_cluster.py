"""A real single-node Ray cluster for tests: ``ray start --head`` on loopback, stopped by its
own processes only.

``ray start`` turns a loopback ``--node-ip-address`` into the machine's reachable address
(its rule for clusters of many machines) and Ray's servers then listen on every interface.
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` selects Ray's single-machine mode (its default on
macOS and Windows), in which the node's address is 127.0.0.1 and so every Ray server,
the job server included, listens on loopback only. Every port is a free one picked here, the
object store is small, usage statistics are off, and the temporary folder is the test's.
Token authentication is on, with a token of the cluster's own (``RAY_AUTH_TOKEN``): Ray 2.60
turns it on anyway wherever ``~/.ray/auth_token`` exists (any local ``ray.init`` writes one),
so a client must cope with it, and the test does not depend on what an earlier run left.

``ray stop`` ends every Ray process of the user on the machine, other tests' included, so
:meth:`LocalCluster.stop` ends only this cluster's: the processes whose command line names
its temporary folder (the GCS, the raylet, the dashboard and log monitor) and everything
they started (agents, workers, job drivers).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_PORTS = ("--port", "--dashboard-port", "--ray-client-server-port", "--node-manager-port",
          "--object-manager-port", "--dashboard-agent-listen-port",
          "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 now (held open together while picked)."""
    sockets = []
    try:
        for _ in range(count):
            handle = socket.socket()
            handle.bind(("127.0.0.1", 0))
            sockets.append(handle)
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


@dataclass(frozen=True)
class LocalCluster:
    temp_dir: Path
    dashboard_url: str
    token: str = ""

    @staticmethod
    def start(temp_dir: Path, *, num_cpus: int = 2, object_store_bytes: int = 200 * 10**6,
              ready_seconds: float = 300.0) -> LocalCluster:
        """Start the head node and wait until its job server answers."""
        # Unix socket paths live under the temporary folder; Linux allows 107 bytes.
        assert len(str(temp_dir)) <= 48, f"temporary folder too long for Ray: {temp_dir}"
        temp_dir.mkdir(parents=True, exist_ok=True)
        ports = dict(zip(_PORTS, free_ports(len(_PORTS)), strict=True))
        python_bin = str(Path(sys.executable).parent)
        token = secrets.token_hex(32)
        environment = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                       "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                       "RAY_AUTH_TOKEN": token,
                       # The job's "python -m attribution_core" finds this checkout's Python.
                       "PATH": python_bin + os.pathsep + os.environ.get("PATH", ""),
                       "PYTHONPATH": os.pathsep.join(
                           p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        environment.pop("RAY_ADDRESS", None)
        environment.pop("RAY_AUTH_TOKEN_PATH", None)
        command = [str(Path(python_bin) / "ray"), "start", "--head",
                   "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
                   "--include-dashboard=true", f"--num-cpus={num_cpus}", "--num-gpus=0",
                   f"--object-store-memory={object_store_bytes}", "--disable-usage-stats",
                   f"--temp-dir={temp_dir}",
                   *(f"{flag}={port}" for flag, port in ports.items())]
        cluster = LocalCluster(temp_dir, f"http://127.0.0.1:{ports['--dashboard-port']}", token)
        started = subprocess.run(command, env=environment, cwd=temp_dir, capture_output=True,
                                 text=True, timeout=ready_seconds, check=False)
        if started.returncode != 0:
            cluster.stop()
            raise RuntimeError(f"ray start failed ({started.returncode}): "
                               f"{started.stderr[-2000:]}")
        deadline = time.monotonic() + ready_seconds
        while not cluster._job_server_answers():
            if time.monotonic() > deadline:
                cluster.stop()
                raise TimeoutError(f"the job server at {cluster.dashboard_url} did not answer "
                                   f"within {ready_seconds:.0f} s")
            time.sleep(1.0)
        return cluster

    def _job_server_answers(self) -> bool:
        request = urllib.request.Request(f"{self.dashboard_url}/api/version",
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return "ray_version" in json.loads(reply.read().decode())
        except (OSError, ValueError):
            return False

    def processes(self) -> set[int]:
        """This cluster's processes: those naming its folder, and all their descendants."""
        marker = str(self.temp_dir).encode()
        parents: dict[int, int] = {}
        roots = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[1])
            if marker in cmdline and stat[0] != "Z":
                roots.add(int(entry.name))
        found = set(roots)
        grew = True
        while grew:
            children = {pid for pid, parent in parents.items() if parent in found} - found
            found |= children
            grew = bool(children)
        found.discard(os.getpid())
        return found

    def stop(self, grace_seconds: float = 20.0) -> set[int]:
        """SIGTERM to this cluster's processes, SIGKILL to those left after the grace time;
        returns the processes still alive (none, unless the kernel refused)."""
        targets = self.processes()
        for signum, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 5.0)):
            for pid in targets:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
            deadline = time.monotonic() + wait
            while (targets := {pid for pid in targets if _alive(pid)}) and \
                    time.monotonic() < deadline:
                time.sleep(0.2)
        return targets


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing
