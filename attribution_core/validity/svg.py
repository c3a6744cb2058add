"""A hand-written SVG dot plot of Shapley correlation with 95 % intervals (no plotting deps)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
LEFT, RIGHT, TOP, ROW, BAND = 200, 40, 30, 34, 4.5
WIDTH = 760
X_MIN, X_MAX = -0.4, 1.0


def _x(value: float) -> float:
    clipped = min(max(value, X_MIN), X_MAX)
    return LEFT + (clipped - X_MIN) / (X_MAX - X_MIN) * (WIDTH - LEFT - RIGHT)


def interval_plot(rows: Sequence[Mapping[str, Any]], metric: str = "shapley_corr") -> str:
    """Methods down the side, one coloured dot and whisker per (data set, rho)."""
    tabular = [r for r in rows if r["benchmark"] == "xai-bench" and r.get(metric) is not None]
    methods = list(dict.fromkeys(r["method"] for r in tabular))
    settings = list(dict.fromkeys((r["dataset"], r["rho"]) for r in tabular))
    height = TOP + ROW * len(methods) + 30 + 16 * len(settings)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             f'<text x="{LEFT}" y="16">{escape(metric)} (mean and 95 % bootstrap interval; '
             'values below -0.4 drawn at the edge)</text>']
    axis_bottom = TOP + ROW * len(methods)
    for tick in (-0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        x = _x(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{axis_bottom}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{axis_bottom + 14}" text-anchor="middle">'
                     f'{tick:g}</text>')
    for m_index, method in enumerate(methods):
        y0 = TOP + ROW * m_index + 5
        parts.append(f'<text x="{LEFT - 8}" y="{y0 + ROW / 2:.1f}" text-anchor="end">'
                     f'{escape(method)}</text>')
        for s_index, setting in enumerate(settings):
            row = next((r for r in tabular if r["method"] == method
                        and (r["dataset"], r["rho"]) == setting), None)
            if row is None:
                continue
            y = y0 + BAND * s_index
            low, high = row["ci95"][metric]
            colour = COLOURS[s_index % len(COLOURS)]
            if low is not None and high is not None:
                parts.append(f'<line x1="{_x(low):.1f}" y1="{y:.1f}" x2="{_x(high):.1f}" '
                             f'y2="{y:.1f}" stroke="{colour}" stroke-width="1.5"/>')
            parts.append(f'<circle cx="{_x(row[metric]):.1f}" cy="{y:.1f}" r="2.5" '
                         f'fill="{colour}"/>')
    for s_index, (dataset, rho) in enumerate(settings):
        y = axis_bottom + 32 + 16 * s_index
        colour = COLOURS[s_index % len(COLOURS)]
        parts.append(f'<circle cx="{LEFT + 6}" cy="{y - 4}" r="4" fill="{colour}"/>')
        parts.append(f'<text x="{LEFT + 16}" y="{y}">{escape(dataset)}, rho = {rho:g}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
