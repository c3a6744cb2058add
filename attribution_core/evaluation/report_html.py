"""One self-contained HTML page per evaluation: tables, summary figures and the hardest cases.

plotly.js is embedded once in the page and every figure is a bare ``<div>`` + ``Plotly.newPlot``,
so the file opens offline and nothing is fetched from anywhere. Every string that came from a
user (case ids, texts, tokens, feature and class names, notes) goes through ``html.escape``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from attribution_core.evaluation.environment import environment
from attribution_core.evaluation.figure_style import (
    RANDOM_COLOUR,
    SIGNED_COLOURSCALE,
    method_colour,
    plotly_text,
)
from attribution_core.evaluation.record_encoding import image_data_url
from attribution_core.evaluation.report_view import (
    LOG_FLOOR,
    MAX_CASE_SECTIONS,
    RANDOM_LABEL,
    ReportView,
    Spread,
    view_from_result,
)
from attribution_core.evaluation.types import CaseOutcome, EvaluationResult, MethodSummary

# Heat maps larger than this per side are block-averaged: a 224 x 224 map per method per case
# would make the page tens of megabytes without showing more than a screen can.
MAX_HEATMAP_SIDE = 64
_CONFIG = {"displaylogo": False, "responsive": True}
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1400px}
table{border-collapse:collapse;margin:8px 0 16px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}
th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.figure{margin:8px 0 24px}
.warning{background:#fff3cd;border:1px solid #e0c36b;padding:8px 12px}
.case{border-top:2px solid #ddd;margin-top:24px;padding-top:8px}
.tokens span{padding:1px 2px;margin:1px;border-radius:3px;display:inline-block}
img.case-input{image-rendering:pixelated;width:160px;border:1px solid #ccc}
code{font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float | int | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def _table(rows: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _figure(fig: go.Figure, name: str, height: int) -> str:
    fig.update_layout(template="none", height=height, margin={"l": 60, "r": 20, "t": 50, "b": 50},
                      font={"size": 12})
    body = fig.to_html(full_html=False, include_plotlyjs=False, config=_CONFIG,
                       default_height=f"{height}px")
    return f'<div class="figure" data-figure="{_e(name)}">{body}</div>'


# -- summary figures ---------------------------------------------------------------------------

def _curve_figure(view: ReportView, kind: str) -> str:
    grid = view.grid
    fig = go.Figure()
    for method in view.methods:
        fig.add_trace(go.Scatter(x=grid, y=view.mean_curves[kind][method], mode="lines",
                                 name=method, line={"color": method_colour(method)}))
    fig.add_trace(go.Scatter(x=grid, y=view.mean_curves[kind][RANDOM_LABEL], mode="lines",
                             name=RANDOM_LABEL, line={"color": RANDOM_COLOUR, "dash": "dash"}))
    better = "lower" if kind == "deletion" else "higher"
    fig.update_layout(title=f"Mean {kind} curve ({better} area is better)",
                      xaxis_title="fraction of units perturbed",
                      yaxis_title="normalised output (1 = f(x), 0 = f(baseline))")
    return _figure(fig, f"mean-{kind}", 380)


def _box_trace(spread: Spread, *, with_ids: bool, showlegend: bool | None = None) -> go.Box:
    colour = RANDOM_COLOUR if spread.label == RANDOM_LABEL else method_colour(spread.label)
    legend = {} if showlegend is None else {"showlegend": showlegend}
    box = spread.box
    if box is not None:
        # Too many cases to draw one by one: the exact quartiles and whiskers, no points.
        return go.Box(x=[spread.label], q1=[box.q1], median=[box.median], q3=[box.q3],
                      lowerfence=[box.lower_fence], upperfence=[box.upper_fence],
                      mean=[box.mean], name=spread.label, marker={"color": colour},
                      hovertemplate=f"{box.n} cases<extra></extra>", **legend)
    points: dict[str, Any] = {"y": list(spread.values), "name": spread.label,
                              "boxpoints": "all", "jitter": 0.4, "pointpos": 0,
                              "marker": {"color": colour, "size": 4}, **legend}
    if with_ids:
        points.update(text=[plotly_text(i) for i in spread.ids],
                      hovertemplate="%{text}: %{y:.4g}<extra></extra>")
    return go.Box(**points)


def _box_figure(spreads: Sequence[Spread], name: str, title: str, y_title: str,
                log: bool = False) -> str:
    fig = go.Figure()
    for spread in spreads:
        fig.add_trace(_box_trace(spread, with_ids=True))
    fig.update_layout(title=title, yaxis_title=y_title, showlegend=False)
    if log:
        fig.update_yaxes(type="log")
    return _figure(fig, name, 380)


def _auc_figure(view: ReportView, kind: str) -> str:
    better = "lower" if kind == "deletion" else "higher"
    return _box_figure(view.spreads[f"{kind}_auc"], f"{kind}-auc",
                       f"Per-case {kind} AUC ({better} is better)", f"{kind} AUC")


def _completeness_figure(view: ReportView) -> str | None:
    spreads = view.spreads["completeness"]
    if not spreads:
        return None
    return _box_figure(spreads, "completeness",
                       f"Completeness error |relative delta| (log axis; 0 shown at {LOG_FLOOR:g})",
                       "|Σ attributions − (f(x) − f(x'))| / |f(x) − f(x')|", log=True)


def _agreement_figure(view: ReportView) -> str:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("rank correlation with the expected mask",
                                                         "share of |attribution| in the mask"))
    for column, name in ((1, "rank_correlation"), (2, "mask_share")):
        for spread in view.spreads[name]:
            fig.add_trace(_box_trace(spread, with_ids=False, showlegend=False), row=1,
                          col=column)
    share = view.expected_area_share
    if math.isfinite(share):
        # a map that ignores the mask puts about the mask's own area share inside it
        fig.add_hline(y=share, line_dash="dot", line_color=RANDOM_COLOUR, row=1, col=2,
                      annotation_text=f"mask area {share:.2f}")
    fig.update_layout(title="Agreement with the expected features")
    return _figure(fig, "agreement", 400)


# -- tables ------------------------------------------------------------------------------------

_SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("method", "method"), ("n_cases", "cases"),
    ("deletion_auc_mean", "deletion AUC mean ↓"), ("deletion_auc_median", "deletion AUC median ↓"),
    ("insertion_auc_mean", "insertion AUC mean ↑"),
    ("insertion_auc_median", "insertion AUC median ↑"),
    ("beats_random_deletion_rate", "beats random (deletion)"),
    ("beats_random_insertion_rate", "beats random (insertion)"),
    ("abs_relative_delta_median", "|rel. delta| median"),
    ("abs_relative_delta_max", "|rel. delta| max"),
    ("convergence_median", "map convergence median (IG, IG2)"),
    ("convergence_max", "map convergence max"),
    ("path_reach_median", "IG2 path reach D(GradCF)/D(x), median"),
    ("short_path_share", "IG2 paths stopped short"),
)
_AGREEMENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("precision_at_k_mean", "top-k precision"), ("rank_correlation_mean", "rank correlation"),
    ("mask_share_mean", "mask share"), ("pointing_game_rate", "pointing game"),
)


def _summary_table(summaries: Sequence[MethodSummary], with_agreement: bool) -> str:
    columns = _SUMMARY_COLUMNS + (_AGREEMENT_COLUMNS if with_agreement else ()) \
        + (("seconds_total", "seconds"),)
    head = "".join(f"<th>{_e(label)}</th>" for _, label in columns)
    rows = []
    for summary in summaries:
        values = asdict(summary)
        cells = "".join(
            f"<td>{_e(values[k])}</td>" if k == "method" else
            f'<td class="num">{_e(_number(values[k]))}</td>' for k, _ in columns)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


# -- case sections -----------------------------------------------------------------------------

def _block_mean(scores: np.ndarray) -> np.ndarray:
    factor = max(1, math.ceil(max(scores.shape) / MAX_HEATMAP_SIDE))
    if factor == 1:
        return scores
    height, width = (scores.shape[0] // factor) * factor, (scores.shape[1] // factor) * factor
    trimmed = scores[:height, :width]
    return trimmed.reshape(height // factor, factor, width // factor, factor).mean(axis=(1, 3))


def _symmetric_limit(maps: Sequence[np.ndarray]) -> float:
    finite = [np.abs(m[np.isfinite(m)]) for m in maps if np.isfinite(m).any()]
    limit = max((float(m.max()) for m in finite if m.size), default=0.0)
    return limit if limit > 0 else 1.0


def _image_maps(case: CaseOutcome) -> str:
    maps = [_block_mean(np.asarray(o.scores, dtype=np.float64)) for o in case.outcomes]
    limit = _symmetric_limit(maps)
    fig = make_subplots(rows=1, cols=len(maps), subplot_titles=[o.method for o in case.outcomes],
                        horizontal_spacing=0.02)
    for column, (outcome, scores) in enumerate(zip(case.outcomes, maps, strict=True), start=1):
        fig.add_trace(go.Heatmap(z=scores, zmin=-limit, zmax=limit, zmid=0.0,
                                 colorscale=SIGNED_COLOURSCALE, showscale=column == len(maps),
                                 name=outcome.method, hovertemplate="%{z:.3g}<extra></extra>"),
                      row=1, col=column)
        fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor=f"x{column}",
                         row=1, col=column)
        fig.update_xaxes(showticklabels=False, row=1, col=column)
    fig.update_layout(title=f"Maps on one symmetric colour scale (±{limit:.3g}; red: for the "
                            "target class)")
    return _figure(fig, "case-maps", 300)


def _labels(case: CaseOutcome, size: int) -> list[str]:
    names = list(case.unit_names)
    if len(names) == size:
        # repeated tokens would be merged on a categorical axis; their position keeps them apart
        return [plotly_text(f"{i}:{n}") for i, n in enumerate(names)]
    return [str(i) for i in range(size)]


def _bar_maps(case: CaseOutcome) -> str:
    n = len(case.outcomes)
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        subplot_titles=[o.method for o in case.outcomes])
    for row, outcome in enumerate(case.outcomes, start=1):
        scores = np.asarray(outcome.scores, dtype=np.float64).ravel()
        fig.add_trace(go.Bar(x=_labels(case, scores.size), y=scores, name=outcome.method,
                             marker={"color": np.where(scores >= 0, "#d62728", "#1f77b4")},
                             showlegend=False), row=row, col=1)
    fig.update_layout(title="Each method's scores (red: for the target class)")
    return _figure(fig, "case-maps", 140 * n + 120)


def _token_html(case: CaseOutcome, tokens: Sequence[str]) -> str:
    if not case.outcomes:
        return ""
    outcome = case.outcomes[0]
    scores = np.asarray(outcome.scores, dtype=np.float64).ravel()
    limit = _symmetric_limit([scores])
    spans = []
    for index, token in enumerate(tokens):
        value = float(scores[index]) if index < scores.size and np.isfinite(scores[index]) else 0
        alpha = min(abs(value) / limit, 1.0)
        rgb = "214,39,40" if value >= 0 else "31,119,180"
        spans.append(f'<span style="background:rgba({rgb},{alpha:.2f})" '
                     f'title="{_e(f"{value:.4g}")}">{_e(token)}</span>')
    return (f"<p>Tokens coloured by {_e(outcome.method)} (red: for the target class):</p>"
            f'<div class="tokens">{"".join(spans)}</div>')


def _input_html(case: CaseOutcome) -> str:
    display = case.display
    parts = []
    if case.text:
        parts.append(f"<p>Text: <code>{_e(case.text)}</code></p>")
    if isinstance(display, np.ndarray) and display.dtype == np.uint8 and display.ndim in (2, 3):
        parts.append(f'<img class="case-input" alt="input {_e(case.case_id)}" '
                     f'src="{image_data_url(display)}">')
    elif isinstance(display, Sequence) and display and all(isinstance(t, str) for t in display):
        parts.append(_token_html(case, display))
    elif case.unit_names and isinstance(display, Sequence | np.ndarray | dict):
        values = (np.asarray([display[k] for k in case.unit_names], dtype=np.float64)
                  if isinstance(display, dict) else np.asarray(display, dtype=np.float64).ravel())
        if values.size == len(case.unit_names):
            fig = go.Figure(go.Bar(x=[plotly_text(n) for n in case.unit_names], y=values,
                                   marker_color="#555"))
            fig.update_layout(title="Input values (raw units)")
            parts.append(_figure(fig, "case-input", 300))
    return "".join(parts)


def _case_section(class_names: Sequence[str], case: CaseOutcome) -> str:
    def class_name(index: int | None) -> str:
        if index is None:
            return "–"
        names = class_names
        return f"{index} ({names[index]})" if 0 <= index < len(names) else str(index)

    random_aucs = f"{_number(case.random_deletion_auc)} / {_number(case.random_insertion_auc)}"
    facts = _table([("target", class_name(case.target)), ("predicted", class_name(case.predicted)),
                    ("label", class_name(case.label)),
                    ("disagreement (1 − mean Spearman)", _number(case.disagreement)),
                    ("f(x)", _number(case.f_input)), ("f(baseline)", _number(case.f_baseline)),
                    ("random deletion / insertion AUC", random_aucs)])
    head = "".join(f"<th>{t}</th>" for t in ("method", "deletion AUC", "insertion AUC",
                                              "relative delta", "rank correlation", "mask share"))
    rows = "".join(
        f"<tr><td>{_e(o.method)}</td>" + "".join(
            f'<td class="num">{_number(v)}</td>' for v in (
                o.deletion_auc, o.insertion_auc, o.relative_delta, o.rank_correlation,
                o.mask_share)) + "</tr>" for o in case.outcomes)
    maps = ""
    if case.outcomes:
        two_d = all(np.asarray(o.scores).ndim == 2 for o in case.outcomes)
        maps = _image_maps(case) if two_d else _bar_maps(case)
    return (f'<section class="case"><h3>Case {_e(case.case_id)}</h3>{facts}{_input_html(case)}'
            f"<table><tr>{head}</tr>{rows}</table>{maps}</section>")


# -- page --------------------------------------------------------------------------------------

def report_html(result: EvaluationResult, *, created: str | None = None,
                max_cases: int = MAX_CASE_SECTIONS) -> str:
    """The whole report as one HTML string that needs no network to open."""
    return render_view(view_from_result(result, max_cases), created=created)


def render_view(view: ReportView, *, created: str | None = None) -> str:
    """The report of a :class:`ReportView` (a result in memory, or a sharded run streamed)."""
    created = created or datetime.now(UTC).isoformat(timespec="seconds")
    status = (f"Cancelled: {view.n_done} of {view.n_requested} cases done."
              if view.cancelled else f"Complete: {view.n_done} of {view.n_requested} "
                                     "cases done.")
    model_rows = [("model", f"{view.model_title} ({view.model_name})"),
                  ("modality", view.modality), ("weights sha256", view.weights_hash),
                  ("classes", ", ".join(view.class_names)), ("created (UTC)", created),
                  ("device", view.device), ("status", status),
                  ("wall time (s)", _number(view.seconds)),
                  ("expected area share", _number(view.expected_area_share))]
    settings_rows = [(k, ", ".join(map(str, v)) if isinstance(v, tuple | list) else v)
                     for k, v in view.settings.record().items()]
    env_rows = [(k, "not installed" if v is None else v)
                for k, v in environment(view.device).items()]
    body = [f"<h1>Evaluation report: {_e(view.model_title)}</h1>"]
    if view.cancelled:
        body.append(f'<p class="warning">{_e(status)} Summaries cover the finished cases only.</p>')
    body += ["<h2>Model and run</h2>", _table(model_rows)]
    if view.notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in view.notes)
                    + "</ul>")
    body += ["<h2>Settings</h2>", _table(settings_rows), "<h2>Environment</h2>", _table(env_rows)]
    body += ["<h2>Summary per method</h2>", _summary_table(view.summaries, view.has_expectations)]
    if view.n_done:
        body.append("<h2>Faithfulness</h2>")
        if not view.points_drawn:
            body.append(f"<p>{view.n_done} cases: the box plots show exact quartiles and "
                        "whiskers (1.5 interquartile ranges) without one point per case.</p>")
        body += [_curve_figure(view, "deletion"), _curve_figure(view, "insertion"),
                 _auc_figure(view, "deletion"), _auc_figure(view, "insertion")]
        completeness = _completeness_figure(view)
        if completeness:
            body += ["<h2>Completeness</h2>", completeness]
        if view.has_expectations:
            body += ["<h2>Agreement with expectations</h2>", _agreement_figure(view)]
        body.append(f"<h2>Cases where the methods disagree most ({len(view.hardest)})</h2>")
        body += [_case_section(view.class_names, case) for case in view.hardest]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Evaluation report: {_e(view.model_title)}</title>"
            f"<style>{_STYLE}</style><script>{get_plotlyjs()}</script></head>"
            f"<body>{''.join(body)}</body></html>")
