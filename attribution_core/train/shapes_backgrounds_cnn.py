"""Train the validity suite's shapes CNN on four backgrounds:
``python -m attribution_core.train.shapes_backgrounds_cnn [--seed S] [--epochs E]``.

The bundled ``shapes_cnn`` saw dark backgrounds only, where a black baseline is close to the
background and favours IG from black. This model (the same architecture) is trained on dark,
bright, textured and noisy backgrounds in turn, so that image ground truth can be measured on
backgrounds that favour no baseline. Training scenes: generator seed 10; held-out: seed 11.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from attribution_core.datasets.shapes import BACKGROUNDS, KINDS, generate_shapes
from attribution_core.models.architectures import ShapesCNN
from attribution_core.train.common import (
    TrainConfig,
    accuracy,
    fit,
    parse_args,
    save_model,
    seed_everything,
)

NAME = "shapes_backgrounds_cnn"
TRAIN_SET = (6000, 10)  # (count, generator seed)
HELD_OUT = (800, 11)
DEFAULT = TrainConfig(seed=0, epochs=10, batch_size=64, lr=2e-3, weight_decay=1e-4)


def train(config: TrainConfig = DEFAULT) -> tuple[ShapesCNN, dict[str, float]]:
    seed_everything(config.seed)
    data = generate_shapes(TRAIN_SET[0], TRAIN_SET[1], BACKGROUNDS)
    model = ShapesCNN(len(KINDS))
    fit(model, torch.from_numpy(data.images), torch.from_numpy(data.labels), config,
        nn.functional.cross_entropy)
    metrics: dict[str, float] = {}
    for background in BACKGROUNDS:
        held_out = generate_shapes(HELD_OUT[0] // len(BACKGROUNDS), HELD_OUT[1], background)
        metrics[f"accuracy_{background}"] = accuracy(
            model, torch.from_numpy(held_out.images), torch.from_numpy(held_out.labels))
    return model, metrics


def main() -> None:
    config = parse_args(__doc__ or NAME, DEFAULT)
    start = time.perf_counter()
    model, metrics = train(config)
    path = save_model(
        NAME, model, config, f"attribution_core.train.{NAME}",
        f"generated shapes on {', '.join(BACKGROUNDS)} backgrounds in turn: {TRAIN_SET[0]} "
        f"training scenes (generator seed {TRAIN_SET[1]}), held-out {HELD_OUT[0]} "
        f"(seed {HELD_OUT[1]}, split evenly over the backgrounds)",
        metrics, {"input_box": [0.0, 1.0], "class_names": list(KINDS),
                  "backgrounds": list(BACKGROUNDS)},
        time.perf_counter() - start)
    print(f"{NAME}: held-out accuracy {metrics}; weights at {path}")


if __name__ == "__main__":
    main()
