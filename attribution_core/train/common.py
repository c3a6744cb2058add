"""Shared pieces of the training scripts: seeding, a plain mini-batch loop, saving with metadata."""

from __future__ import annotations

import argparse
import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from attribution_core.datasets.splits import SPLIT_SEED
from attribution_core.models.assets import save_weights, write_metadata


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4


def seed_everything(seed: int) -> None:
    """Fix every random source training touches (and pin torch to deterministic kernels)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def fit(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, config: TrainConfig,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        forward_kwargs: dict[str, torch.Tensor] | None = None) -> list[float]:
    """Adam over shuffled mini-batches (the shuffle uses a generator seeded from the config).

    ``forward_kwargs`` are per-row tensors sliced alongside the inputs (e.g. attention masks).
    Returns the mean training loss of every epoch.
    """
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    losses: list[float] = []
    model.train()
    # Near convergence gradients turn subnormal and CPU float maths slows down many times over;
    # flushing them to zero keeps training fast (restored afterwards: the flag is global).
    torch.set_flush_denormal(True)
    try:
        _epochs(model, inputs, targets, config, loss_fn, forward_kwargs, generator, optimiser,
                losses)
    finally:
        torch.set_flush_denormal(False)
    model.eval()
    return losses


def _epochs(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, config: TrainConfig,
            loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
            forward_kwargs: dict[str, torch.Tensor] | None, generator: torch.Generator,
            optimiser: torch.optim.Optimizer, losses: list[float]) -> None:
    for _ in range(config.epochs):
        order = torch.randperm(inputs.shape[0], generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            rows = order[start:start + config.batch_size]
            extra = {key: value[rows] for key, value in (forward_kwargs or {}).items()}
            optimiser.zero_grad()
            loss = loss_fn(model(inputs[rows], **extra), targets[rows])
            loss.backward()
            optimiser.step()
            total += loss.item() * len(rows)
        losses.append(total / inputs.shape[0])


@torch.no_grad()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, **kwargs: Any
             ) -> float:
    model.eval()
    return float((model(inputs, **kwargs).argmax(1) == labels).float().mean())


@torch.no_grad()
def r_squared(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    residual = ((targets - predictions) ** 2).sum()
    total = ((targets - targets.mean()) ** 2).sum()
    return float(1.0 - residual / total)


def parse_args(description: str, default: TrainConfig) -> TrainConfig:
    """``--seed`` and ``--epochs`` override the recorded defaults (for reproduction runs)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--epochs", type=int, default=default.epochs)
    args = parser.parse_args()
    return TrainConfig(seed=args.seed, epochs=args.epochs, batch_size=default.batch_size,
                       lr=default.lr, weight_decay=default.weight_decay)


def save_model(name: str, model: nn.Module, config: TrainConfig, script: str,
               data: str, metrics: dict[str, float], extra: dict[str, Any],
               seconds: float) -> Path:
    """Write weights and ``<name>.json`` (data, held-out metrics, seed, budget, sha256, date)."""
    path, digest = save_weights(name, model)
    metadata = {
        "name": name,
        "script": f"python -m {script}",
        "data": data,
        "held_out": metrics,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": config.seed,
        "split_seed": SPLIT_SEED,
        "budget": {"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                   "weight_decay": config.weight_decay,
                   "train_seconds": round(seconds, 1), "threads": torch.get_num_threads()},
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "weights_file": path.name,
        "sha256": digest,
        "torch": torch.__version__,
        **extra,
    }
    write_metadata(name, metadata)
    return path
