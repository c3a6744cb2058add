"""The Evaluate page through AppTest: 50 bundled cases per modality, uploads, stop / continue.

Chart counts follow the page's layout contract: mean curves + AUC spread + completeness (when a
chosen method claims completeness) + agreement (when the cases have expected features) + the
opened case's maps (one chart per method for images and rows; tokens are HTML) + its curves.
"""

from __future__ import annotations

import io
import json
import math
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from attribution_core.evaluation import (
    ALL_METHODS,
    CaseOutcome,
    EvalCase,
    EvaluationResult,
    EvaluationSettings,
)
from attribution_core.models import get_spec
from dashboard.evaluate.state import EvaluationStore, cases_digest, result_key

pytestmark = pytest.mark.app
PAGE = Path(__file__).resolve().parents[2] / "pages" / "evaluate.py"
TIMEOUT_S = 900
# Few steps and samples: the page and its plumbing are under test, not the methods' accuracy.
FAST_SETTINGS = {"eval_ig_steps": 8, "eval_ig2_steps": 8, "eval_ig2_refs": 2,
                 "eval_sg_samples": 2, "eval_curve_points": 11}
WITH_COMPLETENESS = {"IG", "IG2", "Gradient x Input", "SmoothGrad (IG)", "GradientSHAP"}


def open_page(modality: str, model: str, n_cases: int = 50,
              methods: tuple[str, ...] = ALL_METHODS) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception, f"opening the Evaluate page raised: {at.exception}"
    at.radio(key="eval_modality").set_value(modality).run()
    at.selectbox(key=f"eval_model_{modality}").set_value(model).run()
    at.number_input(key="eval_n_cases").set_value(n_cases).run()
    at.multiselect(key="eval_methods").set_value(list(methods)).run()
    for key, value in FAST_SETTINGS.items():
        at.slider(key=key).set_value(value).run()
    assert not at.exception, f"setting the inputs raised: {at.exception}"
    assert not at.error, f"the inputs showed errors: {[e.value for e in at.error]}"
    return at


def run(at: AppTest, button: str = "eval_run") -> float:
    started = time.perf_counter()
    at.button(key=button).click().run()
    seconds = time.perf_counter() - started
    assert not at.exception, f"{button} raised: {at.exception}"
    assert not at.error, f"{button} showed errors: {[e.value for e in at.error]}"
    return seconds


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    for frame in at.dataframe:
        if column in frame.value.columns:
            return frame.value
    raise AssertionError(f"no table with a {column!r} column; have "
                         f"{[list(f.value.columns) for f in at.dataframe]}")


def summary(at: AppTest) -> pd.DataFrame:
    return table_with(at, "Method")


def chart_specs(at: AppTest) -> list[dict[str, object]]:
    """Every chart with data (the renderer warm-up draws none)."""
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return [spec for spec in specs if spec.get("data")]


def expected_chart_count(methods: tuple[str, ...], expectations: bool, maps_are_charts: bool
                         ) -> int:
    completeness = 1 if set(methods) & WITH_COMPLETENESS else 0
    maps = len(methods) if maps_are_charts else 0
    warm_up = 1  # the blank chart that loads the renderer before any result
    return warm_up + 2 + completeness + (1 if expectations else 0) + maps + 1


def check_results(at: AppTest, methods: tuple[str, ...], n_cases: int, expectations: bool,
                  maps_are_charts: bool) -> None:
    table = summary(at)
    assert list(table["Method"]) == list(methods), f"one row per method: {list(table['Method'])}"
    assert (table["Cases"] == n_cases).all(), f"every method ran {n_cases} cases: {table['Cases']}"
    assert table["Deletion AUC, mean ↓"].notna().all(), "every method has a deletion AUC"
    agreement_columns = {"Top-k precision ↑", "Mask share ↑"} & set(table.columns)
    assert bool(agreement_columns) == expectations, \
        f"agreement columns only with expectations: {sorted(table.columns)}"
    disagreeing = table_with(at, "Disagreement")
    assert len(disagreeing) == min(10, n_cases), f"the 10 most disagreeing cases: {disagreeing}"
    values = disagreeing["Disagreement"].to_numpy(dtype=np.float64)
    assert np.all(np.diff(values) <= 1e-12), f"most disagreeing first: {values}"
    count = len(at.get("plotly_chart"))
    wanted = expected_chart_count(methods, expectations, maps_are_charts)
    assert count == wanted, f"{wanted} charts expected, {count} shown"
    assert at.selectbox(key="eval_case").value == disagreeing["Case"].iloc[0], \
        "the single-case view opens the most disagreeing case"
    notes = " ".join(c.value for c in at.caption)
    assert ("No expected features" in notes) != expectations, "agreement note iff none expected"
    assert all(b.key != "eval_stop" for b in at.button), "the Stop button is gone after the run"


