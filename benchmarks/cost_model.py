"""The cost model's error on real runs: estimated vs actual gradient evaluations and seconds.

    PYTHONPATH=. python -m benchmarks.cost_model [--threads N] [--device cpu] [--out FILE]

Ten runs the pages make (image, text and tabular explanations with IG, IG2 and both, a tabular
CSV batch, two Evaluate runs). For each: the estimate the page would show before the click
(rows from the settings, seconds from the measured per-row cost), then the run itself, with the
model's rows counted by a forward pre-hook (rows with gradients vs forward-only rows) and its
wall time. Prints JSON: one row per run and the ratios actual / estimated.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attribution_core.cost import CostEstimate, forget_row_costs
from attribution_core.evaluation import EvaluationSettings
from attribution_core.evaluation.cases import bundled_cases
from attribution_core.evaluation.runner import evaluate
from attribution_core.models import load_model
from attribution_core.models.spec import LoadedModel
from benchmarks.common import dump_report, environment
from dashboard.image import logic as image_logic
from dashboard.tabular import logic as tabular_logic
from dashboard.text import logic as text_logic
from dashboard.widgets import run_costs

REPEATS = 5
TEXT = "our hotel felt wonderful this week , the staff were kind ."


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    estimate: Callable[[LoadedModel], CostEstimate]
    run: Callable[[LoadedModel], Any]


class RowCounter:
    """Counts the rows the model's module sees, with gradients and without."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.gradient_rows = 0
        self.forward_rows = 0
        self.gradient_calls = 0
        self.forward_calls = 0
        self._handle = loaded.module.register_forward_pre_hook(self._count)

    def _count(self, _module: Any, args: tuple[Any, ...]) -> None:
        first = args[0] if args else None
        if not isinstance(first, torch.Tensor):
            return
        rows = int(first.shape[0]) if first.dim() > 0 else 1
        if torch.is_grad_enabled() and first.requires_grad:
            self.gradient_rows += rows
            self.gradient_calls += 1
        else:
            self.forward_rows += rows
            self.forward_calls += 1

    def close(self) -> None:
        self._handle.remove()


