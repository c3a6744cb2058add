"""The Evaluate feature on 50 digits_cnn bundled cases: time, phase split, faithfulness, IG2 vs IG.

    PYTHONPATH=. python -m benchmarks.evaluate [--quick] [--threads N] [--n-cases 50] [--out FILE]

Prints JSON. One ``evaluate`` run (all methods, deletion/insertion and random-order curves)
is timed as a whole; its progress messages are time-stamped, so the seconds between them split
the run into attribution, metric and reference-curve phases without touching the runner. In the
same process, plain Integrated Gradients over the same cases (same steps, same batches) gives
the denominator of ``ratio_evaluation_vs_ig`` (the whole evaluation costs that many IG runs)
and of ``ratio_metrics_vs_ig`` (the curves of every method plus the random reference alone).
IG2 vs IG is compared per case (win rates) and by the paired mean AUC difference with a seeded
bootstrap 95% interval, twice: with removed pixels replaced by IG's own (black) baseline, and
by a blurred copy of the image (no method's baseline). ``--quick``: 12 cases, four methods.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from attribution_core.evaluation.cases import bundled_cases
from attribution_core.evaluation.runner import batches, evaluate
from attribution_core.evaluation.types import (
    ALL_METHODS,
    METHOD_IG,
    METHOD_IG2,
    METHOD_SALIENCY,
    METHOD_SMOOTHGRAD,
    EvalCase,
    EvaluationResult,
    EvaluationSettings,
)
from attribution_core.methods.ig import integrated_gradients
from attribution_core.models import load_model
from benchmarks.common import dump_report, environment, synchronise

MODEL = "digits_cnn"
QUICK_CASES = 12
QUICK_METHODS = (METHOD_IG, METHOD_IG2, METHOD_SALIENCY, METHOD_SMOOTHGRAD)
BOOTSTRAP_RESAMPLES = 4000
NEUTRAL_REMOVAL = "blurred"


class PhaseClock:
    """Time-stamps the runner's progress messages; each gap is charged to the phase the
    earlier message announced (attribution of a method, its curves, or the random reference)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._phase: str | None = None
        self._since = time.perf_counter()

    def __call__(self, done: int, total: int, message: str) -> None:
        now = time.perf_counter()
        if self._phase is not None:
            self.seconds[self._phase] = self.seconds.get(self._phase, 0.0) + now - self._since
        text = message.split(": ", 1)[-1]
        if text.endswith(" attributions"):
            self._phase = "attribution"
        elif text.endswith("deletion and insertion curves"):
            self._phase = "metrics"
        elif text.startswith("random-order"):
            self._phase = "random_reference"
        else:
            self._phase = None  # "n of m cases done": the gap to the next batch is bookkeeping
        self._since = now


def ig_alone_seconds(loaded: Any, cases: Sequence[EvalCase], settings: EvaluationSettings
                     ) -> float:
    """Plain IG over the cases in the runner's batches (same steps and quadrature)."""
    device = loaded.device
    synchronise(device)
    started = time.perf_counter()
    for batch in batches(list(cases), settings.cases_per_batch):
        x = torch.cat([c.inputs for c in batch]).to(device)
        base = torch.cat([c.baseline for c in batch]).to(device)
        integrated_gradients(loaded.forward, x, baselines=base, target=[c.target for c in batch],
                             n_steps=settings.ig_steps, method=settings.quadrature)
    synchronise(device)
    return time.perf_counter() - started


def bootstrap_mean(differences: np.ndarray, seed: int) -> dict[str, float | int | None]:
    values = differences[np.isfinite(differences)]
    if values.size == 0:
        return {"n": 0, "mean": None, "ci95_low": None, "ci95_high": None}
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(BOOTSTRAP_RESAMPLES, values.size))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"n": int(values.size), "mean": _round(float(values.mean())),
            "ci95_low": _round(float(low)), "ci95_high": _round(float(high))}


def _round(value: float) -> float | None:
    return float(f"{value:.4g}") if math.isfinite(value) else None


def _auc(result: EvaluationResult, method: str, kind: str) -> np.ndarray:
    return np.array([getattr(c.outcome(method), f"{kind}_auc") for c in result.cases],
                    dtype=np.float64)


def ig2_vs_ig(result: EvaluationResult, seed: int) -> dict[str, Any]:
    """Per-case wins (IG2's deletion AUC lower / insertion AUC higher than IG's) and paired
    differences IG2 - IG (negative is better for deletion, positive for insertion)."""
    comparison: dict[str, Any] = {}
    for kind, better in (("deletion", np.less), ("insertion", np.greater)):
        ig, other = _auc(result, METHOD_IG, kind), _auc(result, METHOD_IG2, kind)
        valid = np.isfinite(ig) & np.isfinite(other)
        comparison[f"{kind}_win_rate_ig2"] = _round(float(better(other[valid], ig[valid]).mean())) \
            if valid.any() else None
        comparison[f"{kind}_auc_difference_ig2_minus_ig"] = bootstrap_mean(other - ig, seed)
    return comparison