@pytest.mark.slow
def test_digits_fifty_cases_every_method() -> None:
    at = open_page("image", "digits_cnn")
    seconds = run(at)
    print(f"digits_cnn, 50 cases, {len(ALL_METHODS)} methods: {seconds:.1f} s")
    check_results(at, ALL_METHODS, 50, expectations=False, maps_are_charts=True)
    notes = " ".join(c.value for c in at.caption)
    assert "Not shown: Saliency" in notes, "Saliency has no completeness error to plot"
    images = [s for s in chart_specs(at) if any(t.get("type") == "image" for t in s["data"])]
    assert len(images) == len(ALL_METHODS), "each method's map is drawn over the picture"
    limits = {_title(s): max(t["zmax"] for t in s["data"] if t.get("type") == "heatmap")
              for s in images}
    _check_scales(limits)

    stored_before = dict(at.session_state["eval_results"])
    run(at)
    stored_after = dict(at.session_state["eval_results"])
    assert stored_after.keys() == stored_before.keys() and all(
        stored_after[k] is v for k, v in stored_before.items()), "no new result was computed"
    assert not any("inputs changed" in i.value for i in at.info), "not stale before an edit"
    at.slider(key="eval_ig_steps").set_value(12).run()
    assert any("inputs changed" in i.value for i in at.info), "marked stale after an edit"
    assert list(summary(at)["Method"]) == list(ALL_METHODS), "the old result stays on screen"


@pytest.mark.slow
def test_shapes_fifty_cases_with_masks() -> None:
    methods = ("IG", "IG2", "Saliency")
    at = open_page("image", "shapes_cnn", methods=methods)
    seconds = run(at)
    print(f"shapes_cnn, 50 cases, {len(methods)} methods: {seconds:.1f} s")
    check_results(at, methods, 50, expectations=True, maps_are_charts=True)
    table = summary(at)
    precision = table["Top-k precision ↑"].to_numpy(dtype=np.float64)
    assert np.all((precision >= 0) & (precision <= 1)), f"precision is a share: {precision}"
    agreement = next(s for s in chart_specs(at)
                     if "Agreement" in s["layout"]["title"]["text"])
    notes = [a.get("text", "") for a in agreement["layout"].get("annotations", [])]
    assert any("expected area" in n for n in notes), f"the expected-area line: {notes}"


@pytest.mark.slow
def test_cue_transformer_fifty_texts() -> None:
    methods = ("IG", "IG2", "Gradient x Input")
    at = open_page("text", "cue_transformer", methods=methods)
    seconds = run(at)
    print(f"cue_transformer, 50 cases, {len(methods)} methods: {seconds:.1f} s")
    check_results(at, methods, 50, expectations=True, maps_are_charts=False)
    chips = [m.value for m in at.markdown if "<span title=" in m.value]
    assert len(chips) == len(methods), f"one coloured token line per method: {len(chips)}"


@pytest.mark.slow
def test_breast_cancer_fifty_rows_every_method() -> None:
    at = open_page("tabular", "breast_cancer_mlp")
    seconds = run(at)
    print(f"breast_cancer_mlp, 50 cases, {len(ALL_METHODS)} methods: {seconds:.1f} s")
    check_results(at, ALL_METHODS, 50, expectations=False, maps_are_charts=True)
    bars = [s for s in chart_specs(at) if s["data"] and s["data"][0].get("type") == "bar"]
    assert len(bars) == len(ALL_METHODS), f"one bar chart per method: {len(bars)}"
    _check_scales({_title(s): tuple(s["layout"]["xaxis"]["range"]) for s in bars})


