"""The tabular page's logic for a model without a data set: a typed row explained from a typed
baseline is W[target] (x - b) exactly, and only baselines the model can give are offered."""

from __future__ import annotations

import numpy as np
import torch

from attribution_core.models import get_spec, load_model
from attribution_core.models.plugin_specs import build_spec
from dashboard.tabular import logic

WEIGHTS = np.array([[0.04, -0.08, 0.30], [-0.04, 0.08, -0.30]])


def _loaded() -> object:
    network = torch.nn.Linear(3, 2)
    with torch.no_grad():
        network.weight.copy_(torch.as_tensor(WEIGHTS))
        network.bias.zero_()
    spec = build_spec("typed_probe", network, "tabular", feature_names=["a", "b", "c"])
    return spec.loader(torch.device("cpu"))


def test_typed_row_from_a_typed_baseline_is_exact() -> None:
    loaded = _loaded()
    assert logic.available_baselines(loaded) == ("zeros", logic.TYPED), \
        "no data set: zeros or a typed row"
    x, b = np.array([30.0, 35.0, 2.0]), (1.0, -2.0, 4.0)
    settings = logic.TabularSettings(method="IG", target=1, baseline=logic.TYPED,
                                     baseline_values=b, n_steps=8, convergence_curve=False)
    run = logic.run_row(loaded, x, settings, cache=None)
    expected = WEIGHTS[1] * (x - np.array(b))
    got = run.ig.attributions[0].double().numpy()
    assert np.allclose(got, expected, atol=1e-4), f"IG {got} vs W[1] (x - b) {expected}"
    assert np.array_equal(run.baseline_raw, np.array(b)), "the typed baseline is the one shown"


def test_data_set_models_keep_their_data_set_baselines() -> None:
    kinds = logic.available_baselines(load_model(get_spec("wine_mlp"), "cpu"))
    assert kinds[:4] == ("mean", "median", "zeros", "reference_row") and kinds[-1] == logic.TYPED, \
        f"a model with a data set offers every baseline: {kinds}"