def _image_case(method: str, n_steps: int | str, refs: int = 4, ig2_steps: int = 16,
                model: str = "digits_cnn") -> Case:
    settings = image_logic.ImageSettings(method=method, target=3, n_steps=n_steps,  # type: ignore[arg-type]
                                         n_references=refs, ig2_steps=ig2_steps)

    def inputs(loaded: LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
        assert loaded.spec.samples is not None
        x = image_logic.model_input(loaded, next(iter(loaded.spec.samples())).value)
        prep = image_logic.preprocessing_for(loaded, x)
        return x, image_logic.build_baseline("black", loaded, x, prep)

    return Case(f"{model} {method}, {n_steps} steps, IG2 {ig2_steps} x {refs}", model,
                lambda m: run_costs.image_cost(m, inputs(m)[0], settings,
                                               image_logic.CURVE_FRACTIONS),
                lambda m: image_logic.run_explanation(m, *inputs(m), settings, cache=None))


def _text_case(method: str, n_steps: int, refs: int = 4, ig2_steps: int = 16,
               model: str = "cue_transformer") -> Case:
    settings = text_logic.TextSettings(method=method, target=1, n_steps=n_steps,  # type: ignore[arg-type]
                                       n_references=refs, ig2_steps=ig2_steps)

    def estimate(loaded: LoadedModel) -> CostEstimate:
        encoded = text_logic.encode(loaded, TEXT)
        return run_costs.text_cost(loaded, text_logic.embeddings(loaded, encoded.input_ids),
                                   encoded.attention_mask, settings, text_logic.CURVE_DIVISORS)

    return Case(f"{model} {method}, {n_steps} steps, IG2 {ig2_steps} x {refs}", model,
                estimate, lambda m: text_logic.run_explanation(
                    m, text_logic.encode(m, TEXT), TEXT, settings, cache=None))


def _tabular_rows(loaded: LoadedModel, count: int) -> np.ndarray:
    """``count`` raw rows: the data set's rows, repeated when it holds fewer."""
    pool = loaded.spec.reference_pool
    assert pool is not None and loaded.postprocess is not None
    inputs = pool().inputs
    picked = inputs[torch.arange(count) % inputs.shape[0]]
    return np.asarray(loaded.postprocess(picked), dtype=np.float64).reshape(count, -1)


def _tabular_case(method: str, n_steps: int, csv_rows: int = 0) -> Case:
    settings = tabular_logic.TabularSettings(method=method, target=0, n_steps=n_steps,  # type: ignore[arg-type]
                                             n_references=8, ig2_steps=32)

    def estimate(loaded: LoadedModel) -> CostEstimate:
        row = tabular_logic.model_row(loaded, _tabular_rows(loaded, 1)[0])
        return run_costs.tabular_cost(loaded, row, settings, tabular_logic.CURVE_DIVISORS,
                                      csv_rows)

    def run(loaded: LoadedModel) -> Any:
        rows = _tabular_rows(loaded, max(csv_rows, 1))
        tabular_logic.run_row(loaded, rows[0], settings, cache=None)
        if csv_rows > 1:
            tabular_logic.run_batch(loaded, rows, list(range(csv_rows)), settings, cache=None)

    label = f"wine_mlp {method}, {n_steps} steps" + (f", CSV of {csv_rows}" if csv_rows else "")
    return Case(label, "wine_mlp", estimate, run)


def _evaluate_case(model: str, n_cases: int, settings: EvaluationSettings) -> Case:
    def cases(loaded: LoadedModel) -> Any:
        return bundled_cases(loaded, n_cases).cases

    return Case(f"Evaluate {model}, {n_cases} cases, {len(settings.methods)} methods", model,
                lambda m: run_costs.evaluate_cost(m, cases(m), settings),
                lambda m: evaluate(m, cases(m), settings))


def cases() -> list[Case]:
    fast_eval = EvaluationSettings(ig_steps=16, ig2_steps=8, ig2_references=2,
                                   smoothgrad_samples=4, gradient_shap_samples=8, curve_points=11)
    return [
        _image_case("IG", "auto"), _image_case("IG2", 64),
        _image_case("both", 256, refs=8, ig2_steps=32),
        _image_case("both", 256, refs=8, ig2_steps=32, model="shapes_cnn"),
        _text_case("both", 64), _text_case("both", 32, ig2_steps=8, model="minilm_sentiment"),
        _tabular_case("both", 64), _tabular_case("IG", 64, csv_rows=100),
        _evaluate_case("wine_mlp", 20, fast_eval), _evaluate_case("digits_cnn", 10, fast_eval),
    ]


def _timed_run(case: Case, loaded: LoadedModel) -> float:
    started = time.perf_counter()
    case.run(loaded)
    return time.perf_counter() - started


def measure(case: Case, models: dict[str, LoadedModel]) -> dict[str, Any]:
    loaded = models.setdefault(case.model, load_model(case.model))
    case.run(loaded)  # warm-up: lazy initialisation is charged to neither side
    estimate = case.estimate(loaded)  # the row cost is measured here, as a page would
    counter = RowCounter(loaded)
    try:
        times = [_timed_run(case, loaded)]  # counted once: every repeat is the same run
    finally:
        counter.close()
    times += [_timed_run(case, loaded) for _ in range(REPEATS - 1)]
    seconds = statistics.median(times)  # the machine may be shared: one slow run is noise
    return {
        "run": case.name,
        "estimated_evaluations": estimate.evaluations,
        "actual_gradient_rows": counter.gradient_rows,
        "estimated_forward_rows": estimate.forward_rows,
        "actual_forward_rows": counter.forward_rows,
        "estimated_calls": estimate.calls,
        "actual_gradient_calls": counter.gradient_calls,
        "actual_forward_calls": counter.forward_calls,
        "estimated_seconds": round(estimate.seconds or float("nan"), 4),
        "actual_seconds": round(seconds, 4),
        "evaluations_ratio": round(counter.gradient_rows / max(estimate.evaluations, 1), 3),
        "seconds_ratio": round(seconds / estimate.seconds, 3) if estimate.seconds else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    forget_row_costs()
    models: dict[str, LoadedModel] = {}
    rows = [measure(case, models) for case in cases()]
    ratios = [r["seconds_ratio"] for r in rows if r["seconds_ratio"] is not None]
    report = {
        "benchmark": "cost_model",
        "environment": environment(next(iter(models.values())).device),
        "runs": rows,
        "seconds_ratio_median": round(statistics.median(ratios), 3) if ratios else None,
        "seconds_ratio_range": [min(ratios), max(ratios)] if ratios else None,
        "evaluations_within_estimate": all(r["actual_gradient_rows"] <=
                                           r["estimated_evaluations"] for r in rows),
    }
    print(dump_report(report, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
