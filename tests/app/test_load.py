"""Load test: K sessions at once on shared models, through the work queue, each result equal to
the same run alone.

Each session is a thread that calls the run functions the pages call (image, text and tabular
explanations, IG2 included, on one model object per name shared by every session), through a
CPU work queue, as the pages do. Everything stays in this process: no port is opened. The
results are compared with the same runs done one at a time before the load; peak RSS is
printed (a measurement, not an assertion).
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from attribution_core.models import load_model
from attribution_core.models.spec import LoadedModel
from attribution_core.work_queue import Job, WorkQueue
from dashboard.image import logic as image_logic
from dashboard.tabular import logic as tabular_logic
from dashboard.text import logic as text_logic

pytestmark = [pytest.mark.slow, pytest.mark.app]
SESSIONS = 4
JOIN_SECONDS = 600.0  # a bound on the whole test, not a speed assertion
TEXT = "our hotel felt wonderful this week ."


@dataclass(frozen=True)
class Workload:
    name: str
    run: Callable[[Callable[[str, float], None]], dict[str, np.ndarray]]


def _arrays(**tensors: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().double().numpy() for k, v in tensors.items() if v is not None}


def _image_workloads(models: dict[str, LoadedModel]) -> list[Workload]:
    loaded = models["digits_cnn"]
    assert loaded.spec.samples is not None, "digits has bundled samples"
    picture = next(iter(loaded.spec.samples())).value
    inputs = image_logic.model_input(loaded, picture)
    prep = image_logic.preprocessing_for(loaded, inputs)
    baseline = image_logic.build_baseline("black", loaded, inputs, prep)

    def make(method: str) -> Workload:
        settings = image_logic.ImageSettings(method=method, target=3, n_steps=32,  # type: ignore[arg-type]
                                             n_references=3, ig2_steps=8)

        def run(progress: Callable[[str, float], None]) -> dict[str, np.ndarray]:
            out = image_logic.run_explanation(loaded, inputs, baseline, settings, cache=None,
                                              progress=progress)
            return _arrays(ig=None if out.ig is None else out.ig.attributions,
                           ig2=None if out.ig2 is None else out.ig2.attributions)

        return Workload(f"image {method}", run)

    return [make("IG"), make("IG2"), make("both")]


def _text_workloads(models: dict[str, LoadedModel]) -> list[Workload]:
    loaded = models["cue_transformer"]
    encoded = text_logic.encode(loaded, TEXT)

    def make(method: str) -> Workload:
        settings = text_logic.TextSettings(method=method, target=1, n_steps=16,  # type: ignore[arg-type]
                                           n_references=2, ig2_steps=4)

        def run(progress: Callable[[str, float], None]) -> dict[str, np.ndarray]:
            out = text_logic.run_explanation(loaded, encoded, TEXT, settings, cache=None,
                                             progress=progress)
            return _arrays(ig=None if out.ig is None else out.ig.attributions,
                           ig2=None if out.ig2 is None else out.ig2.result.attributions)

        return Workload(f"text {method}", run)

    return [make("IG"), make("IG2")]


def _tabular_workloads(models: dict[str, LoadedModel]) -> list[Workload]:
    loaded = models["wine_mlp"]
    spec = loaded.spec
    assert spec.reference_pool is not None, "wine has its data set"
    assert loaded.postprocess is not None, "a tabular model maps rows back to raw values"
    raw = np.asarray(loaded.postprocess(spec.reference_pool().inputs[:1]),
                     dtype=np.float64).reshape(-1)  # data set row 0, as the page starts

    def make(method: str) -> Workload:
        settings = tabular_logic.TabularSettings(method=method, target=0, n_steps=32,  # type: ignore[arg-type]
                                                 n_references=4, ig2_steps=8)

        def run(progress: Callable[[str, float], None]) -> dict[str, np.ndarray]:
            out = tabular_logic.run_row(loaded, raw, settings, cache=None, progress=progress)
            return _arrays(ig=None if out.ig is None else out.ig.attributions,
                           ig2=None if out.ig2 is None else out.ig2.result.attributions)

        return Workload(f"tabular {method}", run)

    return [make("IG"), make("both")]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


@pytest.mark.parametrize("workers", [2, SESSIONS], ids=["cpu-default-2", "all-at-once"])
def test_sessions_at_once_get_the_results_they_get_alone(workers: int) -> None:
    torch.manual_seed(0)
    models = {name: load_model(name, "cpu")
              for name in ("digits_cnn", "cue_transformer", "wine_mlp")}
    workloads = _image_workloads(models) + _text_workloads(models) + _tabular_workloads(models)
    alone = {w.name: w.run(lambda _t, _f: None) for w in workloads}
    rss_before = _peak_rss_mib()

    queue = WorkQueue("load-test", workers=workers)
    start = threading.Barrier(SESSIONS)
    results: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    errors: list[str] = []
    started_order: list[str] = []
    order_lock = threading.Lock()

    def session(index: int) -> None:
        # Every session runs every workload, each starting at a different one (mixed load).
        mine = workloads[index % len(workloads):] + workloads[:index % len(workloads)]
        try:
            start.wait(JOIN_SECONDS)
            for workload in mine:
                def work(job: Job, workload: Workload = workload) -> dict[str, np.ndarray]:
                    with order_lock:
                        started_order.append(f"s{index}:{workload.name}")
                    return workload.run(job.progress(lambda _t, _f: None))

                results[(index, workload.name)] = queue.run(f"session-{index}", work,
                                                            workload.name)
        except Exception as error:  # collected: every session's failure is reported
            errors.append(f"session {index}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=session, args=(i,)) for i in range(SESSIONS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    seconds = time.perf_counter() - started
    assert not any(t.is_alive() for t in threads), f"every session finished in {JOIN_SECONDS} s"
    print(f"\nload test, {SESSIONS} sessions x {len(workloads)} runs, {workers} workers: "
          f"{seconds:.1f} s; peak RSS {rss_before:.0f} MiB before, {_peak_rss_mib():.0f} MiB "
          f"after; start order {started_order}")
    assert not errors, f"no session raised: {errors}"
    assert len(results) == SESSIONS * len(workloads), f"every run returned: {len(results)}"
    assert queue.snapshot() == (), f"every turn was given back: {queue.snapshot()}"
    mismatches = []
    for (index, name), arrays in results.items():
        for part, expected in alone[name].items():
            got = arrays.get(part)
            if got is None or not np.array_equal(got, expected):
                worst = float("nan") if got is None else float(np.abs(got - expected).max())
                mismatches.append(f"session {index} {name} {part}: max |diff| {worst:.3g}")
    assert not mismatches, f"results under load equal the runs alone: {mismatches}"
