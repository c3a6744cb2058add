"""Train the diabetes MLP.

``python -m attribution_core.train.diabetes_mlp [--seed S] [--epochs E]``.
"""

from __future__ import annotations

from attribution_core.train.common import TrainConfig, parse_args
from attribution_core.train.tabular import run

NAME = "diabetes_mlp"
DEFAULT = TrainConfig(seed=0, epochs=20, batch_size=32, lr=1e-3, weight_decay=1e-2)


if __name__ == "__main__":
    run(NAME, "diabetes", parse_args(__doc__ or NAME, DEFAULT))
