"""Plotly figures of the Evaluate page: curves, AUC and completeness spreads, agreement, one case.

Figures only read what the core computed (curves, AUCs, deltas, agreement scores); the one
aggregation here is the mean curve over cases, which is what a reader of the chart expects to
see drawn. Every method keeps one colour on every chart.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from attribution_core.evaluation import CaseOutcome, EvaluationResult
from attribution_core.evaluation.figure_style import (
    MARGIN,
    RANDOM_COLOUR,
    method_colour,
    plotly_text,
)
from attribution_core.evaluation.types import UNSIGNED_METHODS, mean_curve
from dashboard.widgets import figures

DARK_SHARE = 0.6  # beyond this share of the colour limit a chip is dark: white text
LOG_FLOOR = 1e-12  # |relative delta| of exactly 0 still gets a point on the log axis
_MARGIN = MARGIN


def metric_values(cases: Sequence[CaseOutcome], method: str, name: str) -> np.ndarray:
    """One method's ``name`` over the cases that ran it (float64; NaN kept)."""
    values = [float(getattr(o, name)) for c in cases for o in c.outcomes if o.method == method]
    return np.asarray(values, dtype=np.float64)


def mean_curves_figure(result: EvaluationResult) -> go.Figure:
    """Mean deletion and insertion curves per method, with the random-order reference."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=(
        "Deletion (lower is better)", "Insertion (higher is better)"))
    cases = result.cases
    grid = np.linspace(0.0, 1.0, max(int(result.settings.curve_points), 2))
    for column, name in enumerate(("deletion", "insertion"), start=1):
        for method in result.methods:
            ran = [c for c in cases if _ran(c, method)]
            mean = mean_curve(ran, lambda c, m=method, n=name: getattr(c.outcome(m), n), grid)
            if not np.isfinite(mean).any():
                continue
            figure.add_trace(go.Scatter(
                x=grid, y=mean, mode="lines", name=method, legendgroup=method,
                showlegend=column == 1, line={"color": method_colour(method), "width": 2},
                hovertemplate=f"{method}<br>%{{x:.0%}} of units<br>mean %{{y:.3f}}"
                              "<extra></extra>"), row=1, col=column)
        random_mean = mean_curve(cases, lambda c, n=name: getattr(c, f"random_{n}"), grid)
        if np.isfinite(random_mean).any():
            figure.add_trace(go.Scatter(
                x=grid, y=random_mean, mode="lines", name="random order",
                legendgroup="random", showlegend=column == 1,
                line={"color": RANDOM_COLOUR, "dash": "dash", "width": 2},
                hovertemplate="random order<br>%{x:.0%} of units<br>mean %{y:.3f}"
                              "<extra></extra>"), row=1, col=column)
    figure.update_xaxes(title={"text": "share of units removed / inserted"}, tickformat=".0%")
    figure.update_yaxes(title={"text": "normalised score"}, col=1)
    figure.update_layout(title={"text": f"Mean curves over {len(cases)} cases"}, height=420,
                         margin=_MARGIN, legend={"orientation": "h", "y": -0.25})
    return figure


def auc_figure(result: EvaluationResult) -> go.Figure:
    """Per-case deletion and insertion AUCs per method (box + every case as a point)."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=(
        "Deletion AUC (lower is better)", "Insertion AUC (higher is better)"))
    cases = result.cases
    for column, (name, random_name) in enumerate(
            (("deletion_auc", "random_deletion_auc"), ("insertion_auc", "random_insertion_auc")),
            start=1):
        for method in result.methods:
            values = metric_values(cases, method, name)
            figure.add_trace(_box(values, method, method_colour(method), column == 1,
                                  [c.case_id for c in cases if _ran(c, method)]),
                             row=1, col=column)
        random = np.asarray([getattr(c, random_name) for c in cases], dtype=np.float64)
        figure.add_trace(_box(random, "random order", RANDOM_COLOUR, column == 1,
                              [c.case_id for c in cases]), row=1, col=column)
    figure.update_yaxes(title={"text": "area under the curve"}, col=1)
    figure.update_layout(title={"text": "AUC per case"}, height=440, margin=_MARGIN,
                         showlegend=False)
    return figure


def _ran(case: CaseOutcome, method: str) -> bool:
    return any(o.method == method for o in case.outcomes)


def _box(values: np.ndarray, name: str, colour: str, legend: bool,
         labels: Sequence[str]) -> go.Box:
    return go.Box(y=values, name=name, boxpoints="all", jitter=0.4, pointpos=0,
                  marker={"color": colour, "size": 4, "opacity": 0.6},
                  line={"color": colour}, showlegend=legend, legendgroup=name,
                  text=[plotly_text(label) for label in labels],
                  hovertemplate="%{text}<br>%{y:.4g}<extra>" + html.escape(name) + "</extra>")


