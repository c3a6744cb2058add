"""Tabular models with categorical columns and missing values: a scikit-learn
ColumnTransformer pipeline exported by skl2onnx is split into its encoding front and its
differentiable rest; IG runs in the encoded (one-hot, scaled) space and is folded back to the
original columns, with completeness kept and the same values as the network rebuilt in torch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import IntegratedGradients

from attribution_core import ig2, integrated_gradients
from attribution_core.evaluation import EvaluationSettings
from attribution_core.evaluation.cases import tabular_cases
from attribution_core.evaluation.runner import evaluate
from attribution_core.evaluation.uploads_csv import read_rows_csv
from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.models import domain
from attribution_core.models.encoded_tabular import schema_of
from attribution_core.models.onnx_categorical import categorical_onnx_spec
from attribution_core.models.spec import LoadedModel, ModelLoadError
from attribution_core.models.tabular_uploads import encoded_upload_spec
from attribution_core.references import select_references
from tests.unit.categorical_pipeline import (
    CATEGORICAL,
    COLUMNS,
    RebuiltNet,
    as_text_cells,
    data,
    exported,
    reference_csv,
    reference_frame,
)

CPU = torch.device("cpu")


def _loaded(handle_unknown: str = "ignore") -> LoadedModel:
    _, onnx_bytes = exported(handle_unknown)
    spec = categorical_onnx_spec(onnx_bytes, "pipeline.onnx",
                                 reference=as_text_cells(reference_csv()), label_column="label")
    assert spec is not None, "a pipeline with string columns is split into encoding and model"
    return spec.loader(CPU)


def _rows(loaded: LoadedModel, frame: pd.DataFrame) -> np.ndarray:
    schema = schema_of(loaded)
    assert schema is not None
    text = as_text_cells(frame.to_csv(index=False).encode())
    checked = cat_io.validate_frame(text, schema)
    assert not checked.problems, f"held-out rows are valid: {checked.problems}"
    return checked.values


def test_the_columns_are_measured_on_the_onnx_front() -> None:
    pipeline, _ = exported()
    loaded = _loaded()
    schema = schema_of(loaded)
    assert schema is not None and schema.names == COLUMNS, schema
    onehot = pipeline[0].named_transformers_["categories"]
    for j, known in enumerate(onehot.categories_):
        column = schema.columns[j]
        assert column.kind == "categorical" and column.categories == tuple(known), \
            f"{column.name}: categories in the encoder's order, got {column.categories}"
        assert column.unknown_accepted and "zero" in column.unknown_note, \
            "handle_unknown='ignore': unknown categories are accepted as all-zero slots"
    assert [c.missing for c in schema.columns[3:]] == ["imputed", "imputed"], \
        "SimpleImputer: missing numbers are allowed"
    assert schema.groups == (0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 4), schema.groups
    assert schema.slot_names[2] == "city = Paris" and schema.one_hot, schema.slot_names
    assert loaded.spec.baselines == ("mean", "median", "no_category", "reference_row")

    frame, _ = data()
    held_out = frame.iloc[200:260]
    encoded = loaded.preprocess(_rows(loaded, held_out)).double()
    rebuilt = RebuiltNet(pipeline)
    assert (encoded - rebuilt.encode(held_out)).abs().max() < 1e-6, \
        "the ONNX front encodes rows as the pipeline does (one-hot, imputed, scaled)"
    with torch.no_grad():
        outputs = loaded.forward(encoded.float()).double().numpy()
    assert np.abs(outputs - pipeline.predict_proba(held_out)).max() < 1e-6, \
        "front + converted rest reproduce predict_proba"


@pytest.mark.slow
def test_per_column_ig_is_complete_and_equals_the_network_rebuilt_in_torch() -> None:
    pipeline, _ = exported()
    loaded = _loaded()
    schema = schema_of(loaded)
    assert schema is not None
    frame, _ = data()
    held_out = frame.iloc[200:240]
    assert held_out["income"].isna().any(), "some explained rows have a missing income"
    x = loaded.preprocess(_rows(loaded, held_out))
    baseline = loaded.extras["baseline_tensors"]["mean"].expand_as(x)
    with torch.no_grad():
        targets = loaded.forward(x).argmax(dim=-1).tolist()

    exact = integrated_gradients(loaded.forward, x, baselines=baseline, target=targets,
                                 n_steps="auto", tolerance=1e-5)
    per_column = cat_io.fold_result(exact, schema).attributions.double()
    assert per_column.shape == (40, len(COLUMNS)), "one attribution per original column"
    gap = (exact.f_inputs - exact.f_baselines).double()
    error = (per_column.sum(dim=1) - gap).abs().max()
    assert error < 1e-4, f"per-column IG sums to f(x) - f(baseline): max error {error:.2e}"
    assert (per_column.sum(1) - exact.attributions.double().sum(1)).abs().max() < 1e-9, \
        "folding keeps the sum over slots"

    # The same network in torch (encoding in torch, weights from the sklearn MLP), explained by
    # Captum from the same baseline: the reference frame's means and most frequent categories.
    reference = reference_frame()
    base_row = pd.DataFrame([{**{c: reference[c].mode()[0] for c in CATEGORICAL},
                              "age": reference["age"].mean(),
                              "income": reference["income"].mean()}])
    rebuilt = RebuiltNet(pipeline)
    encoded, encoded_base = rebuilt.encode(held_out), rebuilt.encode(base_row)
    captum = IntegratedGradients(rebuilt).attribute(
        encoded, encoded_base.expand_as(encoded), target=targets, n_steps=128,
        method="gausslegendre")
    expected = torch.zeros(40, len(COLUMNS), dtype=torch.float64).index_add_(
        1, rebuilt.slot_columns(), captum)
    ours = cat_io.fold_result(integrated_gradients(
        loaded.forward, x, baselines=baseline, target=targets, n_steps=128), schema)
    difference = (ours.attributions.double() - expected).abs().max()
    assert difference < 1e-6, f"per column vs the torch rebuild: max difference {difference:.2e}"
    city = per_column[:, 0].abs()
    assert city.max() > 0.01, "a categorical column gets a real (non-zero) attribution"
    same_city = torch.tensor((held_out["city"] == base_row["city"][0]).to_numpy())
    assert city[same_city].max() == 0.0, "a column at the baseline's category gets exactly 0"


def test_csv_cells_are_checked_per_column() -> None:
    loaded = _loaded()
    schema = schema_of(loaded)
    assert schema is not None
    csv = (b"city,colour,size,age,income\n"
           b"Paris,red,M,41,52.5\n"
           b"Atlantis,red,M,41,\n"
           b"paris,blue,S,abc,40\n"
           b",green,L,30,45\n")
    checked = cat_io.read_csv_rows(csv, schema)
    assert checked.row_numbers == (0, 1, 3), f"rows kept: {checked.row_numbers}"
    refused = {(p.row, p.column): p.problem for p in checked.problems}
    assert set(refused) == {(2, "age")} and "'abc' is not a number" in refused[(2, "age")], \
        refused
    notes = {(n.row, n.column): n.problem for n in checked.notes}
    assert "'Atlantis' is not a category the model knows" in notes[(1, "city")], notes
    assert "imputed" in notes[(1, "income")] and "unknown" in notes[(3, "city")], notes
    assert checked.values[1, 0] == schema.columns[0].unknown_code, "unknown code kept"
    assert np.isnan(checked.values[1, 4]), "the empty income stays missing (imputed later)"

    strict = schema_of(_loaded("error"))
    assert strict is not None and not strict.columns[0].unknown_accepted
    refused_strict = cat_io.read_csv_rows(csv, strict)
    messages = {(p.row, p.column): p.problem for p in refused_strict.problems}
    assert "refuses unknown ones" in messages[(1, "city")], messages
    assert "did you mean 'Paris'?" in messages[(2, "city")], messages
    assert "empty cell" in messages[(3, "city")], messages


def test_ig2_walks_the_encoded_space_and_folds_per_column() -> None:
    loaded = _loaded()
    schema = schema_of(loaded)
    assert schema is not None and loaded.spec.reference_pool is not None
    pool = loaded.spec.reference_pool()
    x = loaded.preprocess(_rows(loaded, data()[0].iloc[250:251]))
    with torch.no_grad():
        outputs = loaded.forward(x)[0]
    target = int(outputs.argmax())
    chosen = select_references(pool.inputs, pool.labels, target, k=4, seed=0)
    references = pool.inputs.index_select(0, chosen.indices)
    result = ig2(loaded.forward, x, references, target=target, n_steps=24,
                 representation=loaded.ig2_representation())
    folded = cat_io.fold_result(result, schema)
    assert folded.attributions.shape == (1, len(COLUMNS)), folded.attributions.shape
    gap = float(result.f_inputs[0] - result.f_counterfactuals[0])
    total = float(folded.attributions.double().sum())
    assert abs(total - gap - float(result.delta[0])) < 1e-5, \
        "IG2's completeness bookkeeping is unchanged by folding"
    assert float(folded.attributions[0, :3].abs().sum()) > 0, "categorical columns take part"


def test_out_of_domain_rows_are_noticed_in_the_encoded_space() -> None:
    loaded = _loaded()
    frame, _ = data()
    usual = loaded.preprocess(_rows(loaded, frame.iloc[300:301]))
    check = domain.check_input(loaded, usual)
    assert check is not None and not check.far, f"a held-out row is in domain: {check}"
    odd = frame.iloc[300:301].copy()
    odd["income"] = 5_000.0
    far = domain.check_input(loaded, loaded.preprocess(_rows(loaded, odd)))
    assert far is not None and far.far and "income" in (far.message or ""), far


def test_evaluate_reads_categorical_rows_and_scores_per_column() -> None:
    loaded = _loaded()
    schema = schema_of(loaded)
    rows = data()[0].iloc[300:306].copy()
    rows["expected"] = "city"
    csv = rows.to_csv(index=False).encode()
    upload = read_rows_csv(csv, COLUMNS, schema=schema)
    assert len(upload.items) == 6 and not upload.skipped, upload.skipped
    build = tabular_cases(loaded, upload.items)
    assert len(build.cases) == 6 and build.cases[0].units is not None, build.skipped
    result = evaluate(loaded, build.cases, EvaluationSettings(
        methods=("IG", "IG2", "Saliency"), ig_steps=64, ig2_steps=16, ig2_references=2,
        curve_points=6, random_orders=2))
    assert len(result.cases) == 6, "every case evaluated"
    for case in result.cases:
        for outcome in case.outcomes:
            assert outcome.scores.shape == (len(COLUMNS),), \
                f"{outcome.method}: one score per original column, got {outcome.scores.shape}"
        ig_outcome = next(o for o in case.outcomes if o.method == "IG")
        assert abs(ig_outcome.delta) < 0.05, f"IG completeness on {case.case_id}"
        assert np.isfinite(ig_outcome.deletion_auc), "deletion removes whole columns"
    assert "city" in read_rows_csv(csv, COLUMNS, schema=schema).items[0].expected_features


def test_plain_numeric_onnx_takes_the_whole_graph_path() -> None:
    import skl2onnx
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.random.default_rng(1).normal(size=(60, 3)).astype(np.float32)
    pipeline = make_pipeline(StandardScaler(), MLPClassifier((4,), max_iter=50,
                                                            random_state=0))
    with pytest.warns(Warning):
        pipeline.fit(x, (x[:, 0] > 0).astype(int))
    data_bytes = skl2onnx.to_onnx(pipeline, x[:1]).SerializeToString()
    assert encoded_upload_spec(data_bytes, "plain.onnx") is None, \
        "numbers only: converted whole, as before"


def test_categorical_pipeline_without_reference_rows_is_refused_with_the_reason() -> None:
    _, onnx_bytes = exported()
    with pytest.raises(ModelLoadError, match="needs the reference CSV"):
        categorical_onnx_spec(onnx_bytes, "pipeline.onnx", reference=None)


def test_ig2_runs_on_a_plain_onnx_mlp_through_its_last_matrix_product() -> None:
    from attribution_core.models.onnx_models import tabular_upload_spec

    x, labels = data()[0][["age"]].fillna(40.0).to_numpy(), data()[1]
    import skl2onnx
    from sklearn.neural_network import MLPClassifier

    mlp = MLPClassifier((6,), max_iter=30, random_state=0)
    with pytest.warns(Warning):
        mlp.fit(x, labels)
    onnx_bytes = skl2onnx.to_onnx(mlp, x[:1].astype(np.float32),
                                  options={id(mlp): {"zipmap": False}}).SerializeToString()
    spec = tabular_upload_spec(onnx_bytes, "plain.onnx",
                               reference=(("age",), x[:40], labels[:40].astype(float)))
    loaded = spec.loader(CPU)
    assert loaded.ig2_representation() is not None, "onnx2torch's MatMul serves as IG2's layer"
    pool = spec.reference_pool()
    result = ig2(loaded.forward, pool.inputs[:1], pool.inputs[1:4], target=0, n_steps=8,
                 representation=loaded.ig2_representation())
    assert result.attributions.shape == (1, 1) and torch.isfinite(result.attributions).all()
