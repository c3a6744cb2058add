"""Shared training of the tabular MLPs (breast cancer, wine, diabetes).

Features are standardised with the training split's mean and standard deviation; those, the
training means and medians (raw and standardised), feature names and units go into the
metadata, so the registry can preprocess raw rows and offer mean/median baselines.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from attribution_core.datasets.splits import Split, TabularName, tabular_split
from attribution_core.models.architectures import TabularMLP
from attribution_core.train.common import (
    TrainConfig,
    accuracy,
    fit,
    r_squared,
    save_model,
    seed_everything,
)


def scaler(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Training-set mean and standard deviation (a constant feature keeps scale 1)."""
    mean = split.x_train.mean(axis=0)
    std = split.x_train.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def train_tabular(data: TabularName, config: TrainConfig
                  ) -> tuple[TabularMLP, dict[str, float], dict[str, Any]]:
    """Train one MLP; return it, its held-out metrics and the preprocessing metadata."""
    seed_everything(config.seed)
    split = tabular_split(data)
    mean, std = scaler(split)
    x_train = torch.tensor((split.x_train - mean) / std, dtype=torch.float32)
    x_test = torch.tensor((split.x_test - mean) / std, dtype=torch.float32)
    regression = data == "diabetes"
    n_outputs = 1 if regression else len(split.class_names)
    model = TabularMLP(x_train.shape[1], n_outputs)
    if regression:
        y_mean, y_std = float(split.y_train.mean()), float(split.y_train.std())
        y_train = torch.tensor((split.y_train - y_mean) / y_std, dtype=torch.float32)
        # Train on the standardised target, then fold the scale into the output buffers.
        fit(model, x_train, y_train.unsqueeze(1), config, nn.functional.mse_loss)
        model.output_shift.fill_(y_mean)
        model.output_scale.fill_(y_std)
        with torch.no_grad():
            predictions = model(x_test)[:, 0]
        metrics = {"r2": r_squared(predictions.double(),
                                   torch.tensor(split.y_test, dtype=torch.float64)),
                   "n_test": len(split.y_test)}
    else:
        y_train = torch.tensor(split.y_train, dtype=torch.long)
        fit(model, x_train, y_train, config, nn.functional.cross_entropy)
        metrics = {"accuracy": accuracy(model, x_test,
                                        torch.tensor(split.y_test, dtype=torch.long)),
                   "n_test": len(split.y_test)}
    standardised_train = (split.x_train - mean) / std
    preprocessing = {
        "feature_names": list(split.feature_names),
        "units": list(split.units),
        "class_names": list(split.class_names),
        "output_kind": "regression" if regression else "classification",
        "scaler_mean": mean.tolist(),
        "scaler_std": std.tolist(),
        "train_mean_raw": mean.tolist(),
        "train_median_raw": np.median(split.x_train, axis=0).tolist(),
        "train_mean_standardised": standardised_train.mean(axis=0).tolist(),
        "train_median_standardised": np.median(standardised_train, axis=0).tolist(),
        "input_box": [float(np.floor(standardised_train.min())),
                      float(np.ceil(standardised_train.max()))],
    }
    return model, metrics, preprocessing


def run(name: str, data: TabularName, config: TrainConfig) -> None:
    start = time.perf_counter()
    model, metrics, preprocessing = train_tabular(data, config)
    path = save_model(name, model, config, f"attribution_core.train.{name}",
                      tabular_split(data).description, metrics, preprocessing,
                      time.perf_counter() - start)
    print(f"{name}: held-out {metrics}; weights at {path}")
