"""Train the wine MLP.

``python -m attribution_core.train.wine_mlp [--seed S] [--epochs E]``.
"""

from __future__ import annotations

from attribution_core.train.common import TrainConfig, parse_args
from attribution_core.train.tabular import run

NAME = "wine_mlp"
DEFAULT = TrainConfig(seed=0, epochs=60, batch_size=32, lr=1e-3, weight_decay=1e-3)


if __name__ == "__main__":
    run(NAME, "wine", parse_args(__doc__ or NAME, DEFAULT))
