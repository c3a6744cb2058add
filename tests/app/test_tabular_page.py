"""The tabular page through AppTest: every model and method, waterfall end, CSV validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from attribution_core.models import get_spec
from tests.app.helpers import chart_titles

pytestmark = pytest.mark.app
PAGE = Path(__file__).resolve().parents[2] / "pages" / "tabular.py"
MODELS = ("breast_cancer_mlp", "wine_mlp", "diabetes_mlp")
METHODS = ("IG", "IG2", "both")


def shown(at: AppTest, quantity: str, method: str) -> float:
    """A figure of the completeness table (rows: quantities, columns: methods)."""
    for frame in at.dataframe:
        table = frame.value
        if "quantity" in table.columns and method in table.columns:
            rows = table[table["quantity"].str.startswith(quantity)]
            if len(rows):
                return float(rows[method].iloc[0])
    raise AssertionError(f"no {quantity!r} for {method} in the completeness table")


def open_tabular_page(model: str) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["selected_model_tabular"] = model
    at.run()
    assert not at.exception, f"opening the tabular page with {model} raised: {at.exception}"
    at.slider(key="tab_steps").set_value(32).run()
    return at


def explain(at: AppTest, method: str) -> AppTest:
    at.radio(key="tab_method").set_value(method).run()
    at.button(key="tab_explain").click().run()
    assert not at.exception, f"Explain with {method} raised: {at.exception}"
    assert not at.error, f"Explain with {method} showed errors: {[e.value for e in at.error]}"
    return at


def waterfalls(at: AppTest) -> list[dict[str, object]]:
    found = []
    for chart in at.get("plotly_chart"):
        for trace in json.loads(chart.proto.spec).get("data", []):
            if trace.get("type") == "waterfall":
                found.append(trace)
    return found


def waterfall_end(trace: dict[str, object]) -> float:
    """Where Plotly draws the last bar: the start plus every relative bar."""
    measures, values = trace["measure"], trace["y"]
    assert measures[0] == "absolute" and measures[-1] == "total", f"start / end bars: {measures}"
    return sum(float(v) for v, m in zip(values, measures, strict=True) if m != "total")


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.radio(key="tab_input_mode").set_value("Upload CSV").run()
    at.file_uploader(key="tab_csv").set_value((name, data, "text/csv")).run()
    assert not at.exception, f"uploading {name} raised: {at.exception}"
    return at


def header(model: str) -> list[str]:
    return list(get_spec(model).metadata["feature_names"])


def good_rows(model: str, n: int) -> list[list[float]]:
    metadata = get_spec(model).metadata
    return [[m * (1.05 + 0.05 * i) for m in metadata["train_mean_raw"]] for i in range(n)]


def csv_bytes(columns: list[str], rows: list[list[object]]) -> bytes:
    lines = [",".join(columns)] + [",".join(str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("model", MODELS)
def test_each_model_and_method_closes_the_waterfall_at_f_x(model: str) -> None:
    at = open_tabular_page(model)
    for method in METHODS:
        explain(at, method)
        names = ("IG", "IG2") if method == "both" else (method,)
        traces = waterfalls(at)
        assert len(traces) == len(names), f"{method}: one waterfall per method"
        for name, trace in zip(names, traces, strict=True):
            f_x = shown(at, "f(x)", name)
            total = shown(at, "sum of attributions", name)
            delta = shown(at, "delta", name)
            end = waterfall_end(trace)
            assert abs(end - f_x) <= 1e-6 * (1 + abs(f_x)), f"{name}: waterfall ends at {end}, " \
                f"f(x) = {f_x}"
            start = float(trace["y"][0])
            assert abs((total - (f_x - start)) - delta) <= 1e-5 * (1 + abs(total)), \
                f"{name}: sum {total} = f(x) - start {f_x - start} + delta {delta}"
            assert "completeness residual" in trace["x"], "the residual is its own bar"
        bars = [title for title in chart_titles(at) if "features by |attribution|" in title]
        assert len(bars) == len(names), f"{method}: a ranked bar chart per method"


def test_ranked_bars_are_ordered_and_show_values() -> None:
    at = explain(open_tabular_page("wine_mlp"), "IG")
    chart = next(json.loads(c.proto.spec) for c, title in zip(at.get("plotly_chart"),
                                                              chart_titles(at), strict=True)
                 if "features by" in title)
    bar = chart["data"][0]
    magnitudes = [abs(x) for x in bar["x"]][::-1]  # drawn bottom-up: largest is last
    assert magnitudes == sorted(magnitudes, reverse=True), f"ordered by |attribution|: {bar['x']}"
    assert all(" = " in label for label in bar["y"]), f"each bar shows the value: {bar['y']}"


def test_a_csv_of_rows_gives_a_table_of_every_row() -> None:
    model = "wine_mlp"
    at = upload(open_tabular_page(model), "rows.csv", csv_bytes(header(model),
                                                                 good_rows(model, 4)))
    explain(at, "IG")
    tables = [f.value for f in at.dataframe if "completeness error" in f.value.columns]
    assert len(tables) == 1 and len(tables[0]) == 4, "one line per CSV row"
    assert tables[0]["CSV row"].tolist() == [1, 2, 3, 4], "rows keep their CSV numbers"
    assert tables[0]["relative error %"].abs().max() < 5, "completeness holds on every row"
    assert any(b.label.startswith("All rows") for b in at.get("download_button")), \
        "the table can be downloaded"


def test_view_changes_do_not_recompute() -> None:
    at = explain(open_tabular_page("breast_cancer_mlp"), "IG")
    runs = dict(at.session_state["tab_runs"])
    at.number_input(key="tab_top_k").set_value(3).run()
    after = dict(at.session_state["tab_runs"])
    assert after.keys() == runs.keys() and all(after[k] is runs[k] for k in runs), \
        "changing the number of features shown keeps the stored run"
    assert len(waterfalls(at)[0]["x"]) == 1 + 3 + 1 + 1 + 1, "start, 3, rest, residual, end"


def _bad_files(model: str) -> list[tuple[str, bytes, list[str]]]:
    columns = header(model)
    row = good_rows(model, 1)[0]
    text_cell = [row[0], "high", *row[2:]]
    return [
        ("missing.csv", csv_bytes(columns[:-2], [row[:-2]]), ["lacks 2", repr(columns[-1])]),
        ("strings.csv", csv_bytes(columns, [row, text_cell]),
         ["row 2", repr(columns[1]), "'high' is not a number"]),
        ("nan.csv", csv_bytes(columns, [[float("nan"), *row[1:]], [*row[:-1], "inf"]]),
         ["NaN", "infinite", "none of its 2 rows"]),
        ("empty.csv", b"", ["empty"]),
        ("header_only.csv", (",".join(columns) + "\n").encode(), ["no data rows"]),
        ("huge.csv", b"0" * (50 * 1024 * 1024), ["50.0 MB", "at most"]),
    ]


@pytest.mark.parametrize("index", range(6), ids=["missing", "strings", "nan", "empty",
                                                 "header-only", "50MB"])
def test_bad_csv_gives_clear_messages_and_the_page_stays_usable(index: int) -> None:
    model = "wine_mlp"
    name, data, words = _bad_files(model)[index]
    at = explain(open_tabular_page(model), "IG")
    f_x = shown(at, "f(x)", "IG")
    at = upload(at, name, data)
    errors = " ".join(e.value for e in at.error)
    for word in words:
        assert word in errors, f"{name}: {word!r} in the message {errors!r}"
    assert shown(at, "f(x)", "IG") == f_x, f"{name}: the previous result stays on screen"
    assert at.slider(key="tab_steps").value == 32, "other inputs keep their values"
    at.radio(key="tab_input_mode").set_value("Data set row").run()
    at.button(key="tab_explain").click().run()
    assert not at.exception and not at.error, f"usable after {name}: {at.exception}"


def test_partly_bad_csv_explains_the_good_rows_and_lists_the_bad_ones() -> None:
    model = "diabetes_mlp"
    columns = header(model)
    rows: list[list[object]] = [*good_rows(model, 2)]
    rows.insert(1, ["x", *rows[0][1:]])
    at = upload(open_tabular_page(model), "mixed.csv", csv_bytes(columns, rows))
    errors = " ".join(e.value for e in at.error)
    assert "row 2" in errors and "1 of 3 rows" in errors, f"the bad row is named: {errors!r}"
    assert any("2 of 3 rows are valid" in c.value for c in at.caption), "count of valid rows"
    explain_ok = at.button(key="tab_explain")
    assert not explain_ok.disabled, "the valid rows can be explained"
    explain_ok.click().run()
    assert not at.exception, f"explaining the valid rows raised: {at.exception}"
    tables = [f.value for f in at.dataframe if "completeness error" in f.value.columns]
    assert tables and tables[0]["CSV row"].tolist() == [1, 3], "only the valid rows, numbered"


def test_page_figures_match_the_core_called_directly() -> None:
    import torch

    from attribution_core import integrated_gradients
    from attribution_core.models import load_model

    model = "breast_cancer_mlp"
    at = explain(open_tabular_page(model), "IG")
    loaded = load_model(model, "cpu")
    spec = get_spec(model)
    pool = spec.reference_pool() if spec.reference_pool is not None else None
    assert pool is not None, "the model has a data set"
    x = pool.inputs[:1].float()  # the page starts on data set row 0
    baseline = loaded.extras["baseline_tensors"]["mean"].float()
    with torch.no_grad():
        target = int(loaded.forward(x).argmax(dim=1)[0])
    core = integrated_gradients(loaded.forward, x, baselines=baseline, target=target, n_steps=32)
    ranked = next(f.value for f in at.dataframe if "baseline value" in f.value.columns)
    top = ranked.iloc[0]
    names = list(spec.metadata["feature_names"])
    exact = float(core.attributions[0, names.index(top["feature"])])
    assert abs(float(top["attribution"]) - exact) <= 1e-6 * (1 + abs(exact)), \
        f"top feature {top['feature']}: page {top['attribution']}, core {exact}"
    assert abs(shown(at, "f(x)", "IG") - float(core.f_inputs[0])) <= 1e-6, "f(x) agrees"
    assert abs(shown(at, "delta", "IG") - float(core.delta[0])) <= 1e-6, "delta agrees"
