"""Plotly figures shared by the pages: heatmaps, overlays, the completeness gauge, curves, traces.

Heatmaps take an explicit colour limit so several maps can share one scale; the PNG export uses
the same colour scales (see exports.py), so a download looks like what is on screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.colors as plotly_colors
import plotly.graph_objects as go
import streamlit as st

from attribution_core.evaluation.figure_style import plotly_text
from attribution_core.modalities.image import View
from dashboard.widgets import keys

GREEN_BELOW = 0.01
AMBER_BELOW = 0.05
COLOUR_SCALES = {
    "Red-blue (diverging)": ("RdBu_r", "Reds"),
    "Purple-green (diverging)": ("PiYG", "Greens"),
    "Viridis": ("Viridis", "Viridis"),
    "Greys": ("Greys", "Greys"),
}


@dataclass(frozen=True)
class CurvePoint:
    """One point of a delta-vs-steps curve: cost, relative completeness error, how it was got."""

    evaluations: int
    relative_delta: float
    source: str


_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 400, "width": 470}


def scale_for(colour_map: str, view: View) -> str:
    diverging, sequential = COLOUR_SCALES.get(colour_map, COLOUR_SCALES["Red-blue (diverging)"])
    return diverging if view == "signed" else sequential


def colour_range(limit: float, view: View) -> tuple[float, float]:
    return (-limit, limit) if view == "signed" else (0.0, limit)


def heatmap_figure(values: np.ndarray, limit: float, view: View, colour_map: str,
                   title: str) -> go.Figure:
    """The attribution map alone (channels summed), on a fixed colour range."""
    low, high = colour_range(limit, view)
    figure = go.Figure(go.Heatmap(
        z=values, zmin=low, zmax=high, colorscale=scale_for(colour_map, view),
        colorbar={"title": {"text": "attribution"}},
        hovertemplate="row %{y}, column %{x}<br>attribution %{z:.4g}<extra></extra>",
    ))
    figure.update_yaxes(autorange="reversed", scaleanchor="x", showgrid=False)
    figure.update_xaxes(showgrid=False, constrain="domain")
    figure.update_layout(title={"text": title}, **_LAYOUT)
    return figure


def overlay_figure(picture: np.ndarray, values: np.ndarray, limit: float, view: View,
                   colour_map: str, opacity: float, title: str) -> go.Figure:
    """The attribution map drawn over the model's input picture with ``opacity``."""
    low, high = colour_range(limit, view)
    figure = go.Figure()
    figure.add_trace(go.Image(z=picture, hoverinfo="skip"))
    figure.add_trace(go.Heatmap(
        z=values, zmin=low, zmax=high, colorscale=scale_for(colour_map, view), opacity=opacity,
        showscale=False,
        hovertemplate="row %{y}, column %{x}<br>attribution %{z:.4g}<extra></extra>",
    ))
    figure.update_yaxes(autorange="reversed", scaleanchor="x", showgrid=False)
    figure.update_xaxes(showgrid=False, constrain="domain")
    figure.update_layout(title={"text": title}, **_LAYOUT)
    return figure


def completeness_colour(relative_delta: float) -> str:
    if not np.isfinite(relative_delta):
        return "red"
    if relative_delta < GREEN_BELOW:
        return "green"
    return "amber" if relative_delta < AMBER_BELOW else "red"