def _title(spec: dict) -> str:
    return str(spec["layout"]["title"]["text"])


def _check_scales(scales: dict[str, object]) -> None:
    """Methods in output units share one scale; unsigned saliency has one of its own."""
    signed = {scales[m] for m in ALL_METHODS if m != "Saliency"}
    assert len(signed) == 1, f"the signed maps share one scale: {scales}"
    assert scales["Saliency"] not in signed, f"saliency is on a scale of its own: {scales}"


@pytest.mark.slow
def test_a_small_bundled_set_says_it_has_fewer_cases_than_asked() -> None:
    at = open_page("tabular", "wine_mlp", methods=("IG",))
    held_out = get_spec("wine_mlp").reference_pool().inputs.shape[0]
    assert held_out < 50, f"wine's held-out set is smaller than 50 ({held_out})"
    notes = " ".join(i.value for i in at.info)
    assert f"holds {held_out} cases" in notes, f"the shortfall is stated: {notes!r}"
    run(at)
    assert (summary(at)["Cases"] == held_out).all(), "every held-out row was evaluated"


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _upload(at: AppTest, key: str, name: str, data: bytes, mime: str) -> AppTest:
    at.radio(key="eval_source").set_value("Upload").run()
    at.file_uploader(key=key).set_value((name, data, mime)).run()
    assert not at.exception, f"uploading {name} raised: {at.exception}"
    return at


@pytest.mark.slow
def test_zip_with_non_images_warns_and_runs_on_the_images() -> None:
    at = open_page("image", "digits_cnn", methods=("IG", "Saliency"))
    rng = np.random.default_rng(0)
    pictures = {f"digit{i}.png": _png(rng.integers(0, 255, (16, 16), dtype=np.uint8))
                for i in range(3)}
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 4:12] = 255
    files = {**pictures, "digit0_mask.png": _png(mask), "notes.txt": b"not a picture\n"}
    _upload(at, "eval_upload_image", "cases.zip", _zip(files), "application/zip")
    warnings = " ".join(w.value for w in at.warning)
    assert "notes.txt" in warnings, f"the non-image is named in a warning: {warnings!r}"
    assert not at.error, f"no error for a usable zip: {[e.value for e in at.error]}"
    run(at)
    table = summary(at)
    assert (table["Cases"] == 3).all(), f"the three pictures were evaluated: {table['Cases']}"
    assert "Top-k precision ↑" in table.columns, "the mask gives digit0 expectations"


@pytest.mark.slow
def test_a_zip_bomb_is_refused_with_a_clear_message_and_the_result_stays() -> None:
    at = open_page("image", "digits_cnn", n_cases=5, methods=("IG", "Saliency"))
    run(at)
    before = summary(at)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("innocent.png", "w") as member:
        for _ in range(8):  # 8 MiB of zeros deflate to a few kB: a ratio of about 1000
            member.write(bytes(2**20))
    _upload(at, "eval_upload_image", "bomb.zip", buffer.getvalue(), "application/zip")
    errors = " ".join(e.value for e in at.error)
    assert "innocent.png" in errors and "compress" in errors.lower(), \
        f"the error names the member and why it is refused: {errors!r}"
    assert at.button(key="eval_run").disabled, "nothing to run on a refused zip"
    pd.testing.assert_frame_equal(summary(at), before, obj="the earlier result stays")


