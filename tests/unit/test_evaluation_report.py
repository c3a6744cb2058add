"""Evaluation reports: exact JSON round trip (NaN included), strict loading, one offline HTML."""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields, is_dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file

from attribution_core.evaluation.report import (
    SCHEMA_VERSION,
    ReportFormatError,
    environment,
    from_record,
    read_report,
    to_record,
    write_report,
)
from attribution_core.evaluation.report_html import report_html
from attribution_core.evaluation.types import (
    CaseOutcome,
    EvaluationResult,
    EvaluationSettings,
    MethodOutcome,
)

HOSTILE_ID = '<script>alert("x")</script>'


def _outcome(method: str, rng: np.random.Generator, shape: tuple[int, ...], *,
             delta: float = 0.01, dtype: type = np.float64) -> MethodOutcome:
    curve = np.linspace(1.0, 0.0, 5) + rng.normal(0, 0.05, 5)
    return MethodOutcome(
        method=method, scores=rng.normal(size=shape).astype(dtype), deletion=curve,
        insertion=curve[::-1].copy(), deletion_auc=float(rng.uniform(0, 0.5)),
        insertion_auc=float(rng.uniform(0.5, 1)), delta=delta, relative_delta=delta / 3.0,
        precision_at_k=0.5, rank_correlation=float(rng.uniform(-1, 1)), mask_share=0.25,
        pointing_game=1.0, seconds=0.125, n_evaluations=42)


def _case(case_id: str, rng: np.random.Generator, *, kind: str = "image",
          methods: tuple[str, ...] = ("IG", "IG2", "Saliency")) -> CaseOutcome:
    if kind == "image":
        shape: tuple[int, ...] = (8, 8)
        display: Any = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        expected: np.ndarray | None = np.zeros(shape, dtype=bool)
        expected[2:5, 3:6] = True  # type: ignore[index]
        names: tuple[str, ...] = ()
    elif kind == "text":
        names = ("[CLS]", "the", "<b>bold</b>", "[SEP]")
        shape, display, expected = (4,), names, np.array([False, True, True, False])
    else:
        names = ("age", "dose", "weight")
        shape, display, expected = (3,), np.array([41.0, 2.5, np.nan]), None
    outcomes = [_outcome(m, rng, shape) for m in methods]
    # NaN and infinite values must survive: Saliency claims no completeness, and a zero
    # denominator gives an infinite relative error
    outcomes[-1] = replace(outcomes[-1], delta=math.nan, relative_delta=math.nan,
                           scores=outcomes[-1].scores.astype(np.float32))
    outcomes[0] = replace(outcomes[0], relative_delta=math.inf, rank_correlation=-math.inf)
    return CaseOutcome(
        case_id=case_id, target=1, label=None if kind == "tabular" else 2, predicted=1,
        f_input=0.9, f_baseline=0.1, fractions=np.linspace(0, 1, 5),
        random_deletion=np.array([1.0, 0.7, math.nan, 0.2, 0.0]),
        random_insertion=np.linspace(0, 1, 5), random_deletion_auc=0.45,
        random_insertion_auc=0.55, outcomes=tuple(outcomes),
        disagreement=float(rng.uniform(0, 1)), reading_shape=shape, expected=expected,
        unit_names=names, display=display, text="the <b>bold</b>" if kind == "text" else None)


def _result(kinds: tuple[str, ...] = ("image", "image", "image"), *, cancelled: bool = False,
            ids: tuple[str, ...] | None = None, seed: int = 0) -> EvaluationResult:
    rng = np.random.default_rng(seed)
    ids = ids or tuple(f"case {i}" for i in range(len(kinds)))
    return EvaluationResult(
        model_name="digits_cnn", model_title="Digits CNN <test>", modality="image",
        weights_hash="ab" * 32, class_names=tuple(str(i) for i in range(10)),
        settings=EvaluationSettings(methods=("IG", "IG2", "Saliency"), ig_steps=8,
                                    ig2_step_size=0.05, curve_points=5),
        cases=tuple(_case(i, rng, kind=k) for i, k in zip(ids, kinds, strict=True)),
        n_requested=len(kinds) + (2 if cancelled else 0), cancelled=cancelled, seconds=3.25,
        device="CPU (2 threads)", expected_area_share=0.14, notes=("note <one>",))