def method_table(result: EvaluationResult) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for summary in result.summaries():
        table[summary.method] = {
            "deletion_auc_mean": _round(summary.deletion_auc_mean),
            "deletion_auc_median": _round(summary.deletion_auc_median),
            "insertion_auc_mean": _round(summary.insertion_auc_mean),
            "insertion_auc_median": _round(summary.insertion_auc_median),
            "beats_random_deletion_rate": _round(summary.beats_random_deletion_rate),
            "beats_random_insertion_rate": _round(summary.beats_random_insertion_rate),
            "abs_relative_delta_median": _round(summary.abs_relative_delta_median),
            "seconds": _round(summary.seconds_total),
        }
    return table


def random_reference(result: EvaluationResult) -> dict[str, float | None]:
    return {f"{kind}_auc_mean": _round(float(np.nanmean([getattr(c, f"random_{kind}_auc")
                                                          for c in result.cases])))
            for kind in ("deletion", "insertion")}


def neutral_ground(loaded: Any, n_cases: int, settings: EvaluationSettings) -> dict[str, Any]:
    """The same cases and baselines, with blurred pixels as the curves' removal value."""
    neutral = dataclasses.replace(settings, methods=QUICK_METHODS, removal=NEUTRAL_REMOVAL)
    cases = bundled_cases(loaded, n_cases, removal=NEUTRAL_REMOVAL).cases
    result = evaluate(loaded, cases, neutral)
    return {
        "removal": NEUTRAL_REMOVAL, "methods": method_table(result),
        "random_reference": random_reference(result),
        "ig2_vs_ig": ig2_vs_ig(result, settings.seed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_CASES} cases, methods {', '.join(QUICK_METHODS)}")
    parser.add_argument("--n-cases", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is steadier on a shared, loaded machine)")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    n_cases = min(args.n_cases, QUICK_CASES) if args.quick else args.n_cases
    settings = EvaluationSettings(methods=QUICK_METHODS if args.quick else ALL_METHODS)
    loaded = load_model(MODEL)
    cases = bundled_cases(loaded, n_cases).cases

    # one small warm-up so lazy initialisation is not charged to the first method timed
    evaluate(loaded, cases[:2], EvaluationSettings(methods=settings.methods, ig_steps=4,
                                                   ig2_steps=4, smoothgrad_samples=2,
                                                   gradient_shap_samples=2))
    clock = PhaseClock()
    started = time.perf_counter()
    result = evaluate(loaded, cases, settings, progress=clock)
    wall = time.perf_counter() - started
    ig_seconds = ig_alone_seconds(loaded, cases, settings)
    phases = {k: _round(v) for k, v in clock.seconds.items()}
    measured = sum(clock.seconds.values())
    report: dict[str, Any] = {
        "benchmark": "evaluate", "model": MODEL, "quick": args.quick,
        "environment": environment(loaded.device),
        "n_cases": len(result.cases), "settings": {**settings.record(),
                                                   "methods": list(settings.methods)},
        "wall_seconds": _round(wall),
        "phase_seconds": phases,
        "metrics_share": _round(clock.seconds.get("metrics", 0.0) / measured)
        if measured else None,
        "attribution_share": _round(clock.seconds.get("attribution", 0.0) / measured)
        if measured else None,
        "random_reference_share": _round(clock.seconds.get("random_reference", 0.0) / measured)
        if measured else None,
        "ig_alone_seconds": _round(ig_seconds),
        "seconds_per_case": _round(wall / max(len(result.cases), 1)),
        "ratio_evaluation_vs_ig": _round(wall / ig_seconds) if ig_seconds > 0 else None,
        # the faithfulness metrics alone (every method's curves + the random reference), in IGs
        "ratio_metrics_vs_ig": _round((clock.seconds.get("metrics", 0.0)
                                       + clock.seconds.get("random_reference", 0.0)) / ig_seconds)
        if ig_seconds > 0 else None,
        "methods": method_table(result),
        "random_reference": random_reference(result),
        "ig2_vs_ig": ig2_vs_ig(result, settings.seed),
        # The curves above replace removed pixels by IG's own baseline (black), which favours
        # IG; with a blurred image as the removal value neither method integrates from it.
        "blurred_removal": neutral_ground(loaded, n_cases, settings),
    }
    print(dump_report(report, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
