"""``explain --engine ray``: the batch command line on Ray, sharded, streamed and resumable.

The report it writes is the one ``--engine local`` writes (``evaluation.json``, ``.html``,
``_attributions.safetensors``) plus the per-case table ``evaluation_cases.parquet``, streamed
from the shards under ``<out>/shards`` one shard at a time (``streamed_report``), so the
driver's memory does not grow with the number of cases; stdout gets the same one-line JSON
summary with the engine's figures added, stderr gets progress per shard.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from attribution_core.evaluation.command_common import CommandError, summary_line
from attribution_core.evaluation.shard_inputs import CaseOptions, plan_shards
from attribution_core.evaluation.sharded_run import (
    CrashOnce,
    Executor,
    run_shards,
    slow_shards_from_environment,
)
from attribution_core.evaluation.shards import RunHeader, ShardStore, fingerprint
from attribution_core.evaluation.types import EvaluationSettings

DEFAULT_SHARD_SIZE = 20
SCALE_ONLY = ("address", "workers", "gpus_per_worker", "cpus_per_worker")


def add_scale_arguments(explain: argparse.ArgumentParser) -> None:
    scale = explain.add_argument_group(
        "scale-out", "run the cases on Ray (pip install -r requirements-scale.txt)")
    scale.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local (default): this process; ray: sharded over Ray workers")
    scale.add_argument("--address", default=None,
                       help="Ray cluster: 'auto', 'ray://HOST:10001' or HOST:6379 (default: "
                            "start Ray on this machine, loopback only)")
    scale.add_argument("--workers", type=int, default=None,
                       help="Ray workers, each loading the model once (default 2)")
    scale.add_argument("--cpus-per-worker", type=float, default=None,
                       help="CPUs reserved per worker (default 1; also its torch threads)")
    scale.add_argument("--gpus-per-worker", type=float, default=None,
                       help="GPUs per worker, fractions allowed (default 0: CPU workers)")
    scale.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                       help=f"cases per shard, the unit of retry and resume (default "
                            f"{DEFAULT_SHARD_SIZE})")
    scale.add_argument("--resume", action="store_true",
                       help="keep the shards an interrupted run of the same command wrote in "
                            "--out and compute only the missing ones")


def check_engine_arguments(args: argparse.Namespace) -> str | None:
    """A one-line complaint when Ray-only options are given to the local engine."""
    if args.engine == "ray":
        if args.workers is not None and args.workers < 1:
            return f"--workers must be at least 1, got {args.workers}."
        return None
    given = [f"--{name.replace('_', '-')}" for name in SCALE_ONLY
             if getattr(args, name) is not None]
    if args.resume:
        given.append("--resume")
    return (f"{', '.join(given)} only apply with --engine ray." if given else None)


def _source_stamp(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {"source": "bundled"}
    stat = path.stat()
    return {"source": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def run_explain_sharded(args: argparse.Namespace, settings: EvaluationSettings,
                        should_stop: Any) -> dict[str, Any]:
    """Run the command on Ray; returns the summary line (with the engine's figures)."""
    from attribution_core.evaluation.ray_engine import RayExecutor, RaySetup, start_ray

    setup = RaySetup(address=args.address, workers=args.workers or 2,
                     cpus_per_worker=args.cpus_per_worker or 1.0,
                     gpus_per_worker=args.gpus_per_worker or 0.0)
    device = args.device or ("cuda" if setup.gpus_per_worker > 0 else "cpu")
    started = time.perf_counter()
    started_ray = start_ray(setup)
    executor = None
    try:
        options = CaseOptions(n_cases=args.n_cases, seed=args.seed, baseline=args.baseline,
                              removal=args.removal)
        executor = RayExecutor(setup, dict(
            model_name=args.model, device=device, options=options, settings=settings,
            crash=CrashOnce.from_environment(), slow_seconds=slow_shards_from_environment()))
        return _run(args, settings, options, executor, executor.describe(), should_stop,
                    started, {"engine": "ray", "workers": setup.workers,
                              "gpus_per_worker": setup.gpus_per_worker})
    finally:
        if executor is not None:
            executor.close()
        if started_ray:
            import ray

            ray.shutdown()


def _run(args: argparse.Namespace, settings: EvaluationSettings, options: CaseOptions,
         executor: Executor, model: dict[str, Any], should_stop: Any, started: float,
         engine: dict[str, Any]) -> dict[str, Any]:
    from attribution_core.evaluation.streamed_report import write_streamed_report

    source = None if args.bundled else Path(args.input)
    run = {"model": model["name"], "weights": model["weights_hash"],
           "settings": settings.record(), "options": options.__dict__,
           "shard_size": args.shard_size, "expected": str(args.expected),
           **_source_stamp(source)}
    store = ShardStore(args.out)
    already = store.prepare(fingerprint(run), run, resume=args.resume)
    total, shards = plan_shards(source, model["modality"], args.n_cases, args.shard_size,
                                expected=args.expected, skip=frozenset(already))
    print(f"Evaluating {total} case(s) of {model['name']} with {', '.join(settings.methods)} "
          f"on Ray ({engine['workers']} worker(s), {args.shard_size} cases per shard"
          + (f", {len(already)} shard(s) kept from the earlier run" if already else "")
          + ")…", file=sys.stderr, flush=True)
    outcome = run_shards(executor, shards, store, already, total, should_stop=should_stop,
                         report=lambda line: print(line, file=sys.stderr, flush=True))
    header = RunHeader(model["name"], model["title"], model["modality"], model["weights_hash"],
                       tuple(model["class_names"]), settings, model["device"], total)
    figures = {**engine, "shards_total": -(-total // args.shard_size),
               "shards_computed": len(outcome.computed), "shards_reused": len(outcome.reused),
               "shards_folder": str(store.folder), "wall_seconds": round(outcome.seconds, 3)}
    report = write_streamed_report(store, outcome.indices_done, header, args.out,
                                   cancelled=outcome.stopped, extra={
        "command": "explain", "source": "bundled" if args.bundled else str(args.input),
        "total_seconds": time.perf_counter() - started, "engine": json.loads(
            json.dumps(figures))})
    line = summary_line(model_name=header.model_name, n_cases=report.n_done,
                        n_requested=total, cancelled=outcome.stopped, seconds=report.seconds,
                        summaries=report.summaries, files=report.files)
    if not report.attributions_written:
        line["attributions"] = None  # too many maps for one file: they stay in the shards
    return {**line, "cases_table": str(report.table_path), **figures}


def settings_from_file(path: Path, data: bytes) -> EvaluationSettings:
    """Settings as recorded in a report (``data``: the file's bytes); unknown or missing keys
    are a one-line error."""
    from attribution_core.evaluation.record_encoding import ReportFormatError
    from attribution_core.evaluation.report import _settings_from

    try:
        record = json.loads(data.decode("utf-8"))
        return _settings_from(record.get("settings", record) if isinstance(record, dict)
                              else record)
    except (json.JSONDecodeError, ReportFormatError, TypeError, AttributeError) as error:
        raise CommandError(f"--settings {path}: {error}") from error


def worker_error(error: Exception) -> Exception:
    """A failure inside a Ray worker as one line: the original message, not the remote
    traceback Ray attaches (Ray's errors carry the original exception as ``cause``)."""
    cause = getattr(error, "cause", None)
    if not isinstance(cause, BaseException):
        if type(error).__module__.startswith("ray."):  # e.g. an actor out of restarts
            lines = str(error).strip().splitlines()
            return CommandError(f"Ray failed ({type(error).__name__}): "
                                f"{lines[0] if lines else 'no detail'}")
        return error
    lines = str(cause).strip().splitlines()
    reason = lines[0] if lines else type(cause).__name__
    if isinstance(cause, ValueError | OSError):
        return CommandError(f"a shard's input was refused: {reason}")
    return CommandError(f"a Ray worker failed ({type(cause).__name__}): {reason}")