def gauge_figure(relative_delta: float, title: str) -> go.Figure:
    """Relative completeness error in percent on a green / amber / red dial."""
    percent = 100.0 * relative_delta if np.isfinite(relative_delta) else 100.0
    top = max(10.0, min(100.0, percent * 1.2))
    colour = {"green": "#2e7d32", "amber": "#f9a825", "red": "#c62828"}[
        completeness_colour(relative_delta)]
    figure = go.Figure(go.Indicator(
        mode="gauge+number", value=percent, number={"suffix": " %", "valueformat": ".3g"},
        title={"text": title},
        gauge={
            "axis": {"range": [0, top], "ticksuffix": " %"},
            "bar": {"color": colour, "thickness": 0.3},
            "steps": [
                {"range": [0, 100 * GREEN_BELOW], "color": "#c8e6c9"},
                {"range": [100 * GREEN_BELOW, 100 * AMBER_BELOW], "color": "#fff3c4"},
                {"range": [100 * AMBER_BELOW, top], "color": "#ffcdd2"},
            ],
        },
    ))
    figure.update_layout(margin={"l": 20, "r": 20, "t": 60, "b": 10}, height=240)
    return figure


def colour_for(value: float, limit: float, scale: str = "RdBu_r") -> str:
    """``rgb(...)`` of ``value`` on the diverging scale clipped at +-limit."""
    unit = 0.5 + 0.5 * max(-1.0, min(1.0, value / limit if limit > 0 else 0.0))
    return str(plotly_colors.sample_colorscale(scale, [unit])[0])


def convergence_figure(evaluations: Sequence[int], relative: Sequence[float],
                       sources: Sequence[str], current: int | None,
                       per: str | None = None) -> go.Figure:
    """Relative completeness error against gradient evaluations (log-log), thresholds marked.

    Thresholds and the current run are drawn as traces, not shapes: shapes on log axes take
    log10 coordinates, an easy way to draw a line at 10^300.
    """
    values = [100.0 * max(float(r), 1e-12) for r in relative]  # in percent, like the gauge
    xs = [max(1, int(e)) for e in evaluations]
    low, high = min(xs) / 1.5, max(xs) * 1.5
    figure = go.Figure(go.Scatter(
        x=xs, y=values, mode="lines+markers", text=list(sources), name="relative error",
        hovertemplate="%{x} evaluations<br>relative error %{y:.3g} %<br>%{text}<extra></extra>",
    ))
    for level, colour, label in ((GREEN_BELOW, "#2e7d32", "green below"),
                                 (AMBER_BELOW, "#f9a825", "amber below")):
        figure.add_trace(go.Scatter(
            x=[low, high], y=[100 * level, 100 * level], mode="lines",
            name=f"{label} {100 * level:g} %",
            line={"color": colour, "dash": "dot"}, hoverinfo="skip"))
    if current is not None and current in xs:
        figure.add_trace(go.Scatter(
            x=[current], y=[values[xs.index(current)]], mode="markers", name="this run",
            marker={"size": 13, "symbol": "circle-open", "color": "#333", "line": {"width": 2}},
            hoverinfo="skip"))
    figure.update_xaxes(type="log", title={"text": f"gradient evaluations per {per or 'image'}"})
    figure.update_yaxes(type="log", title={"text": "relative completeness error (%)"})
    figure.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10}, height=320,
                         legend={"orientation": "h", "y": -0.3})
    return figure


def distance_trace_figure(trace: np.ndarray, labels: Sequence[str]) -> go.Figure:
    """Representation distance to each reference along its gradient path."""
    figure = go.Figure()
    for row, label in zip(trace, labels, strict=False):
        figure.add_trace(go.Scatter(y=row, mode="lines", name=plotly_text(label)))
    figure.update_xaxes(title={"text": "path step"})
    figure.update_yaxes(title={"text": "distance to reference"}, rangemode="tozero")
    figure.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10}, height=300)
    return figure


def warm_up_charts() -> None:
    """A blank, 10-pixel chart drawn early, so the browser loads the chart renderer while the
    user sets a run up: otherwise the first results' charts appear seconds after the run ends
    (Streamlit loads Plotly on the first chart a page shows)."""
    blank = go.Figure(layout={"height": 10, "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
                              "xaxis": {"visible": False}, "yaxis": {"visible": False}})
    st.plotly_chart(blank, key=keys.CHART_RENDERER_WARM_UP, config={"staticPlot": True},
                    width="stretch")
