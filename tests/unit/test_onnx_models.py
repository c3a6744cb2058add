"""ONNX and safetensors-MLP tabular uploads: scikit-learn exports (skl2onnx, with the ai.onnx.ml
operators) and torch.onnx exports convert to PyTorch with the same outputs and real gradients;
trees, label-only graphs and foreign bytes are refused with a reason."""

from __future__ import annotations

import io
import json
import sys
import warnings

import numpy as np
import pytest
import skl2onnx
import torch
from safetensors.torch import save
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from attribution_core.models.onnx_models import (
    convert_onnx,
    onnx_support_problem,
    parse_mlp_config,
    tabular_upload_spec,
)
from attribution_core.models.spec import ModelLoadError


def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    loader = {"wine": load_wine, "cancer": load_breast_cancer, "diabetes": load_diabetes}[name]
    x, y = loader(return_X_y=True)
    return x.astype(np.float32), y


def _export(estimator: object, x: np.ndarray, y: np.ndarray, zipmap: bool = False) -> tuple[
        object, bytes]:
    pipeline = make_pipeline(StandardScaler(), estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of short fits
        pipeline.fit(x, y)
    options = None if zipmap or not hasattr(pipeline, "predict_proba") else {
        id(pipeline): {"zipmap": False}}
    return pipeline, skl2onnx.to_onnx(pipeline, x[:1], options=options).SerializeToString()


CLASSIFIERS = [
    ("MLP, 3 classes", lambda: MLPClassifier((16,), max_iter=200, random_state=0), "wine", False),
    ("MLP, 3 classes, ZipMap", lambda: MLPClassifier((16,), max_iter=200, random_state=0),
     "wine", True),
    ("MLP, binary", lambda: MLPClassifier((8,), max_iter=200, random_state=0), "cancer", False),
    ("logistic regression, binary", lambda: LogisticRegression(max_iter=500), "cancer", False),
    ("logistic regression, 3 classes", lambda: LogisticRegression(max_iter=500), "wine", True),
]


@pytest.mark.parametrize(("what", "make", "data", "zipmap"), CLASSIFIERS,
                         ids=[c[0] for c in CLASSIFIERS])
def test_skl2onnx_classifiers_match_predict_proba_and_have_gradients(
        what: str, make: object, data: str, zipmap: bool) -> None:
    x, y = _data(data)
    pipeline, onnx_bytes = _export(make(), x, y, zipmap)  # type: ignore[operator]
    module, facts = convert_onnx(onnx_bytes)
    got = module(torch.tensor(x[:50])).detach().numpy()
    expected = pipeline.predict_proba(x[:50])  # type: ignore[attr-defined]
    assert np.abs(got - expected).max() < 1e-5, f"{what}: converted vs predict_proba"
    assert facts["classifier"] and len(facts["class_labels"]) == expected.shape[1], facts
    rows = torch.tensor(x[:4]).requires_grad_(True)
    (gradient,) = torch.autograd.grad(module(rows)[:, 1].sum(), rows)
    assert gradient.abs().sum() > 0, f"{what}: gradients flow through the converted graph"


@pytest.mark.parametrize("make", [lambda: LinearRegression(),
                                  lambda: MLPRegressor(hidden_layer_sizes=(8,), max_iter=200,
                                                       random_state=0)],
                         ids=["linear regression", "MLP regressor"])
def test_skl2onnx_regressors_match_predict(make: object) -> None:
    x, y = _data("diabetes")
    pipeline, onnx_bytes = _export(make(), x, y)  # type: ignore[operator]
    spec = tabular_upload_spec(onnx_bytes, "regressor.onnx")
    loaded = spec.loader(torch.device("cpu"))
    got = loaded.forward(torch.tensor(x[:30]))[:, 0].detach().numpy()
    expected = pipeline.predict(x[:30])  # type: ignore[attr-defined]
    assert np.abs(got - expected).max() < 1e-3 * np.abs(expected).max(), "same predictions"
    assert spec.output_kind == "regression", f"one output, no label: {spec.output_kind}"


def test_torch_onnx_export_round_trips_exactly() -> None:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    buffer = io.BytesIO()
    torch.onnx.export(network, (torch.zeros(1, 4),), buffer, input_names=["x"],
                      dynamic_axes={"x": {0: "rows"}}, dynamo=False)
    module, facts = convert_onnx(buffer.getvalue())
    rows = torch.randn(16, 4)
    difference = float((module(rows) - network(rows)).abs().max().detach())
    assert difference == 0.0, f"a torch export converts exactly, got {difference}"
    assert not facts["classifier"], "logits, not probabilities"


def test_tree_models_are_refused_with_the_reason() -> None:
    x, y = _data("cancer")
    _, onnx_bytes = _export(RandomForestClassifier(3, max_depth=2, random_state=0), x, y)
    with pytest.raises(ModelLoadError, match=r"tree model.*gradient is zero almost everywhere"):
        tabular_upload_spec(onnx_bytes, "forest.onnx")


def test_foreign_bytes_are_refused() -> None:
    with pytest.raises(ModelLoadError, match=r"Not an ONNX model|no graph"):
        convert_onnx(b"\x89PNG\r\n\x1a\n not a model at all" * 10)


def test_feature_names_come_from_the_reference_header() -> None:
    x, y = _data("wine")
    _, onnx_bytes = _export(LogisticRegression(max_iter=500), x, y)
    names = tuple(f"f{i}" for i in range(x.shape[1]))
    spec = tabular_upload_spec(onnx_bytes, "wine.onnx", reference=(names, x[:40].astype(
        np.float64), y[:40].astype(np.float64)))
    loaded = spec.loader(torch.device("cpu"))
    assert loaded.extras["feature_names"] == names, "names from the CSV header"
    assert spec.default_baseline == "mean" and spec.reference_pool is not None, "data baselines"
    assert spec.reference_pool().labels.dtype == torch.long, "class labels for IG2"
    assert spec.metadata["outputs_probabilities"], "the page shows them as probabilities"
    with pytest.raises(ModelLoadError, match="takes 13 features but 2 names"):
        tabular_upload_spec(onnx_bytes, "wine.onnx", reference=(("a", "b"), x[:5, :2], None))


def test_safetensors_mlp_with_a_json_config() -> None:
    torch.manual_seed(0)
    layers = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    holder = torch.nn.Module()
    holder.layers = layers
    config = parse_mlp_config(json.dumps({
        "activation": "tanh", "feature_names": ["a", "b", "c"], "class_names": ["no", "yes"],
        "mean": [1.0, 2.0, 3.0], "std": [2.0, 2.0, 2.0]}).encode())
    spec = tabular_upload_spec(save(holder.state_dict()), "mlp.safetensors", config=config)
    loaded = spec.loader(torch.device("cpu"))
    row = {"a": 3.0, "b": 2.0, "c": 1.0}
    expected = layers(torch.tensor([[1.0, 0.0, -1.0]]))  # standardised with the config
    assert torch.allclose(loaded.forward(loaded.preprocess(row)), expected), "same network"
    assert tuple(spec.class_names) == ("no", "yes"), spec.class_names
    with pytest.raises(ModelLoadError, match="Unknown activation"):
        parse_mlp_config(b'{"activation": "swishy"}')


def test_missing_optional_packages_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx2torch", None)  # import now raises ImportError
    problem = onnx_support_problem()
    assert problem is not None and "onnx2torch" in problem and "requirements-onnx.txt" in \
        problem, f"one line naming the package and the fix: {problem}"
    with pytest.raises(ModelLoadError, match=r"requirements-onnx\.txt"):
        convert_onnx(b"whatever")