def assert_results_equal(actual: Any, expected: Any, path: str = "result") -> None:
    """Field-by-field equality; NaN equals NaN, arrays must match in dtype, shape and values."""
    if is_dataclass(expected):
        assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
        for item in fields(expected):
            assert_results_equal(getattr(actual, item.name), getattr(expected, item.name),
                                 f"{path}.{item.name}")
    elif isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), f"{path}: not an array but {type(actual)}"
        assert actual.dtype == expected.dtype, f"{path}: dtype {actual.dtype} != {expected.dtype}"
        assert actual.shape == expected.shape, f"{path}: shape {actual.shape} != {expected.shape}"
        assert np.array_equal(actual, expected, equal_nan=expected.dtype.kind in "fc"), \
            f"{path}: values differ"
    elif isinstance(expected, tuple | list):
        assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_results_equal(a, e, f"{path}[{index}]")
    elif isinstance(expected, float):
        assert isinstance(actual, float), f"{path}: {actual!r} is not a float"
        assert (math.isnan(actual) and math.isnan(expected)) or actual == expected, \
            f"{path}: {actual!r} != {expected!r}"
    else:
        assert type(actual) is type(expected) and actual == expected, \
            f"{path}: {actual!r} != {expected!r}"


class _LinkCollector(HTMLParser):
    """src/href attributes of real tags (script bodies, where plotly.js keeps URL strings in
    its code, are not parsed as markup, just as a browser would not)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links.extend(v or "" for k, v in attrs if k in ("src", "href"))


def _link_attributes(page: str) -> list[str]:
    collector = _LinkCollector()
    collector.feed(page)
    return collector.links


def _round_trip(result: EvaluationResult) -> EvaluationResult:
    return from_record(json.loads(json.dumps(to_record(result), allow_nan=False)))


def test_round_trip_is_exact_for_images_tokens_and_rows() -> None:
    result = _result(("image", "text", "tabular"), cancelled=True)
    assert_results_equal(_round_trip(result), result)


def test_empty_cancelled_result_round_trips_and_renders() -> None:
    result = replace(_result(cancelled=True), cases=())
    assert_results_equal(_round_trip(result), result)
    page = report_html(result)
    assert "Cancelled: 0 of 5 cases done." in page, "a run stopped before any case says so"
    assert 'class="figure"' not in page, "no figures without cases"


def test_helper_notices_a_changed_value() -> None:
    # guards the round-trip test: the comparison must fail on a one-ulp change and on NaN vs 0
    result = _result()
    first = result.cases[0]
    scores = first.outcomes[0].scores.copy()
    scores[0, 0] = np.nextafter(scores[0, 0], np.inf)
    nudged = replace(result, cases=(replace(first, outcomes=(
        replace(first.outcomes[0], scores=scores), *first.outcomes[1:])), *result.cases[1:]))
    with pytest.raises(AssertionError):
        assert_results_equal(nudged, result)
    zeroed = replace(result, expected_area_share=0.0)
    with pytest.raises(AssertionError):
        assert_results_equal(replace(zeroed, expected_area_share=math.nan), zeroed)


def test_record_is_strict_json_with_null_for_nan() -> None:
    result = _result()
    record = to_record(result, extra={"command": "test"})
    text = json.dumps(record, allow_nan=False)  # raises if any NaN or inf were left
    saliency = record["cases"][0]["outcomes"][2]
    assert saliency["method"] == "Saliency" and saliency["delta"] is None, \
        "a NaN completeness error must be written as null"
    assert record["cases"][0]["outcomes"][0]["relative_delta"] == "inf", \
        "an infinite value must be written as the string 'inf'"
    assert record["cases"][0]["random_deletion"]["values"][2] is None, \
        "a NaN inside an array must be written as null"
    assert record["cases"][0]["display"]["data_url"].startswith("data:image/png;base64,"), \
        "an image display must be embedded as a PNG data URL"
    assert record["n_done"] == 3 and record["extra"] == {"command": "test"}, \
        "n_done counts the finished cases and extra is kept"
    assert record["model"]["weights_sha256"] == "ab" * 32 and "digits_cnn" in text, \
        "the model's identity must be recorded"
    summary = {row["method"]: row for row in record["summary"]}
    for expected in result.summaries():
        assert summary[expected.method]["deletion_auc_mean"] == pytest.approx(
            expected.deletion_auc_mean, abs=0), "summary values are the result's summaries"


def test_environment_lists_versions_and_device() -> None:
    info = environment("cpu")
    assert info["numpy"] == np.__version__, "numpy's version must be the one in use"
    assert info["device"] == "cpu" and info["python"].count(".") == 2, \
        "device and Python version must be recorded"
    assert "torch" in info and "captum" in info and "plotly" in info, \
        "every package that shapes the numbers must be listed"


def test_loading_rejects_other_schema_versions() -> None:
    record = to_record(_result())
    record["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ReportFormatError, match="schema version"):
        from_record(record)
    record["schema"] = "something else"
    with pytest.raises(ValueError, match="not an evaluation report"):
        from_record(record)


@pytest.mark.parametrize("remove", ["cases", "model.weights_sha256", "case.fractions",
                                    "outcome.scores", "settings.ig_steps"])
def test_loading_names_the_missing_key(remove: str) -> None:
    record = to_record(_result())
    holder: dict[str, Any] = {
        "cases": record, "model.weights_sha256": record["model"],
        "case.fractions": record["cases"][0],
        "outcome.scores": record["cases"][0]["outcomes"][0],
        "settings.ig_steps": record["settings"]}[remove]
    key = remove.split(".")[-1]
    del holder[key]
    with pytest.raises(ValueError, match=key):
        from_record(record)


def test_html_is_self_contained_and_escapes_user_strings() -> None:
    result = _result(ids=(HOSTILE_ID, "plain", "other"))
    page = report_html(result)
    assert HOSTILE_ID not in page, "a case id must never reach the page unescaped"
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page, \
        "the hostile case id must be shown, escaped"
    assert "note &lt;one&gt;" in page and "Digits CNN &lt;test&gt;" in page, \
        "notes and titles must be escaped"
    links = _link_attributes(page)
    assert links, "the input pictures' src attributes must have been found (parser check)"
    external = [a for a in links if re.match(r"(?i)\s*(https?:)?//", a)]
    assert not external, f"the page must not load anything from elsewhere: {external[:5]}"
    assert all(a.startswith("data:image/png;base64,") for a in links), \
        f"only embedded pictures may be linked: {[a[:40] for a in links]}"
    assert page.count("<script") - page.count("Plotly.newPlot(") == 1, \
        "plotly.js must be embedded exactly once (one script besides the figures' own)"
    # 2 mean curves + 2 AUC boxes + completeness + agreement + one map figure per case
    assert page.count('class="figure"') == 6 + len(result.cases), \
        "every summary figure and one map figure per case section are expected"
    assert page.count("<img") == len(result.cases), "each image case shows its input picture"


def test_html_shows_cancellation_and_text_tokens() -> None:
    result = _result(("text", "text"), cancelled=True)
    page = report_html(result)
    assert "Cancelled: 2 of 4 cases done." in page, "a cancelled run must say how far it got"
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page, \
        "tokens must be escaped"
    assert page.count('class="tokens"') == 2, "each text case shows its coloured tokens"


def test_html_without_expectations_has_no_agreement_figure() -> None:
    result = _result(("tabular", "tabular"))
    page = report_html(result)
    assert 'data-figure="agreement"' not in page, "no expectations, no agreement figure"
    assert page.count('data-figure="case-input"') == 2, "tabular inputs are shown as bars"


def test_write_report_writes_three_files_that_load_back(tmp_path: Path) -> None:
    result = _result(("image", "image"), ids=("a/b", "c"))
    files = write_report(result, tmp_path / "out", stem="run")
    for path in (files.json_path, files.html_path, files.attributions_path):
        assert path.is_file() and path.stat().st_size > 0, f"{path} must be written"
    assert_results_equal(read_report(files.json_path), result)
    maps = load_file(str(files.attributions_path))
    assert len(maps) == sum(len(c.outcomes) for c in result.cases), "one map per case x method"
    for case in result.cases:
        for outcome in case.outcomes:
            stored = maps[f"{case.case_id}/{outcome.method}"].numpy()
            assert stored.dtype == outcome.scores.dtype and np.array_equal(
                stored, outcome.scores), f"{case.case_id}/{outcome.method} must load back"
    with safe_open(str(files.attributions_path), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["weights_sha256"] == result.weights_hash, "maps must name their model"


def test_read_report_rejects_broken_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"schema": ', encoding="utf-8")
    with pytest.raises(ReportFormatError, match="not valid JSON"):
        read_report(path)


def test_page_and_report_draw_each_method_in_one_colour() -> None:
    from attribution_core.evaluation.figure_style import method_colour
    from dashboard.evaluate import figures as evaluate_figures

    result = _result()
    page = report_html(result)
    page_figure = evaluate_figures.mean_curves_figure(result)
    for method in result.methods:
        colour = method_colour(method)
        assert colour in page, f"the report draws {method} in {colour}"
        drawn = {trace.line.color for trace in page_figure.data if trace.name == method}
        assert drawn == {colour}, f"the page draws {method} in {drawn}, the report in {colour}"
