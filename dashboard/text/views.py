"""Text highlighted by attribution (HTML), its colour legend, and Plotly figure wrappers.

The colour scale is the image page's red-blue diverging one (ColorBrewer RdBu, readable with the
common colour-vision deficiencies): red pushed the explained class's score up, blue down. Each
token's exact value is in its hover title and in the table under the text.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.colors as plotly_colors
import plotly.graph_objects as go

from attribution_core.evaluation.figure_style import plotly_text
from attribution_core.modalities import text as text_io
from dashboard.widgets import figures

SCALE = "RdBu_r"
DARK_TEXT, LIGHT_TEXT = "#111111", "#ffffff"


def _text_colour(background: str) -> str:
    red, green, blue = (float(c) for c in plotly_colors.unlabel_rgb(background))
    luminance = (0.299 * red + 0.587 * green + 0.114 * blue) / 255.0
    return DARK_TEXT if luminance > 0.55 else LIGHT_TEXT


def highlighted_html(units: Sequence[text_io.ScoredUnit], limit: float, unit_name: str) -> str:
    """Every unit as a coloured chip; its title (hover) gives the exact attribution."""
    chips = []
    for unit in units:
        background = figures.colour_for(unit.score, limit)
        border = "1px dashed #777" if unit.special else "1px solid transparent"
        label = html.escape(unit.text if unit.text.strip() else "␣")
        title = html.escape(f"{unit_name} {unit.position}: {unit.text} = {unit.score:+.6g}"
                            + (" (special token)" if unit.special else ""), quote=True)
        chips.append(
            f'<span title="{title}" style="background:{background};'
            f"color:{_text_colour(background)};border:{border};border-radius:4px;"
            f'padding:1px 4px;margin:2px 1px;display:inline-block;line-height:1.6">'
            f"{label}</span>")
    return '<div style="font-size:1.05rem;line-height:2.1">' + " ".join(chips) + "</div>"


def legend_html(limit: float) -> str:
    """A gradient bar from -limit (blue) through 0 (white) to +limit (red), values marked."""
    stops = ", ".join(figures.colour_for(v * limit, limit) for v in (-1.0, -0.5, 0.0, 0.5, 1.0))
    return (
        '<div style="max-width:420px;font-size:0.85rem">'
        f'<div style="height:12px;border-radius:3px;background:linear-gradient(to right, '
        f'{stops});border:1px solid #ccc"></div>'
        '<div style="display:flex;justify-content:space-between">'
        f"<span>{-limit:+.3g} (against)</span><span>0</span>"
        f"<span>{limit:+.3g} (for the class)</span></div></div>")


def ranked_bar_figure(ranked: Sequence[text_io.RankedUnit], title: str) -> go.Figure:
    """Horizontal bars of the top units, largest |attribution| on top."""
    shown = list(ranked)[::-1]
    limit = max((abs(r.score) for r in shown), default=1.0) or 1.0
    figure = go.Figure(go.Bar(
        x=[r.score for r in shown], y=[plotly_text(f"{r.rank}. {r.text}") for r in shown],
        orientation="h",
        marker={"color": [figures.colour_for(r.score, limit) for r in shown],
                "line": {"color": "#555", "width": 0.5}},
        hovertemplate="%{y}<br>attribution %{x:.6g}<extra></extra>"))
    figure.update_layout(title={"text": title}, height=max(220, 26 * len(shown) + 80),
                         margin={"l": 10, "r": 10, "t": 40, "b": 10})
    figure.update_xaxes(title={"text": "attribution (logit units)"}, zeroline=True)
    return figure