def completeness_figure(result: EvaluationResult) -> tuple[go.Figure | None, list[str]]:
    """|relative completeness error| per method on a log axis; methods without one listed."""
    figure = go.Figure()
    omitted: list[str] = []
    for method in result.methods:
        values = np.abs(metric_values(result.cases, method, "relative_delta"))
        finite = np.isfinite(values)
        if not finite.any():
            omitted.append(method)
            continue
        labels = [c.case_id for c in result.cases if _ran(c, method)]
        figure.add_trace(_box(np.maximum(values[finite], LOG_FLOOR), method,
                              method_colour(method), False,
                              [label for label, keep in zip(labels, finite, strict=True)
                               if keep]))
    if not figure.data:
        return None, omitted
    for level, colour in ((figures.GREEN_BELOW, "#2e7d32"), (figures.AMBER_BELOW, "#f9a825")):
        figure.add_hline(y=level, line={"color": colour, "dash": "dot"})
        # Annotations on a log axis take log10 coordinates (shapes take data coordinates).
        figure.add_annotation(x=1.0, xref="paper", y=float(np.log10(level)), yref="y",
                              text=f"{100 * level:g} %", showarrow=False, xanchor="right",
                              yanchor="bottom", font={"color": colour})
    figure.update_yaxes(type="log", title={"text": "|relative completeness error|"},
                        tickformat=".0e", dtick=1)  # one tick per decade
    figure.update_layout(title={"text": "Completeness error per case"}, height=400,
                         margin=_MARGIN, showlegend=False)
    return figure, omitted


AGREEMENT_METRICS = (
    ("precision_at_k", "Top-k precision", "share of the top-k units that are expected"),
    ("rank_correlation", "Rank correlation", "Spearman ρ of |score| with the expectation"),
    ("mask_share", "Mask share", "share of |attribution| inside the expected area"),
)


def agreement_figure(result: EvaluationResult) -> go.Figure:
    """Agreement with the expected features, per method; the mask share panel also shows the
    share a uniform map would get (the expected area's share of the map)."""
    cases = [c for c in result.cases if c.expected is not None]
    figure = make_subplots(rows=1, cols=len(AGREEMENT_METRICS),
                           subplot_titles=[title for _, title, _ in AGREEMENT_METRICS])
    for column, (name, _title, _help) in enumerate(AGREEMENT_METRICS, start=1):
        for method in result.methods:
            values = metric_values(cases, method, name)
            figure.add_trace(_box(values, method, method_colour(method), False,
                                  [c.case_id for c in cases if _ran(c, method)]),
                             row=1, col=column)
    share = result.expected_area_share
    if np.isfinite(share):
        figure.add_hline(y=share, line={"color": RANDOM_COLOUR, "dash": "dash"},
                         annotation_text=f"expected area {share:.0%}",
                         annotation_position="top left", row=1, col=len(AGREEMENT_METRICS))
    figure.update_layout(title={"text": f"Agreement with the expected features "
                                        f"({len(cases)} cases)"},
                         height=420, margin=_MARGIN, showlegend=False)
    figure.update_xaxes(tickangle=-30)
    return figure


# -- one case -------------------------------------------------------------------------------------

def shared_limit(case: CaseOutcome, methods: Sequence[str], percentile: float = 99.0) -> float:
    """One colour limit for every map of a case: a high percentile of all |scores| (colours
    saturate beyond it; bars use the 100th so that no bar is cut)."""
    values = [np.abs(np.asarray(case.outcome(m).scores, dtype=np.float64)).ravel()
              for m in methods]
    joined = np.concatenate(values) if values else np.zeros(1)
    joined = joined[np.isfinite(joined)]
    limit = float(np.percentile(joined, percentile)) if joined.size else 0.0
    return limit if limit > 0 else 1.0


def case_limits(case: CaseOutcome, methods: Sequence[str], percentile: float = 99.0
                ) -> dict[str, float]:
    """Colour limits per method: one shared by the signed methods (all in the model's output
    units, so a paler map is a weaker one), and its own for each unsigned gradient map, whose
    units are not comparable (on the shared scale it would swamp or vanish)."""
    signed = [m for m in methods if m not in UNSIGNED_METHODS]
    shared = shared_limit(case, signed, percentile) if signed else 1.0
    return {m: shared if m in signed else shared_limit(case, [m], percentile) for m in methods}


