"""More models explained in an encoded space: a safetensors MLP with an embedding per
categorical column (IG in the embedding space, folded per column, equal to the same network's
IG), an OrdinalEncoder pipeline with string imputation, and a numbers-only pipeline whose
SimpleImputer lets cells be empty."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import skl2onnx
import torch
from safetensors.torch import save
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OrdinalEncoder, StandardScaler

from attribution_core import integrated_gradients
from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.models.embedding_mlp import embedding_mlp_spec
from attribution_core.models.encoded_tabular import schema_of
from attribution_core.models.spec import ModelLoadError
from attribution_core.models.tabular_uploads import encoded_upload_spec
from tests.unit.categorical_pipeline import as_text_cells, data

CPU = torch.device("cpu")
COLUMNS = ["age", "city", "income", "colour"]
CITIES, COLOURS = ["Lyon", "Nice", "Paris"], ["black", "blue", "green", "red"]


class EmbeddingNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embeddings = torch.nn.ModuleList([torch.nn.Embedding(3, 2),
                                               torch.nn.Embedding(4, 3)])
        self.layers = torch.nn.Sequential(torch.nn.Linear(2 + 2 + 3, 8), torch.nn.Tanh(),
                                          torch.nn.Linear(8, 3))

    def encode(self, frame: pd.DataFrame, mean: list[float], std: list[float]) -> torch.Tensor:
        numbers = torch.tensor(frame[["age", "income"]].to_numpy(dtype=np.float32))
        city = torch.tensor([CITIES.index(v) for v in frame["city"]])
        colour = torch.tensor([COLOURS.index(v) for v in frame["colour"]])
        with torch.no_grad():
            return torch.cat([(numbers - torch.tensor(mean)) / torch.tensor(std),
                              self.embeddings[0](city), self.embeddings[1](colour)], dim=1)


def _frame() -> pd.DataFrame:
    frame, _ = data()
    return frame[COLUMNS].assign(income=frame["income"].fillna(50.0)).iloc[:80]


CONFIG = {"activation": "tanh", "feature_names": COLUMNS,
          "categorical": {"city": CITIES, "colour": COLOURS},
          "mean": [40.0, 50.0], "std": [10.0, 15.0], "class_names": ["a", "b", "c"]}


def test_embedding_mlp_is_explained_per_column_like_the_same_network() -> None:
    net = EmbeddingNet()
    weights = save({k: v.contiguous() for k, v in net.state_dict().items()})
    frame = _frame()
    reference = as_text_cells(frame.to_csv(index=False).encode())
    spec = encoded_upload_spec(weights, "model.safetensors", config=CONFIG, reference=reference)
    assert spec is not None, "a config with categorical columns takes the embedding loader"
    loaded = spec.loader(CPU)
    schema = schema_of(loaded)
    assert schema is not None and schema.names == tuple(COLUMNS)
    assert schema.groups == (0, 2, 1, 1, 3, 3, 3), \
        f"numbers first, then each embedding: {schema.groups}"
    rows = frame.iloc[10:16]
    raw = cat_io.validate_frame(as_text_cells(rows.to_csv(index=False).encode()), schema).values
    x = loaded.preprocess(raw)
    expected_x = net.encode(rows, CONFIG["mean"], CONFIG["std"])
    assert (x - expected_x).abs().max() < 1e-6, "embedding lookups and standardisation"
    baseline = loaded.extras["baseline_tensors"]["no_category"]
    assert float(baseline[0, 2:].abs().max()) == 0.0, "no category: zero embeddings"
    targets = net.layers(expected_x).argmax(dim=-1).tolist()
    ours = cat_io.fold_result(integrated_gradients(
        loaded.forward, x, baselines=baseline.expand_as(x), target=targets, n_steps=64), schema)
    slots = integrated_gradients(net.layers, expected_x, baselines=baseline.expand_as(x),
                                 target=targets, n_steps=64).attributions.double()
    expected = torch.zeros(6, 4, dtype=torch.float64).index_add_(
        1, torch.tensor([0, 2, 1, 1, 3, 3, 3]), slots)
    difference = (ours.attributions - expected).abs().max()
    assert difference < 1e-5, f"per column vs the same network: {difference:.2e}"
    gap = (ours.f_inputs - ours.f_baselines).double()
    assert (ours.attributions.sum(1) - gap - ours.delta.double()).abs().max() < 1e-5, \
        "completeness bookkeeping kept"
    assert ours.attributions[:, 1].abs().max() > 0, "the city embedding gets attribution"


def test_embedding_config_mismatches_are_refused_with_the_reason() -> None:
    weights = save({k: v.contiguous() for k, v in EmbeddingNet().state_dict().items()})
    wrong = {**CONFIG, "categorical": {"city": CITIES[:2], "colour": COLOURS}}
    with pytest.raises(ModelLoadError, match="has 3 rows for the 2 categories of 'city'"):
        embedding_mlp_spec(weights, "m.safetensors", wrong)
    with pytest.raises(ModelLoadError, match="needs 'feature_names'"):
        embedding_mlp_spec(weights, "m.safetensors", {"categorical": {"city": CITIES}})
    spec = embedding_mlp_spec(weights, "m.safetensors", CONFIG)
    schema = schema_of(spec.loader(CPU))
    assert schema is not None and spec.baselines == ("first_category",), spec.baselines
    checked = cat_io.read_csv_rows(b"age,city,income,colour\n30,Rome,40,red\n", schema)
    assert "not one of the 3 categories" in checked.problems[0].problem, checked.problems


def _ordinal_pipeline() -> tuple[Pipeline, bytes, pd.DataFrame]:
    frame, labels = data()
    frame = frame.copy()
    frame.loc[frame.index % 7 == 0, "colour"] = ""
    strings = Pipeline([("impute", SimpleImputer(missing_values="", strategy="constant",
                                                 fill_value="missing")),
                        ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value",
                                                   unknown_value=-1))])
    pipeline = Pipeline([
        ("encode", ColumnTransformer([
            ("categories", strings, ["city", "colour", "size"]),
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"])])),
        ("mlp", MLPRegressor(hidden_layer_sizes=(8,), max_iter=300, random_state=0))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(frame, labels.astype(float))
    return pipeline, skl2onnx.to_onnx(pipeline, frame[:1]).SerializeToString(), frame


@pytest.mark.slow
def test_ordinal_pipeline_with_string_imputation() -> None:
    pipeline, onnx_bytes, frame = _ordinal_pipeline()
    reference = as_text_cells(frame.iloc[:100].to_csv(index=False).encode())
    spec = encoded_upload_spec(onnx_bytes, "ordinal.onnx", reference=reference)
    assert spec is not None and spec.output_kind == "regression"
    loaded = spec.loader(CPU)
    schema = schema_of(loaded)
    assert schema is not None and schema.groups == (0, 1, 2, 3, 4), schema.groups
    colour = schema.columns[1]
    assert colour.categories == ("black", "blue", "green", "missing", "red"), colour
    assert colour.missing == "imputed" and "'missing'" in colour.missing_note, colour
    assert colour.unknown_accepted and "own value" in colour.unknown_note, colour
    assert not schema.one_hot and "no_category" not in spec.baselines, \
        "ordinal codes have no 'no category' vector"
    rows = frame.iloc[200:220]
    raw = cat_io.validate_frame(as_text_cells(rows.to_csv(index=False).encode()), schema).values
    x = loaded.preprocess(raw)
    with torch.no_grad():
        got = loaded.forward(x)[:, 0].double().numpy()
    assert np.abs(got - pipeline.predict(rows)).max() < 1e-4, "front + rest = predict"
    baseline = loaded.extras["baseline_tensors"]["mean"].expand_as(x)
    result = integrated_gradients(loaded.forward, x, baselines=baseline, target=0,
                                  n_steps="auto", tolerance=1e-5)
    folded = cat_io.fold_result(result, schema)
    gap = (result.f_inputs - result.f_baselines).double()
    assert (folded.attributions.sum(1) - gap).abs().max() < 1e-4, "per-column completeness"


def test_numbers_only_pipeline_with_an_imputer_accepts_empty_cells() -> None:
    frame, labels = data()
    x = frame[["age", "income"]].to_numpy(dtype=np.float32)
    pipeline = make_pipeline(SimpleImputer(), StandardScaler(),
                             MLPClassifier((6,), max_iter=200, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(x, labels)
    onnx_bytes = skl2onnx.to_onnx(pipeline, x[:1], options={
        id(pipeline.steps[-1][1]): {"zipmap": False}}).SerializeToString()
    reference = pd.DataFrame(x[:50], columns=["age", "income"]).astype(str).replace("nan", "")
    spec = encoded_upload_spec(onnx_bytes, "imputed.onnx", reference=reference)
    assert spec is not None, "an Imputer in the graph: explained after imputation"
    loaded = spec.loader(CPU)
    schema = schema_of(loaded)
    assert schema is not None and [c.missing for c in schema.columns] == ["imputed"] * 2
    checked = cat_io.read_csv_rows(b"age,income\n41,\n", schema)
    assert not checked.problems and "imputed" in checked.notes[0].problem, checked
    with torch.no_grad():
        got = loaded.forward(loaded.preprocess(checked.values)).numpy()
    expected = pipeline.predict_proba(np.array([[41.0, np.nan]], dtype=np.float32))
    assert np.abs(got - expected).max() < 1e-5, "the empty income is imputed like sklearn does"
    assert json.dumps(spec.baselines) == '["mean", "median", "reference_row"]', spec.baselines


def test_one_string_input_for_every_column_is_split_by_position() -> None:
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.preprocessing import OneHotEncoder

    frame, labels = data()
    strings = frame[["city", "colour", "size"]]
    pipeline = make_pipeline(OneHotEncoder(handle_unknown="ignore"),
                             MLPClassifier((8,), max_iter=200, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(strings.to_numpy().astype(str), labels)
    onnx_bytes = skl2onnx.to_onnx(pipeline, initial_types=[("X", StringTensorType([None, 3]))],
                                  options={id(pipeline.steps[-1][1]): {"zipmap": False}}
                                  ).SerializeToString()
    reference = strings.iloc[:80].astype(str).assign(label=labels[:80].astype(str))
    spec = encoded_upload_spec(onnx_bytes, "one_input.onnx", reference=reference,
                               label_column="label")
    assert spec is not None
    loaded = spec.loader(CPU)
    schema = schema_of(loaded)
    assert schema is not None and schema.names == ("city", "colour", "size"), \
        "column names from the reference CSV's header"
    assert schema.groups == (0, 0, 0, 1, 1, 1, 1, 2, 2, 2), schema.groups
    raw = cat_io.validate_frame(strings.iloc[100:110].astype(str), schema).values
    with torch.no_grad():
        got = loaded.forward(loaded.preprocess(raw)).numpy()
    expected = pipeline.predict_proba(strings.iloc[100:110].to_numpy().astype(str))
    assert np.abs(got - expected).max() < 1e-5, "front + rest = predict_proba"
