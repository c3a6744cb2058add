"""Text page, the run and its results: Explain, progress, highlighted text, ranks, completeness.

Runs live in ``st.session_state`` keyed by every input of the run; view choices (tokens or
words, how many ranked words) are not in the key, so changing them never recomputes.
"""

from __future__ import annotations

import csv
import io
from collections import OrderedDict
from typing import Any

import streamlit as st

from attribution_core.modalities import text as text_io
from attribution_core.models.spec import LoadedModel
from dashboard.text import keys, logic
from dashboard.text import views as text_views
from dashboard.text.inputs import TextInput, class_label
from dashboard.widgets import (
    exports,
    figures,
    ig2_trust,
    progressive,
    resources,
    run_costs,
    run_gate,
    session_runs,
    trust,
)


def _runs() -> OrderedDict[str, logic.TextRun]:
    return session_runs.session_runs(keys.RUNS)


def current_run() -> logic.TextRun | None:
    key = st.session_state.get(keys.CURRENT)
    return _runs().get(key) if key is not None else None


def explain_section(model: LoadedModel, source: TextInput | None,
                    settings: logic.TextSettings | None) -> None:
    """The Explain button (disabled without a usable text) and the run with a progress bar."""
    key = None
    if source is not None and settings is not None:
        key = logic.run_key(model.spec.name, model.weights_hash, source.digest, settings)
    st.session_state[keys.PENDING] = key
    estimate = None if source is None or settings is None else run_costs.text_cost(
        model, logic.embeddings(model, source.encoded.input_ids),
        source.encoded.attention_mask, settings, logic.CURVE_DIVISORS)
    run_gate.show_estimate(estimate)
    clicked = st.button("Explain", type="primary", key=keys.EXPLAIN, disabled=key is None)
    if not clicked or key is None or source is None or settings is None:
        return
    preview_slot = st.empty()
    tokens = list(source.encoded.tokens)
    session_runs.explain_once(
        keys.RUNS, keys.CURRENT, key,
        lambda progress: logic.run_explanation(
            model, source.encoded, source.text, settings, cache=resources.shared_result_cache(),
            progress=progress, on_preview=progressive.feature_preview(
                preview_slot, lambda _p: tokens,
                lambda p: text_io.token_scores(p.result.attributions[0].cpu()).numpy())),
        device=model.device, estimate=estimate, what_to_reduce=run_costs.TEXT_REDUCE)
    preview_slot.empty()  # the exact result takes the preview's place


def results_section(model: LoadedModel | None) -> None:
    run = current_run()
    if run is None:
        st.info("Press **Explain** to compute the attributions.")
        return
    if st.session_state.get(keys.PENDING) != st.session_state.get(keys.CURRENT):
        st.info("The inputs changed since this result was computed; it stays on screen until "
                "you press **Explain** again.")
    progressive.show_summary(run.preview)
    if run.ig2 is not None:
        progressive.show_summary(run.ig2.preview)
    names = model.spec.class_names if model is not None and \
        model.spec.name == run.model_name else ()
    st.caption(f"Model {run.model_name}; explaining class "
               f"{class_label(names, run.settings.target)}; {run.seconds:.1f} s.")
    for note in run.notes:
        st.warning(note)
    _baseline_note(run, names)
    views = logic.method_views(run)
    level = st.radio("Show", ["words", "tokens"], horizontal=True, key=keys.LEVEL,
                     format_func={"words": "whole words (sums of their tokens)",
                                  "tokens": "sub-word tokens"}.get)
    limit = logic.colour_limit(views, level)  # type: ignore[arg-type]
    st.subheader("Attributions")
    st.markdown(text_views.legend_html(limit), unsafe_allow_html=True)
    if len(views) > 1:
        st.caption(f"IG and IG2 share one colour scale (±{limit:.3g}).")
    for view in views:
        units = view.words if level == "words" else view.tokens
        st.markdown(f"**{view.name}**")
        st.markdown(text_views.highlighted_html(units, limit, level[:-1]),
                    unsafe_allow_html=True)
        if any(unit.special for unit in view.tokens):
            special_sum, share = text_io.special_share(view.tokens)
            why = (" The IG baseline keeps them as in the input, so IG gives them nothing."
                   if view.name == "IG" else "")
            st.caption(f"{view.name}: special tokens ([CLS], [SEP], …; dashed border) carry "
                       f"{100 * share:.1f} % of the total |attribution| "
                       f"(sum {special_sum:+.4g}).{why}")
        else:
            st.caption(f"{view.name}: this tokenizer adds no special tokens to the input.")
    _ranked(views, level)
    _completeness(run, views)
    if run.ig2 is not None:
        _ig2_details(run, names)
    _downloads(run, views)


