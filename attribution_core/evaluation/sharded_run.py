"""A sharded evaluation, independent of where the shards run.

:class:`ShardWorker` loads the model once and turns one :class:`ShardInput` into one
:class:`ShardOutput` (the Ray engine wraps it in an actor; :class:`InProcessExecutor` calls it
directly, which the fast tests and the benchmark use). :func:`run_shards` is the driver: it
skips the shards a resumed run already has, keeps every worker busy, writes each shard the
moment it arrives, prints progress, and stops submitting when asked.

Why a case's numbers do not depend on its shard: references and noise are drawn from the
case's own seed (``runner.case_seed``: the run's seed and the case's name), IG2's eta is per
explicand and the case builders treat items one by one, so neither a case's shard mates nor
the worker that runs it enter any draw.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from attribution_core.evaluation.shard_inputs import (
    CaseOptions,
    ShardInput,
    bundled_case_set,
    shard_cases,
)
from attribution_core.evaluation.shards import Progress, ShardOutput, ShardStore, encode_shard
from attribution_core.evaluation.types import EvaluationSettings

# Test hooks, read by the driver and handed to workers (so that they reach workers on any
# cluster): the worker that gets shard CRASH_SHARD exits at once, the first time only (the
# flag file marks that it happened), as a killed or out-of-memory worker would.
CRASH_SHARD_ENV = "ATTRIBUTION_CORE_TEST_CRASH_SHARD"
CRASH_FLAG_ENV = "ATTRIBUTION_CORE_TEST_CRASH_FLAG"
STOP_AFTER_SHARDS_ENV = "ATTRIBUTION_CORE_TEST_STOP_AFTER_SHARDS"
# Every shard but the first takes at least this many seconds, so that a test's Ctrl-C lands
# while shards are still running however fast the machine is.
SLOW_SHARDS_ENV = "ATTRIBUTION_CORE_TEST_SLOW_SHARDS"


@dataclass(frozen=True)
class CrashOnce:
    shard_index: int
    flag_file: str

    @staticmethod
    def from_environment() -> CrashOnce | None:
        index, flag = os.environ.get(CRASH_SHARD_ENV), os.environ.get(CRASH_FLAG_ENV)
        return None if index is None or flag is None else CrashOnce(int(index), flag)


def slow_shards_from_environment() -> float:
    """Seconds every shard but the first takes at least (test hook; 0: no delay)."""
    return float(os.environ.get(SLOW_SHARDS_ENV, "0") or 0)


class ShardWorker:
    """One model, loaded once, evaluating shard after shard."""

    def __init__(self, model_name: str, device: str | None, options: CaseOptions,
                 settings: EvaluationSettings, threads: int | None = None,
                 crash: CrashOnce | None = None, slow_seconds: float = 0.0) -> None:
        import torch

        from attribution_core.models import load_model

        if threads is not None:
            torch.set_num_threads(max(1, threads))
        self.loaded = load_model(model_name, device=device)
        self.options = options
        self.settings = settings
        self.crash = crash
        self.slow_seconds = slow_seconds
        self._bundled: tuple[Any, ...] | None = None

    def describe(self) -> dict[str, Any]:
        from attribution_core.devices import describe_device

        spec = self.loaded.spec
        return {"weights_hash": self.loaded.weights_hash, "device": describe_device(
            self.loaded.device), "title": spec.title, "modality": spec.modality,
            "class_names": [str(n) for n in spec.class_names], "name": spec.name}

    def run(self, shard: ShardInput) -> ShardOutput:
        from attribution_core.evaluation.runner import evaluate

        self._maybe_crash(shard)
        started = time.perf_counter()
        bundled = None
        if shard.kind == "bundled":
            if self._bundled is None:
                self._bundled = bundled_case_set(self.loaded, self.options)
            bundled = self._bundled
        cases, notes = shard_cases(self.loaded, shard, self.options, bundled)
        result = evaluate(self.loaded, cases, self.settings) if cases else None
        outcomes = result.cases if result is not None else ()
        if shard.index > 0 and self.slow_seconds > 0:
            time.sleep(max(0.0, self.slow_seconds - (time.perf_counter() - started)))
        return encode_shard(shard.index, outcomes, notes, time.perf_counter() - started,
                            {"start": shard.start, "stop": shard.stop, "pid": os.getpid()})

    def _maybe_crash(self, shard: ShardInput) -> None:
        if self.crash is None or shard.index != self.crash.shard_index:
            return
        flag = Path(self.crash.flag_file)
        if flag.exists():
            return
        flag.write_text(str(os.getpid()), encoding="utf-8")
        os._exit(17)  # no clean-up, no exception: the process is simply gone


class Executor(Protocol):
    """Where shards run: ``submit`` when ``has_free``, then ``next_done`` in any order."""

    def has_free(self) -> bool: ...

    def submit(self, shard: ShardInput) -> None: ...

    def has_pending(self) -> bool: ...

    def next_done(self) -> ShardOutput: ...


class InProcessExecutor:
    """Shards run one after another in this process (no Ray); for tests and baselines."""

    def __init__(self, worker: ShardWorker) -> None:
        self.worker = worker
        self._done: deque[ShardOutput] = deque()

    def has_free(self) -> bool:
        return not self._done

    def submit(self, shard: ShardInput) -> None:
        self._done.append(self.worker.run(shard))

    def has_pending(self) -> bool:
        return bool(self._done)

    def next_done(self) -> ShardOutput:
        return self._done.popleft()


@dataclass(frozen=True)
class ShardedOutcome:
    """What the driver did: shards computed now, shards reused, and whether it stopped early."""

    indices_done: tuple[int, ...]
    computed: tuple[int, ...]
    reused: tuple[int, ...]
    stopped: bool
    seconds: float


def run_shards(executor: Executor, shards: Iterable[ShardInput], store: ShardStore,
               already_done: set[int], total_cases: int, *,
               should_stop: Callable[[], bool] = lambda: False,
               report: Callable[[str], None] = lambda line: None) -> ShardedOutcome:
    """Run every shard not in ``already_done``; each result is written as it arrives."""
    started = time.perf_counter()
    stop_after = os.environ.get(STOP_AFTER_SHARDS_ENV)
    pending_inputs: Iterator[ShardInput] = iter(shards)
    computed: list[int] = []
    progress = Progress(total_cases)
    stopped = exhausted = False

    def wants_stop() -> bool:
        return should_stop() or (stop_after is not None and len(computed) >= int(stop_after))

    def next_input() -> ShardInput | None:
        nonlocal exhausted
        for shard in pending_inputs:
            if shard.index not in already_done:
                return shard
            progress.reuse(shard.size)
        exhausted = True
        return None

    while True:
        while not exhausted and not stopped and executor.has_free():
            if wants_stop():
                stopped = True
                break
            shard = next_input()
            if shard is not None:
                executor.submit(shard)
        if not executor.has_pending():
            break
        output = executor.next_done()
        store.write(output)
        computed.append(output.index)
        report(f"shard {output.index} done ({output.n_cases} cases, "
               f"{output.seconds:.1f} s): {progress.add(output.n_cases)}")
        if wants_stop():
            stopped = True  # the shards already running still finish and are written
    # Shards on disk from an earlier run of this fingerprint count even when this run stopped
    # before reaching them in the input.
    done = tuple(sorted(set(computed) | already_done))
    return ShardedOutcome(done, tuple(sorted(computed)), tuple(sorted(already_done)), stopped,
                          time.perf_counter() - started)
