"""The tabular page's "Your model": a scikit-learn MLP exported with skl2onnx, uploaded with a
reference CSV and explained; its IG is checked against the same network rebuilt in PyTorch.
A tree model gets the reason IG cannot explain it; the model stays in its session."""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
import skl2onnx
import torch
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from streamlit.testing.v1 import AppTest

from attribution_core import integrated_gradients
from attribution_core.models import list_specs
from tests.app.conftest import open_app

pytestmark = pytest.mark.app


@lru_cache(maxsize=1)
def wine() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_wine(as_frame=True)
    return data.data.astype(np.float32), data.target.to_numpy()


@lru_cache(maxsize=2)
def exported(kind: str) -> tuple[Pipeline, bytes]:
    frame, labels = wine()
    estimator = MLPClassifier((16,), max_iter=300, random_state=0) if kind == "mlp" else \
        RandomForestClassifier(5, max_depth=3, random_state=0)
    pipeline = make_pipeline(StandardScaler(), estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(frame.to_numpy(), labels)
    onnx_model = skl2onnx.to_onnx(pipeline, frame.to_numpy()[:1],
                                  options={id(pipeline): {"zipmap": False}})
    return pipeline, onnx_model.SerializeToString()


def reference_csv() -> bytes:
    frame, labels = wine()
    table = frame.iloc[::3].copy()
    table["label"] = labels[::3]
    return table.to_csv(index=False).encode()


def load_own(at: AppTest, name: str, data: bytes) -> AppTest:
    at.radio(key="tab_model_source").set_value("Your model").run()
    at.file_uploader(key="tab_own_file_True").set_value((name, data, "application/octet-stream"))
    at.file_uploader(key="tab_own_csv").set_value(("wine_reference.csv", reference_csv(),
                                                   "text/csv"))
    at.run()
    at.button(key="tab_own_load").click().run()
    assert not at.exception, f"loading {name} raised: {at.exception}"
    return at


def rebuilt_in_torch(pipeline: Pipeline) -> torch.nn.Module:
    """The same network from scikit-learn's own arrays: scaler, hidden ReLU layer, softmax."""
    scaler, mlp = pipeline[0], pipeline[-1]
    first, second = torch.nn.Linear(*mlp.coefs_[0].shape), torch.nn.Linear(*mlp.coefs_[1].shape)
    with torch.no_grad():
        first.weight.copy_(torch.tensor(mlp.coefs_[0].T))
        first.bias.copy_(torch.tensor(mlp.intercepts_[0]))
        second.weight.copy_(torch.tensor(mlp.coefs_[1].T))
        second.bias.copy_(torch.tensor(mlp.intercepts_[1]))
    mean = torch.tensor(scaler.mean_, dtype=torch.float32)
    scale = torch.tensor(scaler.scale_, dtype=torch.float32)

    class Rebuilt(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hidden = torch.relu(first((x - mean) / scale))
            return torch.softmax(second(hidden), dim=-1)

    return Rebuilt()


def test_sklearn_mlp_from_onnx_is_explained_like_the_same_network_in_torch() -> None:
    pipeline, data = exported("mlp")
    at = load_own(open_app("tabular"), "wine_mlp.onnx", data)
    assert not at.error, f"the ONNX model loads: {[e.value for e in at.error]}"
    at.slider(key="tab_steps").set_value(32).run()
    at.button(key="tab_explain").click().run()
    assert not at.exception, f"Explain raised: {at.exception}"
    assert not at.error, f"Explain showed errors: {[e.value for e in at.error]}"
    at.number_input(key="tab_top_k").set_value(13).run()  # every feature in the table
    table = next(f.value for f in at.dataframe if "attribution" in f.value.columns)
    features = list(wine()[0].columns)
    shown = table.set_index("feature").loc[features]
    x = torch.tensor(shown["value"].to_numpy(dtype=np.float32))[None]
    baseline = torch.tensor(shown["baseline value"].to_numpy(dtype=np.float32))[None]
    network = rebuilt_in_torch(pipeline)
    target = int(network(x).argmax())  # the page explains the predicted class by default
    expected = integrated_gradients(network, x, baselines=baseline, target=target,
                                    n_steps=32).attributions[0].double().numpy()
    got = shown["attribution"].to_numpy(dtype=float)
    scale = np.abs(expected).max()
    assert scale > 0, "the row differs from the baseline, so something is attributed"
    assert np.abs(got - expected).max() < 1e-4 * max(scale, 1.0), \
        f"page IG (ONNX via onnx2torch) {got} vs the same network in torch {expected}"
    assert np.allclose(baseline.numpy()[0], wine()[0].iloc[::3].mean().to_numpy(), atol=1e-3), \
        "the default baseline is the mean of the uploaded reference rows"
    assert not any(s.name.startswith("upload:") for s in list_specs()), \
        "the upload never reaches the process-wide registry"


def test_tree_model_gets_the_reason_ig_cannot_explain_it() -> None:
    _, data = exported("forest")
    at = load_own(open_app("tabular"), "wine_forest.onnx", data)
    messages = [e.value for e in at.error]
    assert len(messages) == 1 and "tree model" in messages[0] and \
        "gradient is zero almost everywhere" in messages[0], messages


def test_safetensors_mlp_with_config_is_explained_like_itself() -> None:
    import json

    from safetensors.torch import save

    torch.manual_seed(0)
    holder = torch.nn.Module()
    holder.layers = torch.nn.Sequential(torch.nn.Linear(13, 8), torch.nn.ReLU(),
                                        torch.nn.Linear(8, 3))
    frame, _ = wine()
    mean, std = frame.mean().tolist(), frame.std().tolist()
    config = {"activation": "relu", "class_names": ["barolo", "grignolino", "barbera"],
              "mean": mean, "std": std}
    at = open_app("tabular")
    at.radio(key="tab_model_source").set_value("Your model").run()
    at.radio(key="tab_own_kind").set_value("safetensors MLP + JSON config").run()
    at.file_uploader(key="tab_own_file_False").set_value(
        ("wine_mlp.safetensors", save(holder.state_dict()), "application/octet-stream"))
    at.file_uploader(key="tab_own_config").set_value(
        ("config.json", json.dumps(config).encode(), "application/json"))
    at.file_uploader(key="tab_own_csv").set_value(("wine_reference.csv", reference_csv(),
                                                   "text/csv"))
    at.run()
    at.button(key="tab_own_load").click().run()
    assert not at.exception and not at.error, f"loads: {[e.value for e in at.error]}"
    at.slider(key="tab_steps").set_value(32).run()
    at.button(key="tab_explain").click().run()
    assert not at.exception and not at.error, f"explained: {[e.value for e in at.error]}"
    at.number_input(key="tab_top_k").set_value(13).run()
    table = next(f.value for f in at.dataframe if "attribution" in f.value.columns)
    shown = table.set_index("feature").loc[list(frame.columns)]
    def standardise(raw: np.ndarray) -> torch.Tensor:  # the config's own mean and std
        return (torch.tensor(raw, dtype=torch.float32)[None] - torch.tensor(mean)) / \
            torch.tensor(std)

    x = standardise(shown["value"].to_numpy(dtype=np.float32))
    baseline = standardise(shown["baseline value"].to_numpy(dtype=np.float32))
    target = int(holder.layers(x).argmax())
    expected = integrated_gradients(holder.layers, x, baselines=baseline, target=target,
                                    n_steps=32).attributions[0].double().numpy()
    got = shown["attribution"].to_numpy(dtype=float)
    assert np.abs(got - expected).max() < 1e-4 * max(np.abs(expected).max(), 1.0), \
        f"page IG {got} vs the same MLP in torch {expected}"
