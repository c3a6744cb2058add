"""Reading the image page's results back out of an AppTest."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def metric(at: AppTest, label: str) -> float:
    """The number shown by the st.metric labelled ``label`` (a trailing % is dropped)."""
    for item in at.metric:
        if item.label == label:
            return float(str(item.value).replace("%", "").strip())
    raise AssertionError(f"no metric {label!r}; have {[m.label for m in at.metric]}")


def chart_count(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def region_tables(at: AppTest) -> list[object]:
    return [frame for frame in at.dataframe if "region" in frame.value.columns]


def explain(at: AppTest, method: str) -> AppTest:
    at.radio(key="img_method").set_value(method).run()
    at.button(key="img_explain").click().run()
    assert not at.exception, f"Explain with {method} raised: {at.exception}"
    assert not at.error, f"Explain with {method} showed errors: {[e.value for e in at.error]}"
    return at


def chart_titles(at: AppTest) -> list[str]:
    """Titles of every Plotly figure on the page (gauges: their indicator's title)."""
    import json

    titles = []
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec.get("layout", {}).get("title", {}).get("text")
        if title is None:
            title = next((trace.get("title", {}).get("text") for trace in spec.get("data", [])
                          if trace.get("type") == "indicator"), "")
        titles.append(title or "")
    return titles
