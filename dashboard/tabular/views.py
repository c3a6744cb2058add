"""Plotly figures of the tabular page: ranked feature bars (with values) and the waterfall."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from attribution_core.evaluation.figure_style import plotly_text
from attribution_core.modalities import tabular as tab_io

POSITIVE, NEGATIVE, TOTAL = "#b2182b", "#2166ac", "#555555"


def _value_text(value: float, unit: str) -> str:
    return f"{value:.4g}" + (f" {unit}" if unit and unit != "(scaled)" else "")


def ranked_bar_figure(features: Sequence[tab_io.FeatureAttribution], units: dict[str, str],
                      title: str, texts: dict[str, str] | None = None,
                      baseline_texts: dict[str, str] | None = None) -> go.Figure:
    """Horizontal bars by |attribution| (largest on top); each label carries the row's value
    (``texts``: the values as written, e.g. a category's name, for categorical models)."""
    shown = list(features)[::-1]
    labels = [plotly_text(f"{f.name} = " + (texts[f.name] if texts is not None else
                                            _value_text(f.value, units.get(f.name, ''))))
              for f in shown]
    baselines = [plotly_text(baseline_texts[f.name]) if baseline_texts is not None else
                 f"{f.baseline_value:.4g}" for f in shown]
    figure = go.Figure(go.Bar(
        x=[f.attribution for f in shown], y=labels, orientation="h",
        marker={"color": [POSITIVE if f.attribution >= 0 else NEGATIVE for f in shown]},
        text=[f"{f.attribution:+.3g}" for f in shown], textposition="outside",
        cliponaxis=False,
        customdata=[[b, 100 * f.share] for f, b in zip(shown, baselines, strict=True)],
        hovertemplate=("%{y}<br>attribution %{x:.6g}<br>baseline value %{customdata[0]}"
                       "<br>share %{customdata[1]:+.1f} %<extra></extra>")))
    figure.update_layout(title={"text": title}, height=max(260, 24 * len(shown) + 90),
                         margin={"l": 10, "r": 40, "t": 40, "b": 10}, showlegend=False)
    figure.update_xaxes(title={"text": "attribution (red: for, blue: against)"},
                        zeroline=True, zerolinecolor="#888")
    figure.update_yaxes(automargin=True)
    return figure


def waterfall_figure(steps: Sequence[tab_io.WaterfallStep], title: str) -> go.Figure:
    """f(start) -> one bar per feature -> the completeness residual -> f(x)."""
    measures = [s.measure for s in steps]
    figure = go.Figure(go.Waterfall(
        orientation="v", measure=measures, x=[plotly_text(s.label) for s in steps],
        y=[s.value if s.measure != "total" else 0.0 for s in steps],
        text=[f"{s.value:+.4g}" if s.measure == "relative" else f"{s.value:.4g}"
              for s in steps],
        textposition="outside",
        increasing={"marker": {"color": POSITIVE}}, decreasing={"marker": {"color": NEGATIVE}},
        totals={"marker": {"color": TOTAL}},
        connector={"line": {"color": "#999", "dash": "dot"}},
        hovertemplate="%{x}<br>%{text}<extra></extra>"))
    figure.update_layout(title={"text": title}, height=420, showlegend=False,
                         margin={"l": 10, "r": 10, "t": 40, "b": 10})
    figure.update_xaxes(tickangle=-35, automargin=True)
    return figure
