"""The driver's peak memory of ``explain --engine ray`` as the cases grow (``benchmarks.scale``).

Each run is a child process (``python -m benchmarks.scale_memory --child OUT -- ARGS``) that
runs the command line in-process and writes its own peak resident memory: ``VmHWM`` from
``/proc/self/status``, the high-water mark of this process's address space, which starts anew
at ``exec``. (``getrusage(RUSAGE_SELF).ru_maxrss`` would not do: Linux carries it over from
the parent at fork and keeps it across ``exec``, so every child reported the benchmark's own
836 MB.) Ray's workers and daemons are other processes and are not counted.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MEMORY_MODEL = "wine_mlp"  # the cheapest bundled model: 13 features, a small MLP
MEMORY_SIZES = (2_000, 20_000)
MEMORY_SHARD_SIZE = 250
MEMORY_WORKERS = 2
MEMORY_IG_STEPS = 8
_ROOT = Path(__file__).resolve().parents[1]


def write_rows(path: Path, n_rows: int, seed: int = 0, batch: int = 1_000) -> None:
    """``n_rows`` rows in raw units for the memory model (its reference rows, each value
    scaled by 1 + 1 % noise), written to Parquet in batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from attribution_core.evaluation.cases import feature_names
    from attribution_core.models import load_model
    from attribution_core.models.inputs import pool_raw

    loaded = load_model(MEMORY_MODEL, device="cpu")
    names = list(feature_names(loaded))
    pool = np.asarray(pool_raw(loaded, loaded.spec.reference_pool()), dtype=np.float64)  # type: ignore[misc]
    rng = np.random.default_rng(seed)
    schema = pa.schema([pa.field(name, pa.float64()) for name in names])
    with pq.ParquetWriter(str(path), schema) as writer:
        for start in range(0, n_rows, batch):
            count = min(batch, n_rows - start)
            rows = pool[np.arange(start, start + count) % len(pool)]
            rows = rows * (1.0 + 0.01 * rng.standard_normal(rows.shape))
            writer.write_table(pa.table({n: rows[:, i] for i, n in enumerate(names)},
                                        schema=schema))


def _command(rows: Path, n_cases: int, out: Path) -> list[str]:
    return ["explain", "--model", MEMORY_MODEL, "--input", str(rows), "--n-cases", str(n_cases),
            "--methods", "IG", "--ig-steps", str(MEMORY_IG_STEPS), "--device", "cpu",
            "--engine", "ray", "--workers", str(MEMORY_WORKERS),
            "--shard-size", str(MEMORY_SHARD_SIZE), "--out", str(out)]


def driver_memory(sizes: Sequence[int] = MEMORY_SIZES) -> dict[str, Any]:
    """Each size in its own child process; the peaks, and the largest over the smallest."""
    work = Path(tempfile.mkdtemp(prefix="bench-scale-memory-"))
    rows = work / "rows.parquet"
    write_rows(rows, max(sizes))
    runs: dict[str, dict[str, Any]] = {}
    for n_cases in sizes:
        out = work / f"out-{n_cases}"
        measured = work / f"rss-{n_cases}.json"
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(_ROOT), os.environ.get("PYTHONPATH")) if p),
            "RAY_USAGE_STATS_ENABLED": "0"}
        environment.pop("RAY_ADDRESS", None)  # a Ray of its own, on this machine
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale_memory", "--child", str(measured), "--",
             *_command(rows, n_cases, out)], capture_output=True, text=True, env=environment,
            cwd=work, check=False)
        seconds = time.perf_counter() - started
        if child.returncode != 0:
            raise RuntimeError(f"the {n_cases}-case run failed: {child.stderr[-2000:]}")
        summary = json.loads(child.stdout.strip().splitlines()[-1])
        peak = json.loads(measured.read_text(encoding="utf-8"))
        files = {name: round((out / name).stat().st_size / 2**20, 2) for name in (
            "evaluation.json", "evaluation.html", "evaluation_attributions.safetensors",
            "evaluation_cases.parquet") if (out / name).is_file()}
        runs[str(n_cases)] = {
            "n_cases_done": summary["n_cases"],
            "driver_peak_rss_mb": round(peak["max_rss_kb"] / 1024, 1),
            "seconds": round(seconds, 1), "cases_per_second": round(n_cases / seconds, 1),
            "report_files_mb": files}
    small, large = runs[str(min(sizes))], runs[str(max(sizes))]
    return {"model": MEMORY_MODEL, "methods": ["IG"], "ig_steps": MEMORY_IG_STEPS,
            "workers": MEMORY_WORKERS, "shard_size": MEMORY_SHARD_SIZE, "input": "parquet",
            "runs": runs,
            "ratio_peak_rss": round(large["driver_peak_rss_mb"] / small["driver_peak_rss_mb"], 3),
            # The ratio is of the whole process (Python, torch, Ray's client: ~0.7 GB before
            # any case), so the growth per case says more about what the cases cost.
            "peak_rss_growth_mb_per_1000_cases": round(
                (large["driver_peak_rss_mb"] - small["driver_peak_rss_mb"])
                / ((max(sizes) - min(sizes)) / 1000), 3)}


def peak_rss_kb() -> int:
    """This process's own peak resident memory in KiB (VmHWM; see the module's doc)."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmHWM line")


def _child(argv: list[str]) -> int:
    """``--child OUT -- ARGS``: run the command line, then write this process's peak RSS."""
    out, arguments = Path(argv[1]), argv[3:]
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from attribution_core.evaluation.cli import main

    status = main(arguments)
    out.write_text(json.dumps({"status": status, "max_rss_kb": peak_rss_kb(),
                               "ru_maxrss_at_start_kb": inherited}), encoding="utf-8")
    return status


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child" and sys.argv[3] == "--":
        sys.exit(_child(sys.argv[1:]))
    print(json.dumps(driver_memory(), indent=2))
