"""The Evaluate page's validity benchmark section through AppTest."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

pytestmark = [pytest.mark.app, pytest.mark.slow]
PAGE = Path(__file__).resolve().parents[2] / "pages" / "evaluate.py"
TIMEOUT_S = 600


def test_validity_section_runs_and_shows_the_table() -> None:
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception, f"opening the Evaluate page raised: {at.exception}"
    at.selectbox(key="validity_dataset").set_value("gaussianLinear").run()
    at.number_input(key="validity_cases").set_value(10).run()
    at.multiselect(key="validity_methods").set_value(["IG(mean)", "Random"]).run()
    at.button(key="validity_run").click().run()
    assert not at.exception, f"running the validity benchmark raised: {at.exception}"
    assert not at.error, f"the run showed errors: {[e.value for e in at.error]}"
    tables = [frame.value for frame in at.dataframe if "method" in frame.value.columns]
    assert tables, "the section should show a table of methods"
    table = tables[-1]
    assert list(table["method"]) == ["IG(mean)", "Random"], f"one row per method: {table}"
    corr = {m: float(str(v).split()[0]) for m, v in zip(table["method"],
                                                          table["Shapley corr. ↑"],
                                                          strict=True)}
    assert corr["IG(mean)"] > 0.9 > corr["Random"], \
        f"on the linear benchmark IG(mean) should track the Shapley values, random not: {corr}"
    assert set(table["cases"]) == {10}, "every case should be scored"
