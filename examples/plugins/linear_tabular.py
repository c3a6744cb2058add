"""A complete model plugin: a linear credit-score model whose IG is known in closed form.

Start the dashboard or the command line with this file named in ATTRIBUTION_MODELS:

    ATTRIBUTION_MODELS=examples/plugins/linear_tabular.py bash scripts/start.sh
    ATTRIBUTION_MODELS=examples/plugins/linear_tabular.py \
        .venv/bin/python -m attribution_core explain --model linear_credit --input rows.csv

For a linear model f(x) = W x + c, Integrated Gradients from a baseline b is exactly
W[target] * (x - b), whatever the step count: the tests check the page and the command line
against that.
"""

import numpy as np
import torch
from torch import nn

from attribution_core.models import register_model

FEATURES = ["income", "debt", "years_employed"]
UNITS = ["k EUR", "k EUR", "years"]
WEIGHTS = [[0.04, -0.08, 0.30], [-0.04, 0.08, -0.30]]  # logits of "decline" and "approve"
BIAS = [0.5, -0.5]


class LinearCredit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(len(FEATURES), 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor(WEIGHTS))
            self.head.bias.copy_(torch.tensor(BIAS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


# Reference rows in raw units: the mean / median baselines, IG2's references and the
# out-of-domain notice's statistics come from them (labels: the model's own predictions).
_rng = np.random.default_rng(0)
REFERENCE = np.column_stack([
    _rng.normal(45.0, 12.0, 200),  # income
    _rng.normal(20.0, 8.0, 200),  # debt
    _rng.uniform(0.0, 25.0, 200),  # years employed
])

register_model(
    "linear_credit", LinearCredit(), "tabular",
    class_names=["decline", "approve"],
    title="Linear credit model (plugin example)",
    description="A plugin from examples/plugins/linear_tabular.py: IG is W (x - b) exactly.",
    feature_names=FEATURES, feature_units=UNITS, reference_data=REFERENCE,
)
