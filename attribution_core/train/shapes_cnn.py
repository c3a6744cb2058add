"""Train the shapes CNN: ``python -m attribution_core.train.shapes_cnn [--seed S] [--epochs E]``.

Data: generated scenes (:mod:`attribution_core.datasets.shapes`), a training set drawn with
generator seed 0 and a held-out set with seed 1 (so they never share a scene). The class is the
kind of the single red shape.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from attribution_core.datasets.shapes import KINDS, generate_shapes
from attribution_core.models.architectures import ShapesCNN
from attribution_core.models.builtin_image import SHAPES_CLASSES, SHAPES_HELD_OUT
from attribution_core.train.common import (
    TrainConfig,
    accuracy,
    fit,
    parse_args,
    save_model,
    seed_everything,
)

NAME = "shapes_cnn"
TRAIN_SET = (3000, 0)  # (count, generator seed)
DEFAULT = TrainConfig(seed=0, epochs=8, batch_size=64, lr=2e-3, weight_decay=1e-4)


def train(config: TrainConfig = DEFAULT, n_train: int = TRAIN_SET[0]
          ) -> tuple[ShapesCNN, dict[str, float]]:
    assert tuple(KINDS) == tuple(SHAPES_CLASSES), "class names must follow the generator"
    seed_everything(config.seed)
    data = generate_shapes(n_train, TRAIN_SET[1])
    model = ShapesCNN(len(KINDS))
    fit(model, torch.from_numpy(data.images), torch.from_numpy(data.labels), config,
        nn.functional.cross_entropy)
    held_out = generate_shapes(*SHAPES_HELD_OUT)
    return model, {"accuracy": accuracy(model, torch.from_numpy(held_out.images[:500]),
                                        torch.from_numpy(held_out.labels[:500])),
                   "n_test": 500}


def main() -> None:
    config = parse_args(__doc__ or NAME, DEFAULT)
    start = time.perf_counter()
    model, metrics = train(config)
    path = save_model(
        NAME, model, config, f"attribution_core.train.{NAME}",
        f"generated shapes: {TRAIN_SET[0]} training scenes (generator seed {TRAIN_SET[1]}), "
        f"held-out scenes from seed {SHAPES_HELD_OUT[1]} (first 500 evaluated)",
        metrics, {"input_box": [0.0, 1.0], "class_names": list(KINDS),
                  "train_set": {"n": TRAIN_SET[0], "generator_seed": TRAIN_SET[1]}},
        time.perf_counter() - start)
    print(f"{NAME}: held-out accuracy {metrics['accuracy']:.4f}; weights at {path}")


if __name__ == "__main__":
    main()