def _baseline_note(run: logic.TextRun, names: Any) -> None:
    if run.ig is None:
        return
    text = (f"f(baseline) = {run.f_baseline:.4g}; the model reads the "
            f"{text_io.BASELINE_LABELS[run.settings.baseline]} baseline as "
            f"{class_label(names, run.baseline_class)} (p = {run.baseline_probability:.2f}).")
    if not logic.baseline_is_neutral(run.baseline_probability, int(run.probabilities.numel())):
        st.warning("The baseline is not neutral: " + text + " Try another baseline.")
    else:
        st.caption("Baseline: " + text)


def _ranked(views: list[logic.MethodView], level: str) -> None:
    st.subheader("Ranked " + ("words" if level == "words" else "tokens"))
    top_k = int(st.number_input("How many", 1, 200, 10, key=keys.TOP_K))
    columns = st.columns(len(views))
    for column, view in zip(columns, views, strict=True):
        units = view.words if level == "words" else view.tokens
        ranked = text_io.ranked(units, include_special=False, top_k=top_k)
        with column:
            st.plotly_chart(text_views.ranked_bar_figure(ranked, f"{view.name}: top {level}"),
                            key=keys.ranked_fig(view.name), width="stretch")
            st.dataframe(
                [{"rank": r.rank, level[:-1]: r.text, "attribution": r.score,
                  "share": f"{100 * r.share:+.1f} %"} for r in ranked],
                hide_index=True, width="stretch", key=keys.ranked(view.name),
                column_config={"attribution": st.column_config.NumberColumn(format="%.6g")})


def completeness_rows(views: list[logic.MethodView]) -> list[dict[str, Any]]:
    """One row per quantity, one column per method (full precision; tests read these)."""
    quantities: list[tuple[str, Any]] = [
        ("f(input)", lambda v: v.f_input),
        ("f(reference): f(baseline) for IG, mean f(GradCF) for IG2", lambda v: v.f_reference),
        ("f(input) − f(reference)", lambda v: v.f_input - v.f_reference),
        ("sum over tokens", lambda v: text_io.total(v.tokens)),
        ("sum over words", lambda v: text_io.total(v.words)),
        ("delta = sum − (f(input) − f(reference))", lambda v: v.delta),
        ("relative error %", lambda v: 100 * v.relative_delta),
        ("gradient evaluations", lambda v: float(v.n_evaluations)),
    ]
    return [{"quantity": label, **{v.name: float(get(v)) for v in views}}
            for label, get in quantities]


def _completeness(run: logic.TextRun, views: list[logic.MethodView]) -> None:
    st.subheader("Completeness")
    st.caption("Sum of attributions = f(input) − f(reference point) + delta, in logits. Word "
               "scores are plain sums of their tokens', so the sum is the same at both levels. "
               "green below 1 %, amber below 5 %, red otherwise: raise the steps.")
    columns = st.columns(len(views) + (1 if run.ig is not None else 0))
    for column, view in zip(columns, views, strict=False):
        with column:
            st.plotly_chart(figures.gauge_figure(view.relative_delta,
                                                 f"{view.name}: relative error"),
                            key=keys.gauge(view.name), width="stretch")
            # No "(from cache)": a shared-cache hit would reveal another user's input.
            st.caption(f"{view.name}: {figures.completeness_colour(view.relative_delta)}")
            if view.name == "IG" and run.ig is not None:
                trust.show_map_convergence(run.ig)
            if view.name == "IG2" and run.ig2 is not None:
                ig2_trust.show_ig2_trust(run.ig2.trust)
    if run.ig is not None:
        with columns[-1]:
            points = list(run.curve)
            current = int(run.ig.n_evaluations[0])
            st.plotly_chart(figures.convergence_figure(
                [p.evaluations for p in points], [p.relative_delta for p in points],
                [p.source for p in points], current, "text"),
                key=keys.CURVE_FIG, width="stretch")
    st.dataframe(completeness_rows(views), hide_index=True, width="stretch",
                 key=keys.COMPLETENESS,
                 column_config={v.name: st.column_config.NumberColumn(format="%.9g")
                                for v in views})


