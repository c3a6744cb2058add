"""The batch evaluation on Ray vs locally: cases per second, Ray's overhead, resume cost, and
the driver's peak memory as the cases grow.

    PYTHONPATH=. python -m benchmarks.scale [--quick] [--part all|throughput|memory]
                                            [--n-cases 200] [--out FILE]

Prints JSON. Part ``throughput``: digits_cnn bundled cases with IG and IG2 (the runner's default
32 steps each):

- ``local``: one in-process ``evaluate`` over all cases (torch on every core), the batch
  command line's ``--engine local``; ``local_1_thread`` the same with one torch thread;
- ``in_process_1_thread``: the same shards and worker code as Ray, run in this process with
  one torch thread: the baseline that isolates Ray's own cost;
- ``ray_1_worker``, ``ray_2_workers``: a local Ray (loopback, no dashboard) with one and two
  1-CPU actors; startup (Ray, actors, model loads) is timed apart from the cases;
- ``resume``: a 2-worker run stopped after half its shards, then resumed; the resume's time as
  a share of a full run's, and a resume with every shard already done (list + merge only).

``ray_overhead_seconds_per_case`` is (Ray 1 worker - in-process 1 thread) / cases: scheduling,
transfer of the shard inputs and outputs, and the shard files. Ratios are of cases per second
measured in this one run, on this machine; other load on it shifts them.

Part ``memory`` (``driver_memory``): the command ``explain --engine ray`` (2 workers, shards of
250) on 2,000 and 20,000 rows of a Parquet file (wine_mlp, the cheapest bundled model: its
reference rows with 1 % noise), IG only at 8 steps. Each command runs in its own process, which
reports its own peak resident memory (VmHWM: the driver alone; Ray's workers and daemons are
other processes; see ``benchmarks.scale_memory``). ``ratio_peak_rss`` is the large run's peak
over the small one's (the check asks for < 1.5), ``peak_rss_growth_mb_per_1000_cases`` the
growth itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from attribution_core.evaluation.cases import bundled_cases
from attribution_core.evaluation.runner import evaluate
from attribution_core.evaluation.shard_inputs import CaseOptions, plan_shards
from attribution_core.evaluation.sharded_run import (
    STOP_AFTER_SHARDS_ENV,
    InProcessExecutor,
    ShardWorker,
    run_shards,
)
from attribution_core.evaluation.shards import RunHeader, ShardStore, merge
from attribution_core.evaluation.types import EvaluationSettings
from attribution_core.models import load_model
from benchmarks.common import dump_report, environment
from benchmarks.scale_memory import MEMORY_SIZES, driver_memory

MODEL = "digits_cnn"
SHARD_SIZE = 20


def _sharded(executor: Any, store_folder: Path, n_cases: int, *, resume: bool = False
             ) -> tuple[float, Any]:
    store = ShardStore(store_folder)
    already = store.prepare("benchmark", {}, resume=resume)
    started = time.perf_counter()
    total, shards = plan_shards(None, "image", n_cases, SHARD_SIZE, skip=frozenset(already))
    outcome = run_shards(executor, shards, store, already, total)
    return time.perf_counter() - started, outcome


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 60 cases; driver memory at 200 and 2,000 cases")
    parser.add_argument("--part", choices=("all", "throughput", "memory"), default="all")
    parser.add_argument("--n-cases", type=int, default=200)
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: local on the GPU, Ray workers sharing it (1/workers each)")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"benchmark": "scale", "cpu_count": os.cpu_count(),
                              "environment": environment(torch.device(args.device))}
    if args.part in ("all", "throughput"):
        report.update(_throughput(args))
    if args.part in ("all", "memory"):
        sizes = (200, 2_000) if args.quick else MEMORY_SIZES
        report["driver_memory"] = driver_memory(sizes)
    print(dump_report(report, args.out))
    return 0


def _throughput(args: argparse.Namespace) -> dict[str, Any]:
    device = args.device
    n_cases = 60 if args.quick else args.n_cases
    settings = EvaluationSettings(methods=("IG", "IG2"))
    options = CaseOptions(n_cases=n_cases)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    report: dict[str, Any] = {"model": MODEL, "n_cases": n_cases,
                              "methods": list(settings.methods), "shard_size": SHARD_SIZE}

    loaded = load_model(MODEL, device=device)
    cases = bundled_cases(loaded, n_cases).cases
    evaluate(loaded, cases[:SHARD_SIZE], settings)  # warm-up: lazy init, allocator
    started = time.perf_counter()
    local = evaluate(loaded, cases, settings)
    local_seconds = time.perf_counter() - started
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the local engine as one Ray worker runs it
    started = time.perf_counter()
    evaluate(loaded, cases, settings)
    local_1_thread_seconds = time.perf_counter() - started
    torch.set_num_threads(threads)

    worker = ShardWorker(MODEL, device, options, settings, threads=1)
    in_process_seconds, _ = _sharded(InProcessExecutor(worker), work / "in_process", n_cases)
    torch.set_num_threads(threads)

    import ray

    from attribution_core.evaluation.ray_engine import RayExecutor, RaySetup, start_ray

    worker_args = dict(model_name=MODEL, device=device, options=options, settings=settings)

    def ray_setup(workers: int) -> RaySetup:
        return RaySetup(workers=workers,
                        gpus_per_worker=1.0 / workers if device == "cuda" else 0.0)

    setup_started = time.perf_counter()
    start_ray(ray_setup(2))
    ray_start_seconds = time.perf_counter() - setup_started
    runs: dict[str, dict[str, float]] = {}
    for workers in (1, 2):
        actors_started = time.perf_counter()
        executor = RayExecutor(ray_setup(workers), worker_args)
        ray.get([actor.describe.remote() for actor in executor.actors])
        startup = time.perf_counter() - actors_started
        seconds, outcome = _sharded(executor, work / f"ray{workers}", n_cases)
        runs[f"ray_{workers}_worker{'s' if workers > 1 else ''}"] = {
            "seconds": round(seconds, 3), "cases_per_second": _rate(n_cases, seconds),
            "actor_startup_seconds": round(startup, 3)}
        if workers == 2:
            full_seconds = seconds
            os.environ[STOP_AFTER_SHARDS_ENV] = str(len(outcome.computed) // 2)
            _sharded(executor, work / "resume", n_cases)
            del os.environ[STOP_AFTER_SHARDS_ENV]
            done_before = len(ShardStore(work / "resume").done())
            resume_seconds, resumed = _sharded(executor, work / "resume", n_cases, resume=True)
            noop_seconds, _ = _sharded(executor, work / "resume", n_cases, resume=True)
            info = worker.describe()
            header = RunHeader(info["name"], info["title"], info["modality"],
                               info["weights_hash"], tuple(info["class_names"]), settings,
                               info["device"], n_cases)
            merge_started = time.perf_counter()
            merged = merge(ShardStore(work / "resume"), resumed.indices_done, header,
                           cancelled=False)
            merge_seconds = time.perf_counter() - merge_started
            assert len(merged.cases) == n_cases, "the resumed run must hold every case"
            report["resume"] = {
                "shards_done_before_resume": done_before,
                "shards_recomputed": len(resumed.computed),
                "resume_seconds": round(resume_seconds, 3),
                "resume_share_of_full_run": round(resume_seconds / full_seconds, 3),
                "resume_with_all_shards_done_seconds": round(noop_seconds, 3),
                "merge_seconds": round(merge_seconds, 3)}
        executor.close()
    ray.shutdown()

    per_worker = runs["ray_1_worker"]["seconds"]
    report.update({
        "local": {"seconds": round(local_seconds, 3), "cases_per_second":
                  _rate(len(local.cases), local_seconds), "torch_threads": threads},
        "local_1_thread": {"seconds": round(local_1_thread_seconds, 3),
                           "cases_per_second": _rate(n_cases, local_1_thread_seconds)},
        "in_process_1_thread": {"seconds": round(in_process_seconds, 3),
                                "cases_per_second": _rate(n_cases, in_process_seconds)},
        **runs,
        "ray_start_seconds": round(ray_start_seconds, 3),
        "ratio_ray_1_worker_vs_local": round(local_seconds / per_worker, 3),
        "ratio_ray_2_workers_vs_local": round(
            local_seconds / runs["ray_2_workers"]["seconds"], 3),
        "ratio_ray_1_worker_vs_local_1_thread": round(local_1_thread_seconds / per_worker, 3),
        "ratio_ray_2_workers_vs_local_1_thread": round(
            local_1_thread_seconds / runs["ray_2_workers"]["seconds"], 3),
        "ratio_ray_2_workers_vs_1_worker": round(
            per_worker / runs["ray_2_workers"]["seconds"], 3),
        "ray_overhead_seconds_per_case": round((per_worker - in_process_seconds) / n_cases, 4),
    })
    return report


if __name__ == "__main__":
    sys.exit(main())
