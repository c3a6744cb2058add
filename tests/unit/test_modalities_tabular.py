"""attribution_core.modalities.tabular: per-cell CSV validation, ranking, waterfall, references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attribution_core.modalities import tabular as tab_io

NAMES = ("age", "bmi", "bp")


def _csv(text: str) -> bytes:
    return text.encode("utf-8")


def test_a_good_csv_parses_in_schema_order() -> None:
    checked = tab_io.read_csv_rows(_csv("bp,age,bmi\n1.5,40,22\n2,50,30.5\n"), NAMES)
    assert checked.values.tolist() == [[40.0, 22.0, 1.5], [50.0, 30.5, 2.0]], \
        f"columns reordered to the schema: {checked.values.tolist()}"
    assert checked.problems == () and checked.row_numbers == (0, 1), "no problems, rows kept"


def test_missing_columns_are_named() -> None:
    with pytest.raises(tab_io.TabularInputError, match=r"lacks 2 .*'bmi', 'bp'"):
        tab_io.read_csv_rows(_csv("age\n40\n"), NAMES)


def test_extra_columns_are_reported_not_silently_used() -> None:
    checked = tab_io.read_csv_rows(_csv("age,bmi,bp,patient\n40,22,1,ann\n"), NAMES)
    assert checked.ignored_columns == ("patient",), "the extra column is listed"
    assert any(p.column == "patient" and "ignored" in p.problem for p in checked.problems), \
        "and reported as a problem entry"
    assert checked.values.shape == (1, 3), "the row itself is fine"


def test_every_bad_cell_is_reported_with_row_and_column() -> None:
    text = "age,bmi,bp\n40,22,1\nold,22,1\n41,NaN,inf\n42,,1\n43,-Infinity,2\n"
    checked = tab_io.read_csv_rows(_csv(text), NAMES)
    found = {(p.row, p.column): p.problem for p in checked.problems}
    assert "not a number" in found[(1, "age")], f"text in a numeric column: {found}"
    assert "NaN" in found[(2, "bmi")] and "infinite" in found[(2, "bp")], \
        f"NaN and inf in the same row are both reported: {found}"
    assert "empty" in found[(3, "bmi")], f"an empty cell is reported: {found}"
    assert "infinite" in found[(4, "bmi")], f"-Infinity is reported: {found}"
    assert checked.row_numbers == (0,) and checked.rejected_rows == (1, 2, 3, 4), \
        "only the clean row is kept; every rejected row is accounted for"
    assert checked.n_rows_read == 5, "all rows were read"
    assert "row 2" in tab_io.CellProblem(1, "age", "x").describe(), "1-based row in messages"


@pytest.mark.parametrize("data, words", [
    (b"", "empty"), (b"   \n", "empty"), (b"age,bmi,bp\n", "no data rows"),
    (b"\xff\xfe\x00bad", "not UTF-8"),
])
def test_unusable_files_give_a_clear_message(data: bytes, words: str) -> None:
    with pytest.raises(tab_io.TabularInputError, match=words):
        tab_io.read_csv_rows(data, NAMES)


def test_size_and_row_limits() -> None:
    big = b"age,bmi,bp\n" + b"1,2,3\n" * 10
    with pytest.raises(tab_io.TabularInputError, match="MB"):
        tab_io.read_csv_rows(big, NAMES, limit=20)
    with pytest.raises(tab_io.TabularInputError, match="at most 5 are explained"):
        tab_io.read_csv_rows(big, NAMES, max_rows=5)


def test_duplicate_columns_are_refused() -> None:
    with pytest.raises(tab_io.TabularInputError, match="repeats"):
        tab_io.read_csv_rows(b"age,age,bmi,bp\n1,2,3,4\n", NAMES)


def test_edited_row_reports_bad_cells() -> None:
    values, problems = tab_io.validate_edited_row([1.0, None, "x"], NAMES)
    assert values[0] == 1.0 and math.isnan(values[1]), "good cells parse, bad ones stay NaN"
    assert [p.column for p in problems] == ["bmi", "bp"], f"both bad cells named: {problems}"


def test_ranked_features_order_by_magnitude_with_values() -> None:
    ranked = tab_io.ranked_features([0.5, -2.0, 1.0], NAMES, [40.0, 22.0, 1.5], [1, 2, 3])
    assert [f.name for f in ranked] == ["bmi", "bp", "age"], "largest |attribution| first"
    assert ranked[0].value == 22.0 and ranked[0].baseline_value == 2.0, "values carried along"
    assert sum(abs(f.share) for f in ranked) == pytest.approx(1.0), "shares of |total|"


def test_waterfall_closes_at_f_x_with_the_residual_bar() -> None:
    attributions = np.array([0.25, -1.0, 2.0])
    f_baseline, f_input = 1.0, 2.5  # attributions sum to 1.25, so the residual is 0.25
    steps = tab_io.waterfall_steps(attributions, NAMES, f_baseline, f_input, top_k=2)
    labels = [s.label for s in steps]
    assert labels[0] == "f(baseline)" and labels[-1] == "f(x)", f"start and end: {labels}"
    assert labels[1:3] == ["bp", "bmi"], f"top features by |attribution|: {labels}"
    assert "1 other features" in labels, f"the rest is one bar: {labels}"
    residual = next(s for s in steps if s.label == "completeness residual")
    assert residual.value == pytest.approx(0.25), f"residual = f(x) - f(b) - sum: {residual}"
    assert tab_io.waterfall_end(steps) == pytest.approx(f_input, abs=1e-15), \
        "the bars end at f(x)"


def test_distant_target_references_are_far_and_seeded() -> None:
    targets = np.arange(100, dtype=np.float64)
    first = tab_io.distant_target_indices(targets, value=10.0, k=5, seed=1)
    again = tab_io.distant_target_indices(targets, value=10.0, k=5, seed=1)
    assert first.tolist() == again.tolist(), "same seed, same references"
    assert len(first) == 5 and all(targets[i] >= 75 for i in first), \
        f"drawn from the farthest quarter: {first.tolist()}"


def test_row_summary_takes_the_top_features() -> None:
    assert tab_io.row_summary([0.1, -3.0, 2.0], NAMES, top_k=2) == [("bmi", -3.0), ("bp", 2.0)], \
        "top two by |attribution|"