def _ig2_details(run: logic.TextRun, names: Any) -> None:
    assert run.ig2 is not None
    result = run.ig2.result
    st.subheader("IG2 reference sentences and paths")
    st.caption(f"Reference classes from {run.ig2.labels_from}; each reference is cut or "
               f"padded (masked) to the input's {run.encoded.length} tokens, and each path walks "
               "the text's embeddings towards one reference's representation. GradCF = the "
               "path's end.")
    rows = []
    for index, text in enumerate(run.ig2.reference_texts):
        trace = result.distance_trace[0, index]
        rows.append({
            "reference sentence": text,
            "class": class_label(names, run.ig2.reference_labels[index]),
            "GradCF class": class_label(names, int(result.counterfactual_classes[0, index])),
            "f(GradCF)": float(result.counterfactual_logits[0, index]),
            "distance start → end": f"{float(trace[0]):.4g} → {float(trace[-1]):.4g}",
            "reach D(GradCF)/D(x)": round(float(result.path_reach[0, index]), 4),
        })
    st.dataframe(rows, hide_index=True, width="stretch", key=keys.IG2_REFS_TABLE)
    labels = [f"ref {i + 1} ({class_label(names, c)})"
              for i, c in enumerate(run.ig2.reference_labels)]
    st.plotly_chart(figures.distance_trace_figure(
        result.distance_trace[0].detach().cpu().double().numpy(), labels),
        key=keys.TRACE_FIG, width="stretch")


def attributions_csv(views: list[logic.MethodView]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "level", "position", "text", "special", "attribution"])
    for view in views:
        for level, units in (("token", view.tokens), ("word", view.words)):
            for unit in units:
                writer.writerow([view.name, level, unit.position,
                                 exports.spreadsheet_text(unit.text), unit.special,
                                 f"{unit.score:.12g}"])
    return buffer.getvalue()


def _downloads(run: logic.TextRun, views: list[logic.MethodView]) -> None:
    record = {
        "model": run.model_name, "weights_sha256": run.weights_hash,
        "text_sha256_16": run.text_digest, "settings": run.settings.record(),
        "tokens": list(run.encoded.tokens), "tokens_dropped": run.encoded.n_dropped,
        "f_baseline": run.f_baseline, "seconds": run.seconds,
        "methods": {v.name: {"delta": v.delta, "relative_delta": v.relative_delta,
                             "f_input": v.f_input, "f_reference": v.f_reference,
                             "sum_tokens": text_io.total(v.tokens),
                             "n_evaluations": v.n_evaluations} for v in views},
    }
    if run.ig2 is not None:
        record["ig2_references"] = list(run.ig2.reference_texts)
        record["methods"]["IG2"].update(
            ig2_trust.trust_record(run.ig2.trust))
    stem = f"{run.model_name}_{run.text_digest[:8]}"
    left, right = st.columns(2)
    left.download_button("Attributions (CSV)", data=attributions_csv(views), mime="text/csv",
                         file_name=f"{stem}_attributions.csv", key=keys.DL_CSV,
                         on_click="ignore")
    right.download_button("Run record (JSON)", data=exports.run_record(record),
                          mime="application/json", file_name=f"{stem}_record.json",
                          key=keys.DL_JSON, on_click="ignore")
