"""The tabular validity suite: every method against exact Shapley values on the xai-bench
Gaussian benchmarks (see :mod:`attribution_core.validity.xai_bench`).

Per (data set, rho): draw 5,000 training rows, train a 5-64-64-1 Tanh MLP with Adam (seeded;
a few seconds), draw held-out explicands, compute the ground truth of the *trained model* from
its coalition values, run every method, score each case, and summarise per method.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from attribution_core.validity.rows import BenchmarkRow, Progress, summarise
from attribution_core.validity.shapley import (
    faithfulness,
    ground_truth,
    monotonicity,
    shapley_corr,
    shapley_mse,
)
from attribution_core.validity.tabular_methods import (
    MethodContext,
    TabularMethod,
    tabular_methods,
)
from attribution_core.validity.xai_bench import (
    DATASETS,
    DIMENSION,
    RHOS,
    GaussianConditional,
    XaiBenchData,
    covariance,
    make_xai_bench,
)

BENCHMARK = "xai-bench"
METRICS: tuple[str, ...] = ("shapley_corr", "mse", "faithfulness", "monotonicity")
HIDDEN = 64
TRAIN_ROWS = 5000
TRAIN_STEPS = 8000  # minibatch Adam: held-out R^2 >= 0.98 on all six settings (measured)
TRAIN_BATCH = 256
TRAIN_LR = 1e-2


@dataclass(frozen=True)
class TabularSettings:
    n_cases: int = 200
    conditional_samples: int = 2000
    seed: int = 0
    datasets: tuple[str, ...] = DATASETS
    rhos: tuple[float, ...] = RHOS
    methods: tuple[str, ...] = ()  # empty: all of :func:`tabular_methods`
    train_steps: int = TRAIN_STEPS
    # One intra-op thread while training (much faster on a busy CPU). torch's thread count is
    # process-wide, so only a process of its own (the command line) may change it: in the
    # shared dashboard it would alter other sessions' runs.
    single_thread_training: bool = False


@dataclass(frozen=True)
class TrainedModel:
    model: nn.Module  # eval mode, float32, [N, 5] -> [N, 1]
    train: XaiBenchData
    train_r2: float
    heldout_r2: float
    seconds: float


@dataclass(frozen=True)
class TabularResult:
    rows: tuple[BenchmarkRow, ...]
    models: tuple[dict[str, float | str], ...]  # per setting: R^2 and timings
    seconds: float
    per_case: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def mlp(seed: int) -> nn.Module:
    """The benchmark's model: 5-64-64-1 with Tanh, initialised from a private generator (the
    global RNG is shared by every session of the dashboard, so it is neither used nor moved)."""
    generator = torch.Generator().manual_seed(seed)
    layers = [nn.Linear(DIMENSION, HIDDEN), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, 1)]
    with torch.no_grad():
        for layer in layers:  # PyTorch's default init range, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
    return nn.Sequential(layers[0], nn.Tanh(), layers[1], nn.Tanh(), layers[2])


def train_model(name: str, rho: float, seed: int, steps: int = TRAIN_STEPS,
                single_thread: bool = False) -> TrainedModel:
    """Adam on 5,000 rows (minibatches of 256, cosine schedule), R^2 on 2,000 fresh rows."""
    started = time.perf_counter()
    train = make_xai_bench(name, rho, TRAIN_ROWS, seed=seed * 10 + 1)
    heldout = make_xai_bench(name, rho, 2000, seed=seed * 10 + 2)
    model = mlp(seed)
    x, y = train.features.float(), train.target.float()
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=TRAIN_LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    model.train()
    # Minibatches of 256 x 64 gain nothing from intra-op threads; on the shared 2-core machine
    # two spinning threads made training 15x slower (measured: 100 s against 6.5 s).
    threads = torch.get_num_threads()
    if single_thread:
        torch.set_num_threads(1)
    try:
        for _ in range(steps):
            batch = torch.randint(0, x.shape[0], (TRAIN_BATCH,), generator=generator)
            loss = nn.functional.mse_loss(model(x[batch]).squeeze(1), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    finally:
        if single_thread:
            torch.set_num_threads(threads)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return TrainedModel(model, train, _r2(model, train), _r2(model, heldout),
                        time.perf_counter() - started)


def _r2(model: nn.Module, data: XaiBenchData) -> float:
    with torch.no_grad():
        residual = model(data.features.float()).squeeze(1).double() - data.target
    return float(1.0 - residual.square().mean() / data.target.var(unbiased=False))


def score_case_metrics(attributions: torch.Tensor, truth: torch.Tensor, values: torch.Tensor
                       ) -> dict[str, np.ndarray]:
    """Per-case values of every metric (arrays [B])."""
    a = attributions.detach().double()
    return {"shapley_corr": shapley_corr(a, truth).numpy(),
            "mse": shapley_mse(a, truth).numpy(),
            "faithfulness": faithfulness(a, values).numpy(),
            "monotonicity": monotonicity(a, values).numpy()}


def _chosen(settings: TabularSettings) -> tuple[TabularMethod, ...]:
    methods = tabular_methods()
    if not settings.methods:
        return methods
    known = {m.name for m in methods}
    unknown = [name for name in settings.methods if name not in known]
    if unknown:
        raise ValueError(f"Unknown method(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(sorted(known))}.")
    return tuple(m for m in methods if m.name in settings.methods)


def run_tabular(settings: TabularSettings, progress: Progress | None = None) -> TabularResult:
    """Every chosen method on every (data set, rho); ``progress(done, total, message)``."""
    if settings.n_cases < 2:
        raise ValueError(f"n_cases must be at least 2, got {settings.n_cases!r}.")
    started = time.perf_counter()
    methods = _chosen(settings)
    settings_list = [(name, rho) for name in settings.datasets for rho in settings.rhos]
    total = len(settings_list) * (2 + len(methods))
    done = 0

    def report(message: str) -> None:
        if progress is not None:
            progress(done, total, message)

    rows: list[BenchmarkRow] = []
    models: list[dict[str, float | str]] = []
    per_case: dict[str, dict[str, np.ndarray]] = {}
    for index, (name, rho) in enumerate(settings_list):
        label = f"{name}, rho={rho:g}"
        report(f"{label}: training the MLP")
        trained = train_model(name, rho, settings.seed, settings.train_steps,
                              settings.single_thread_training)
        done += 1
        explicands = make_xai_bench(name, rho, settings.n_cases, seed=settings.seed * 10 + 3)
        x = explicands.features.float()
        report(f"{label}: ground-truth Shapley values ({2 ** DIMENSION} coalitions x "
               f"{settings.conditional_samples} samples)")
        truth_started = time.perf_counter()
        conditional = GaussianConditional(covariance(rho), settings.conditional_samples,
                                          seed=settings.seed * 1000 + index)
        truth, values = ground_truth(trained.model, x, conditional)
        truth_seconds = time.perf_counter() - truth_started
        done += 1
        models.append({"dataset": name, "rho": rho, "train_r2": round(trained.train_r2, 5),
                       "heldout_r2": round(trained.heldout_r2, 5),
                       "train_seconds": round(trained.seconds, 2),
                       "ground_truth_seconds": round(truth_seconds, 2)})
        context = MethodContext(trained.model, x, trained.train.features.float(),
                                trained.train.target, settings.seed)
        for method in methods:
            report(f"{label}: {method.name}")
            method_started = time.perf_counter()
            attributions = method.run(context)
            seconds = time.perf_counter() - method_started
            scores = score_case_metrics(attributions, truth, values)
            per_case[f"{name}|{rho:g}|{method.name}"] = scores
            rows.append(summarise(BENCHMARK, name, rho, method.name, scores,
                                  seed=settings.seed,
                                  extra={"family": method.family,
                                         "seconds": round(seconds, 3)}))
            done += 1
    report("done")
    return TabularResult(tuple(rows), tuple(models), time.perf_counter() - started, per_case)


def headline(rows: Sequence[BenchmarkRow], metric: str = "shapley_corr"
             ) -> dict[str, dict[str, float]]:
    """{setting: {method: mean metric}} for IG(mean) vs IG2(random), for summaries."""
    table: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.method in ("IG(mean)", "IG2(random)"):
            table.setdefault(f"{row.dataset} rho={row.rho:g}", {})[row.method] = \
                row.metrics[metric]
    return table