@pytest.mark.slow
def test_csv_with_an_unknown_expected_feature_keeps_the_last_result() -> None:
    model = "wine_mlp"
    at = open_page("tabular", model, n_cases=5, methods=("IG", "Saliency"))
    run(at)
    before = summary(at)
    names = list(get_spec(model).metadata["feature_names"])
    means = get_spec(model).metadata["train_mean_raw"]
    header = ",".join([*names, "expected"])
    row = ",".join(f"{m:.6g}" for m in means) + ",colour_intensity_typo"
    _upload(at, "eval_upload_tabular", "rows.csv", f"{header}\n{row}\n".encode(), "text/csv")
    errors = " ".join(e.value for e in at.error)
    assert "colour_intensity_typo" in errors, f"the unknown name is in the error: {errors!r}"
    assert at.button(key="eval_run").disabled, "nothing to run on a rejected file"
    pd.testing.assert_frame_equal(summary(at), before, obj="the earlier result stays")
    assert any("inputs changed" in i.value for i in at.info), "and is marked stale"
    assert at.multiselect(key="eval_methods").value == ["IG", "Saliency"], "inputs are kept"


@pytest.mark.slow
def test_stop_after_ten_of_twenty_then_continue_finishes_the_rest() -> None:
    at = open_page("image", "digits_cnn", n_cases=20, methods=("IG", "Saliency"))
    at.session_state["eval_stop_after_cases"] = 10  # the runner checks between 10-case batches
    run(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "Stopped after 10 of 20 cases" in warnings, f"the stop is reported: {warnings!r}"
    assert (summary(at)["Cases"] == 10).all(), "the partial result is shown"
    finished = list(at.session_state["eval_partial"].outcomes)
    assert len(finished) == 10, f"ten cases kept: {len(finished)}"
    at.session_state["eval_stop_after_cases"] = None
    run(at, "eval_continue")
    assert not any("Stopped after" in w.value for w in at.warning), "the run is complete"
    assert (summary(at)["Cases"] == 20).all(), "all twenty cases are shown"
    result = at.session_state["eval_results"][at.session_state["eval_current"]]
    assert all(a is b for a, b in zip(result.cases[:10], finished, strict=True)), \
        "Continue kept the first ten outcomes and computed only the other ten"


@pytest.mark.slow
def test_a_removal_value_other_than_the_baseline_is_a_new_result() -> None:
    at = open_page("image", "digits_cnn", n_cases=10, methods=("IG", "Gradient x Input"))
    run(at)
    first = summary(at)
    at.selectbox(key="eval_removal_digits_cnn").set_value("blurred").run()
    assert any("inputs changed" in i.value for i in at.info), "a new removal makes it stale"
    run(at)
    assert len(at.session_state["eval_results"]) == 2, "stored beside the first result"
    header = " ".join(c.value for c in at.caption)
    assert "removed units become blurred" in header, f"the removal is stated: {header!r}"
    changed = summary(at)["Deletion AUC, mean ↓"].to_numpy(dtype=np.float64)
    assert not np.allclose(changed, first["Deletion AUC, mean ↓"].to_numpy(dtype=np.float64)), \
        "blurring removed patches instead of blacking them out changes the deletion AUCs"


# -- the state helper behind Stop, driven directly (AppTest cannot click during a run) -----------

def _case(case_id: str) -> EvalCase:
    return EvalCase(case_id=case_id, inputs=torch.full((1, 2), float(len(case_id))),
                    baseline=torch.zeros(1, 2), target=0, references=torch.zeros(1, 2))


def _outcome(case_id: str) -> CaseOutcome:
    zeros = np.zeros(3)
    return CaseOutcome(case_id=case_id, target=0, label=None, predicted=0, f_input=1.0,
                       f_baseline=0.0, fractions=zeros, random_deletion=zeros,
                       random_insertion=zeros, random_deletion_auc=0.5,
                       random_insertion_auc=0.5, outcomes=(), disagreement=math.nan)


def _result(outcomes: list[CaseOutcome], cancelled: bool) -> EvaluationResult:
    return EvaluationResult(model_name="m", model_title="M", modality="tabular",
                            weights_hash="w", class_names=(), settings=EvaluationSettings(),
                            cases=tuple(outcomes), n_requested=4, cancelled=cancelled,
                            seconds=0.0, device="cpu")


def test_a_run_interrupted_by_a_rerun_is_offered_to_continue() -> None:
    state: dict[str, object] = {}
    store = EvaluationStore(state)
    cases = [_case(name) for name in ("a", "bb", "ccc", "dddd")]
    key = result_key("m", "w", cases_digest(cases), EvaluationSettings())
    store.begin(key, "m", cases, EvaluationSettings())
    for name in ("a", "bb", "a"):  # a repeat is ignored
        store.record(_outcome(name))
    # Here Streamlit would raise inside the run: the next script run finds it still running.
    partial = store.interrupted()
    assert partial is not None and not partial.running, "the run is marked stopped"
    assert (partial.n_done, partial.n_total) == (2, 4), "two of four cases were kept"
    assert store.on_screen() == (key, None, partial), "the partial run is what is on screen"
    assert store.interrupted() is partial and not partial.running, "idempotent on later runs"
    resumed = store.resume()
    assert resumed is partial and resumed.running, "Continue runs the same partial run"
    store.record(_outcome("ccc"))
    store.record(_outcome("dddd"))
    complete = _result(partial.outcomes, cancelled=False)
    store.finish(complete)
    assert store.partial is None, "a complete run leaves no partial run"
    assert store.on_screen() == (key, complete, None), "the complete result is shown"


def test_a_run_stopped_before_its_first_case_keeps_the_earlier_result() -> None:
    store = EvaluationStore({})
    earlier_cases = [_case("a")]
    earlier_key = result_key("m", "w", cases_digest(earlier_cases), EvaluationSettings())
    store.begin(earlier_key, "m", earlier_cases, EvaluationSettings())
    earlier = _result([_outcome("a")], cancelled=False)
    store.finish(earlier)
    cases = [_case("bb"), _case("ccc")]
    store.begin(result_key("m", "w", cases_digest(cases), EvaluationSettings()), "m", cases,
                EvaluationSettings())
    partial = store.interrupted()
    assert partial is not None and partial.n_done == 0, "stopped with nothing finished"
    assert store.on_screen() == (earlier_key, earlier, None), "the earlier result stays"


def test_a_cancelled_run_stays_partial_and_the_key_tracks_every_input() -> None:
    store = EvaluationStore({})
    cases = [_case("a"), _case("bb")]
    settings = EvaluationSettings()
    key = result_key("m", "w", cases_digest(cases), settings)
    store.begin(key, "m", cases, settings)
    store.record(_outcome("a"))
    cancelled = _result([_outcome("a")], cancelled=True)
    store.finish(cancelled)
    assert store.partial is not None and store.partial.result is cancelled, "kept as partial"
    assert store.on_screen() == (key, cancelled, store.partial), "the partial result is shown"
    changed_case = [_case("a"), replace(cases[1], target=1)]
    others = {
        "model": result_key("other", "w", cases_digest(cases), settings),
        "weights": result_key("m", "v", cases_digest(cases), settings),
        "cases": result_key("m", "w", cases_digest(changed_case), settings),
        "settings": result_key("m", "w", cases_digest(cases), EvaluationSettings(ig_steps=16)),
    }
    for what, other in others.items():
        assert other != key, f"a change of {what} changes the key"


@pytest.mark.slow
def test_randomisation_check_on_demand_and_in_the_json_record() -> None:
    at = open_page("image", "digits_cnn", n_cases=8, methods=("IG", "IG2", "Saliency"))
    run(at)
    charts_before = len(at.get("plotly_chart"))
    run(at, "eval_sanity_run")
    assert len(at.get("plotly_chart")) == charts_before + 1, "the check draws one chart"
    verdicts = [m.value for m in [*at.success, *at.warning]]
    for method in ("IG", "IG2"):
        assert any(f"**{method}**" in v for v in verdicts), f"{method} verdict in {verdicts}"
    key = at.session_state["eval_current"]
    check = at.session_state["eval_sanity"][key]
    assert check.correlations["IG"][0] == pytest.approx(1.0), "step 0 is trained vs trained"
    assert len(check.correlations["IG"]) == len(check.layers) + 1, "one value per layer"
    at.multiselect(key="eval_methods").set_value(["IG", "IG2"]).run()
    assert not any(b.key == "eval_sanity_run" for b in at.button), \
        "with changed inputs the stale result offers no check of other inputs"
