"""Shards on Ray: one actor per worker, each loading the model once, fed through an ActorPool.

Ray is optional (``requirements-scale.txt``); nothing here is imported by the local engine.
Without an address Ray starts on this machine with as many CPUs as the run asks for, on the
loopback interface, without its dashboard and without usage statistics. Loopback needs Ray's
single-machine mode (:func:`_loopback_only`): otherwise Ray 2.60 swaps 127.0.0.1 for the
machine's network address and its servers listen on every interface. With an address
(``auto``, ``ray://host:10001`` or a head node's ``host:6379``) the run joins that cluster,
whose workers must be able to import ``attribution_core`` (the same image or environment).

Fault tolerance is Ray's: an actor whose process dies is restarted (``max_restarts``) and the
call it was running is sent again (``max_task_retries``); the driver only ever sees results.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attribution_core.evaluation.shard_inputs import ShardInput
from attribution_core.evaluation.sharded_run import ShardWorker
from attribution_core.evaluation.shards import ShardOutput

SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
MAX_RESTARTS = 4
MAX_TASK_RETRIES = 4
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class RayUnavailable(RuntimeError):
    """Ray is not installed here; the message says how to install it."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise RayUnavailable("--engine ray needs Ray: pip install -r requirements-scale.txt "
                             "(or run with --engine local).") from error
    return ray


@dataclass(frozen=True)
class RaySetup:
    """How to reach Ray and how large each worker is."""

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


def start_ray(setup: RaySetup) -> bool:
    """Connect to (or start) Ray; True when this call started it (and so must shut it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if setup.address is not None:
        ray.init(address=setup.address, log_to_driver=False)
        return True
    path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
    # "local": a new instance even when RAY_ADDRESS is set or another cluster runs here
    # (without it, ray.init() would join those).
    with _loopback_only(ray):
        ray.init(address="local", num_cpus=max(1, round(setup.workers * setup.cpus_per_worker)),
                 num_gpus=None if setup.gpus_per_worker else 0,
                 include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    return True


@contextlib.contextmanager
def _loopback_only(ray: Any) -> Iterator[None]:
    """Ray's single-machine mode while a local Ray starts.

    Ray resolves 127.0.0.1 to the machine's network address unless ``ENABLE_RAY_CLUSTER`` is
    off (its default on macOS and Windows), which it reads from ``SINGLE_MACHINE_ENV`` when
    ``ray`` is first imported (maybe before this call); the processes it starts read the
    variable themselves. Both are restored afterwards, so that a later connection to a real
    cluster from this process is not confined to loopback.
    """
    constants = ray._private.ray_constants
    before = (os.environ.get(SINGLE_MACHINE_ENV), constants.ENABLE_RAY_CLUSTER)
    os.environ[SINGLE_MACHINE_ENV] = "0"
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if before[0] is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = before[0]
        constants.ENABLE_RAY_CLUSTER = before[1]


class RayExecutor:
    """The :class:`~attribution_core.evaluation.sharded_run.Executor` protocol on Ray actors."""

    def __init__(self, setup: RaySetup, worker_args: dict[str, Any]) -> None:
        ray = import_ray()
        from ray.util import ActorPool

        remote_worker = ray.remote(ShardWorker).options(
            num_cpus=setup.cpus_per_worker, num_gpus=setup.gpus_per_worker,
            max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES)
        threads = max(1, int(setup.cpus_per_worker))
        self.actors: Sequence[Any] = [remote_worker.remote(**worker_args, threads=threads)
                                      for _ in range(setup.workers)]
        self.pool = ActorPool(list(self.actors))
        self._ray = ray

    def describe(self) -> dict[str, Any]:
        return self._ray.get(self.actors[0].describe.remote())

    def has_free(self) -> bool:
        return self.pool.has_free()

    def submit(self, shard: ShardInput) -> None:
        self.pool.submit(lambda actor, item: actor.run.remote(item), shard)

    def has_pending(self) -> bool:
        return self.pool.has_next()

    def next_done(self) -> ShardOutput:
        return self.pool.get_next_unordered()

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