def image_map_figure(case: CaseOutcome, method: str, limit: float) -> go.Figure:
    """One method's map over the case's picture, on the shared signed scale."""
    scores = np.asarray(case.outcome(method).scores, dtype=np.float64)
    picture = np.asarray(case.display) if case.display is not None else None
    if picture is None or picture.shape[:2] != scores.shape:
        figure = figures.heatmap_figure(scores, limit, "signed", "Red-blue (diverging)", method)
    else:
        figure = figures.overlay_figure(picture, scores, limit, "signed",
                                        "Red-blue (diverging)", 0.6, method)
    figure.update_layout(width=None, height=300, margin={"l": 5, "r": 5, "t": 35, "b": 5})
    return figure


def token_html(case: CaseOutcome, method: str, limit: float) -> str:
    """The case's tokens as chips coloured by one method's scores (value on hover)."""
    scores = np.asarray(case.outcome(method).scores, dtype=np.float64)
    tokens = list(case.unit_names or case.display or ())
    expected = case.expected if case.expected is not None else np.zeros(len(scores), bool)
    chips = []
    for index, (token, score) in enumerate(zip(tokens, scores, strict=False)):
        background = figures.colour_for(float(score), limit)
        border = "2px solid #222" if bool(expected[index]) else "1px solid transparent"
        colour = "#ffffff" if abs(score) > DARK_SHARE * limit else "#111111"
        title = html.escape(f"token {index}: {token} = {score:+.6g}", quote=True)
        chips.append(f'<span title="{title}" style="background:{background};color:{colour};'
                     f"border:{border};border-radius:4px;padding:1px 4px;margin:2px 1px;"
                     f'display:inline-block">{html.escape(str(token))}</span>')
    return (f'<div style="line-height:2.1"><b>{html.escape(method)}</b><br>'
            + " ".join(chips) + "</div>")


def feature_bars_figure(case: CaseOutcome, method: str, limit: float, top: int = 12
                        ) -> go.Figure:
    """One method's features ranked by |score| (largest on top), on the shared x range."""
    scores = np.asarray(case.outcome(method).scores, dtype=np.float64)
    names = list(case.unit_names) or [f"feature {i}" for i in range(scores.size)]
    expected = case.expected if case.expected is not None else np.zeros(scores.size, bool)
    order = np.argsort(-np.abs(np.nan_to_num(scores)), kind="stable")[:top][::-1]
    labels = [plotly_text(names[i] + (" ★" if bool(expected[i]) else "")) for i in order]
    figure = go.Figure(go.Bar(
        x=scores[order], y=labels, orientation="h",
        marker={"color": [figures.colour_for(float(scores[i]), limit) for i in order],
                "line": {"color": "#555", "width": 0.5}},
        hovertemplate="%{y}<br>score %{x:.6g}<extra></extra>"))
    figure.update_xaxes(range=[-1.05 * limit, 1.05 * limit], zeroline=True,
                        zerolinecolor="#888")
    figure.update_yaxes(automargin=True)
    figure.update_layout(title={"text": method}, height=max(240, 24 * len(order) + 80),
                         margin={"l": 5, "r": 5, "t": 35, "b": 5}, showlegend=False)
    return figure


def case_curves_figure(case: CaseOutcome, methods: Sequence[str]) -> go.Figure:
    """This case's deletion and insertion curves per method, with its random-order curves."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=(
        "Deletion (lower is better)", "Insertion (higher is better)"))
    fractions = np.asarray(case.fractions, dtype=np.float64)
    for column, (name, random) in enumerate(
            (("deletion", case.random_deletion), ("insertion", case.random_insertion)),
            start=1):
        for method in methods:
            outcome = case.outcome(method)
            figure.add_trace(go.Scatter(
                x=fractions, y=np.asarray(getattr(outcome, name), dtype=np.float64),
                mode="lines+markers", name=method, legendgroup=method,
                showlegend=column == 1, marker={"size": 4},
                line={"color": method_colour(method)}), row=1, col=column)
        figure.add_trace(go.Scatter(
            x=fractions, y=np.asarray(random, dtype=np.float64), mode="lines",
            name="random order", legendgroup="random", showlegend=column == 1,
            line={"color": RANDOM_COLOUR, "dash": "dash"}), row=1, col=column)
    figure.update_xaxes(title={"text": "share of units"}, tickformat=".0%")
    figure.update_layout(title={"text": plotly_text(f"Curves of {case.case_id}")}, height=380,
                         margin=_MARGIN, legend={"orientation": "h", "y": -0.3})
    return figure
