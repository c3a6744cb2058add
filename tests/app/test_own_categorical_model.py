"""The tabular page with a scikit-learn pipeline that has categorical columns and missing
values (ColumnTransformer: OneHotEncoder, SimpleImputer + StandardScaler; MLPClassifier),
uploaded as ONNX with a reference CSV of strings and empty cells: one bar per original column,
values shown as categories, completeness kept, CSV rows checked per cell."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import open_app
from tests.unit.categorical_pipeline import COLUMNS, data, exported, reference_csv

pytestmark = pytest.mark.app


def load_pipeline(at: AppTest) -> AppTest:
    _, onnx_bytes = exported()
    csv = reference_csv()
    assert b",," in csv or b",\n" in csv, "the reference CSV has empty (missing) cells"
    at.radio(key="tab_model_source").set_value("Your model").run()
    at.file_uploader(key="tab_own_file_True").set_value(
        ("pipeline.onnx", onnx_bytes, "application/octet-stream"))
    at.file_uploader(key="tab_own_csv").set_value(("reference.csv", csv, "text/csv"))
    at.run()
    at.button(key="tab_own_load").click().run()
    assert not at.exception, f"loading raised: {at.exception}"
    assert not at.error, f"the pipeline loads: {[e.value for e in at.error]}"
    return at


def bars(at: AppTest, title: str) -> dict:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if spec.get("layout", {}).get("title", {}).get("text") == title:
            return spec["data"][0]
    raise AssertionError(f"no chart titled {title!r}")


def completeness(at: AppTest) -> dict[str, float]:
    table = next(f.value for f in at.dataframe if "quantity" in f.value.columns)
    return dict(zip(table["quantity"], table["IG"], strict=True))


def test_pipeline_row_is_explained_with_one_bar_per_original_column() -> None:
    at = load_pipeline(open_app("tabular"))
    assert any("Values of row 0" in m.value for m in at.markdown), \
        "the data-set row editor is shown (a select box per categorical column)"
    at.slider(key="tab_steps").set_value(64).run()
    at.radio(key="tab_method").set_value("both").run()
    at.button(key="tab_explain").click().run()
    assert not at.exception, f"Explain raised: {at.exception}"
    assert not at.error, f"Explain showed errors: {[e.value for e in at.error]}"
    for method in ("IG", "IG2"):  # IG2's references: the reference CSV's rows, encoded
        figure = bars(at, f"{method}: features by |attribution|")
        names = sorted(label.split(" = ")[0] for label in figure["y"])
        assert names == sorted(COLUMNS), f"{method}: one bar per original column: {figure['y']}"
    table = next(f.value for f in at.dataframe if "attribution" in f.value.columns)
    assert sorted(table["feature"]) == sorted(COLUMNS), table
    frame, _ = data()
    city = table.set_index("feature").loc["city", "value"]
    assert city == frame["city"].iloc[0], f"categories shown by name: {city!r}"
    numbers = completeness(at)
    assert abs(numbers["sum of attributions"] - float(table["attribution"].sum())) < 1e-9, \
        "the table's column attributions are what the completeness check sums"
    assert abs(numbers["delta = sum − (f(x) − start)"]) < 0.02, numbers
    assert any("one-hot" in c.value for c in at.caption), "the page says what IG means here"


def test_csv_with_strings_missing_cells_and_unknown_categories() -> None:
    at = load_pipeline(open_app("tabular"))
    frame, _ = data()
    rows = frame.iloc[200:206].copy().astype({"age": object})
    rows.loc[rows.index[0], "income"] = 5_000.0  # far outside the reference rows
    rows.loc[rows.index[1], "city"] = "Atlantis"  # unknown: the encoder ignores it
    rows.loc[rows.index[2], "age"] = np.nan  # empty cell: imputed
    rows.loc[rows.index[3], "age"] = "abc"  # refused, the row is not explained
    csv = rows.to_csv(index=False).encode()
    at.radio(key="tab_input_mode").set_value("Upload CSV").run()
    at.file_uploader(key="tab_csv").set_value(("rows.csv", csv, "text/csv")).run()
    assert not at.exception, f"reading the CSV raised: {at.exception}"
    warnings = " ".join(w.value for w in at.warning)
    assert "unlike the data" in warnings and "income" in warnings, \
        f"the out-of-domain notice names the column: {warnings}"
    notes = " ".join(i.value for i in at.info)
    assert "'Atlantis' is not a category the model knows" in notes, notes
    assert "imputed" in notes, notes
    errors = " ".join(e.value for e in at.error)
    assert "'abc' is not a number" in errors and "1 bad cell(s) in 1 of 6 rows" in errors, errors
    at.slider(key="tab_steps").set_value(32).run()
    at.button(key="tab_explain").click().run()
    assert not at.exception, f"Explain raised: {at.exception}"
    batch = next(f.value for f in at.dataframe if "CSV row" in f.value.columns)
    assert len(batch) == 5, f"the 5 kept rows are explained: {len(batch)}"
    assert set(batch["feature 1"]) <= set(COLUMNS), "top features are original columns"


def test_embedding_mlp_upload_is_explained_per_column() -> None:
    from safetensors.torch import save

    from tests.unit.test_encoded_tabular_models import CONFIG, EmbeddingNet, _frame

    net = EmbeddingNet()
    at = open_app("tabular")
    at.radio(key="tab_model_source").set_value("Your model").run()
    at.radio(key="tab_own_kind").set_value("safetensors MLP + JSON config").run()
    at.file_uploader(key="tab_own_file_False").set_value(
        ("embedding.safetensors", save({k: v.contiguous() for k, v in net.state_dict().items()}),
         "application/octet-stream"))
    at.file_uploader(key="tab_own_config").set_value(
        ("config.json", json.dumps(CONFIG).encode(), "application/json"))
    at.file_uploader(key="tab_own_csv").set_value(
        ("reference.csv", _frame().to_csv(index=False).encode(), "text/csv"))
    at.run()
    at.button(key="tab_own_load").click().run()
    assert not at.exception and not at.error, f"loads: {[e.value for e in at.error]}"
    at.slider(key="tab_steps").set_value(32).run()
    at.button(key="tab_explain").click().run()
    assert not at.exception and not at.error, f"explained: {[e.value for e in at.error]}"
    figure = bars(at, "IG: features by |attribution|")
    assert sorted(label.split(" = ")[0] for label in figure["y"]) == sorted(CONFIG[
        "feature_names"]), f"one bar per column, not per embedding dimension: {figure['y']}"
