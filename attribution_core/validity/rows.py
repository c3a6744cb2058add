"""Result rows of the validity suite and their seeded bootstrap intervals."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Progress = Callable[[int, int, str], None]
BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class BenchmarkRow:
    """One method on one benchmark setting: metric means over cases and their 95 % intervals.

    ``ci95[metric]`` is the seeded percentile bootstrap interval of the mean over cases.
    """

    benchmark: str
    dataset: str
    rho: float | None
    method: str
    metrics: Mapping[str, float]
    ci95: Mapping[str, tuple[float, float]]
    n_cases: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"benchmark": self.benchmark, "dataset": self.dataset,
                               "rho": self.rho, "method": self.method}
        row.update({name: _finite(value) for name, value in self.metrics.items()})
        row["ci95"] = {name: [_finite(lo), _finite(hi)] for name, (lo, hi) in self.ci95.items()}
        row["n_cases"] = self.n_cases
        row.update(self.extra)
        return row


def _finite(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


def bootstrap_ci(values: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
                 ) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``values`` (NaNs dropped), seeded."""
    clean = np.asarray(values, dtype=np.float64)
    clean = clean[np.isfinite(clean)]
    if clean.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = clean[rng.integers(0, clean.size, (resamples, clean.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def summarise(benchmark: str, dataset: str, rho: float | None, method: str,
              per_case: Mapping[str, np.ndarray], seed: int,
              extra: Mapping[str, Any] | None = None) -> BenchmarkRow:
    """Means and bootstrap intervals of per-case metric values (one array per metric)."""
    metrics = {name: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
               for name, v in per_case.items()}
    ci95 = {name: bootstrap_ci(v, seed) for name, v in per_case.items()}
    n_cases = max((int(np.isfinite(v).sum()) for v in per_case.values()), default=0)
    return BenchmarkRow(benchmark, dataset, rho, method, metrics, ci95, n_cases,
                        dict(extra or {}))
