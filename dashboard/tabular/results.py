"""Tabular page, the run and its results: ranked features, waterfall, completeness, batches.

Runs live in ``st.session_state`` keyed by every input of the run; view choices (how many
features) are not in the key, so they never recompute.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from attribution_core.modalities import tabular as tab_io
from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.models.spec import LoadedModel
from dashboard.tabular import keys, logic
from dashboard.tabular import views as tabular_views
from dashboard.tabular.inputs import TabularInput
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

BATCH_TOP_K = 3


def _runs() -> OrderedDict[str, Any]:
    return session_runs.session_runs(keys.RUNS)


def explain_section(model: LoadedModel, source: TabularInput | None,
                    settings: logic.TabularSettings | None) -> None:
    key = None
    if source is not None and settings is not None:
        key = logic.run_key(model.spec.name, model.weights_hash,
                            source.digest + source.csv_digest, settings)
    st.session_state[keys.PENDING] = key
    estimate = None if source is None or settings is None else run_costs.tabular_cost(
        model, logic.model_row(model, source.raw_row), settings, logic.CURVE_DIVISORS,
        0 if source.csv_rows is None else len(source.csv_rows))
    run_gate.show_estimate(estimate)
    clicked = st.button("Explain", type="primary", key=keys.EXPLAIN, disabled=key is None)
    if not clicked or key is None or source is None or settings is None:
        return
    preview_slot = st.empty()
    feature_names = list(logic.feature_names(model))

    def compute(progress: session_runs.PageProgress) -> tuple[Any, str, Any]:
        run = logic.run_row(model, source.raw_row, settings,
                            cache=resources.shared_result_cache(),
                            progress=lambda t, f: progress(t, 0.5 * f if source.csv_rows
                                                           is not None else f),
                            on_preview=progressive.feature_preview(
                                preview_slot, lambda _p: feature_names,
                                lambda p: logic.folded(model, p.result)
                                .attributions[0].cpu().numpy()))
        batch = None
        if source.csv_rows is not None and len(source.csv_rows) > 1:
            batch = logic.run_batch(
                model, source.csv_rows, source.csv_row_numbers, settings, cache=None,
                top_k=BATCH_TOP_K, progress=lambda d, t: progress(
                    f"IG for all {len(source.csv_rows)} CSV rows ({d}/{t} path rows)",
                    0.5 + 0.5 * d / max(t, 1)))
        return run, source.name, batch

    session_runs.explain_once(keys.RUNS, keys.CURRENT, key, compute, device=model.device,
                              estimate=estimate, what_to_reduce=run_costs.TABULAR_REDUCE)
    preview_slot.empty()  # the exact result takes the preview's place


def results_section(model: LoadedModel | None) -> None:
    stored = _runs().get(st.session_state.get(keys.CURRENT, ""))
    if stored is None:
        st.info("Press **Explain** to compute the attributions.")
        return
    run, name, batch = stored
    if st.session_state.get(keys.PENDING) != st.session_state.get(keys.CURRENT):
        st.info("The inputs changed since this result was computed; it stays on screen until "
                "you press **Explain** again.")
    progressive.show_summary(run.preview)
    if run.ig2 is not None:
        progressive.show_summary(run.ig2.preview)
    if model is None or model.spec.name != run.model_name:
        st.caption(f"Result computed with {run.model_name}.")
        return
    st.caption(f"{name}; {run.model_name}; explaining "
               + ("the predicted value" if logic.is_regression(model) else
                  f"class {logic.class_name(model, run.settings.target)}")
               + f"; {run.seconds:.2f} s.")
    _baseline_note(model, run)
    schema = logic.schema(model)
    if schema is not None and schema.categorical:
        st.caption(cat_io.categorical_note(schema))
    if np.array_equal(run.raw_row, run.baseline_raw, equal_nan=True):
        st.info("This row equals the baseline, so every attribution is zero: choose another "
                "row or baseline.")
    top_k = int(st.number_input("Features shown", 1, len(run.raw_row), min(10, len(run.raw_row)),
                                key=keys.TOP_K))
    names = logic.feature_names(model)
    units = dict(zip(names, logic.units(model), strict=True))
    row_texts = logic.value_texts(model, run.raw_row)
    base_texts = logic.value_texts(model, run.baseline_raw)
    texts = None if row_texts is None else dict(zip(names, row_texts, strict=True))
    base_of = None if base_texts is None else dict(zip(names, base_texts, strict=True))
    methods = _method_results(run)
    columns = st.columns(len(methods))
    for column, (label, attributions, f_start, start_label, f_end) in zip(
            columns, methods, strict=True):
        with column:
            features = tab_io.ranked_features(attributions, names, run.raw_row,
                                              run.baseline_raw, top_k=top_k)
            st.plotly_chart(tabular_views.ranked_bar_figure(
                features, units, f"{label}: features by |attribution|", texts, base_of),
                key=keys.bars(label), width="stretch")
            steps = tab_io.waterfall_steps(attributions, names, f_start, f_end, top_k=top_k,
                                           start_label=start_label)
            st.plotly_chart(tabular_views.waterfall_figure(
                steps, f"{label}: from {start_label} to f(x)"),
                key=keys.waterfall(label), width="stretch")
            st.dataframe(
                [{"rank": f.rank, "feature": f.name,
                  "value": f.value if texts is None else texts[f.name],
                  "baseline value": f.baseline_value if base_of is None else base_of[f.name],
                  "attribution": f.attribution,
                  "share": f"{100 * f.share:+.1f} %"} for f in features],
                hide_index=True, width="stretch", key=keys.ranked(label),
                column_config={"attribution": st.column_config.NumberColumn(format="%.6g")})
    _completeness(run)
    if run.ig2 is not None:
        _ig2_details(model, run)
    if batch:
        _batch(batch, run)
    _downloads(run, names, row_texts, base_texts)


def _method_results(run: logic.TabularRun) -> list[tuple[str, np.ndarray, float, str, float]]:
    methods = []
    if run.ig is not None:
        methods.append(("IG", run.ig.attributions[0].double().numpy(),
                        float(run.ig.f_baselines[0]), "f(baseline)", float(run.ig.f_inputs[0])))
    if run.ig2 is not None:
        result = run.ig2.result
        methods.append(("IG2", result.attributions[0].detach().cpu().double().numpy(),
                        float(result.f_counterfactuals[0]), "mean f(GradCF)",
                        float(result.f_inputs[0])))
    return methods


def _baseline_note(model: LoadedModel, run: logic.TabularRun) -> None:
    label = logic.baseline_labels(model).get(run.settings.baseline, run.settings.baseline)
    if logic.is_regression(model):
        st.caption(f"Baseline ({label}): f(baseline) = {run.f_baseline:.4g}.")
        return
    probs = logic.probabilities(model, run.baseline_outputs).numpy()
    predicted = int(probs.argmax())
    text = (f"Baseline ({label}): f(baseline) = {run.f_baseline:.4g}; the model reads it as "
            f"{logic.class_name(model, predicted)} (p = {probs[predicted]:.2f}).")
    chance = 1.0 / len(probs)
    if probs[predicted] >= chance + 0.5 * (1 - chance):
        st.warning(text + " The baseline is not neutral: attributions then explain the gap "
                   "between two confident predictions.")
    else:
        st.caption(text)


def _completeness(run: logic.TabularRun) -> None:
    st.subheader("Completeness")
    st.caption("The waterfall adds the completeness residual (f(x) − start − sum of "
               "attributions) as its own bar, so it ends at f(x); a visible residual means too "
               "few steps. green below 1 %, amber below 5 %, red otherwise.")
    methods = _method_results(run)
    columns = st.columns(len(methods) + (1 if run.ig is not None else 0))
    for column, (label, _attributions, _start, _start_label, _end) in zip(
            columns, methods, strict=False):
        relative = _relative(run, label)
        with column:
            st.plotly_chart(figures.gauge_figure(relative, f"{label}: relative error"),
                            key=keys.gauge(label), width="stretch")
            st.caption(f"{label}: {figures.completeness_colour(relative)}")
            if label == "IG" and run.ig is not None:
                trust.show_map_convergence(run.ig)
            if label == "IG2" and run.ig2 is not None:
                ig2_trust.show_ig2_trust(run.ig2.trust)
    if run.ig is not None:
        with columns[-1]:
            points = list(run.curve)
            st.plotly_chart(figures.convergence_figure(
                [p.evaluations for p in points], [p.relative_delta for p in points],
                [p.source for p in points], int(run.ig.n_evaluations[0]), "row"),
                key=keys.CURVE_FIG, width="stretch")
    st.dataframe(completeness_rows(run), hide_index=True, width="stretch",
                 key=keys.COMPLETENESS,
                 column_config={m[0]: st.column_config.NumberColumn(format="%.9g")
                                for m in methods})


def _relative(run: logic.TabularRun, label: str) -> float:
    result: Any = run.ig if label == "IG" else run.ig2.result  # type: ignore[union-attr]
    return float(result.relative_delta[0])


def completeness_rows(run: logic.TabularRun) -> list[dict[str, Any]]:
    """One row per quantity, one column per method (full precision; tests read these)."""
    columns: dict[str, dict[str, float]] = {}
    for label, attributions, start, _start_label, end in _method_results(run):
        result: Any = run.ig if label == "IG" else run.ig2.result  # type: ignore[union-attr]
        total = float(np.sum(attributions))
        steps = tab_io.waterfall_steps(attributions, [str(i) for i in range(len(attributions))],
                                       start, end)
        columns[label] = {
            "f(x)": end, "start: f(baseline) for IG, mean f(GradCF) for IG2": start,
            "f(x) − start": end - start, "sum of attributions": total,
            "delta = sum − (f(x) − start)": float(result.delta[0]),
            "relative error %": 100 * float(result.relative_delta[0]),
            "completeness residual bar": end - start - total,
            "waterfall end": tab_io.waterfall_end(steps)}
    quantities = next(iter(columns.values())).keys() if columns else []
    return [{"quantity": q, **{label: values[q] for label, values in columns.items()}}
            for q in quantities]


def _ig2_details(model: LoadedModel, run: logic.TabularRun) -> None:
    assert run.ig2 is not None
    result = run.ig2.result
    st.subheader("IG2 reference rows and paths")
    st.caption(f"References: {run.ig2.how} (seed {run.settings.seed}).")
    regression = logic.is_regression(model)
    rows = []
    for index, pool_index in enumerate(run.ig2.reference_indices):
        trace = result.distance_trace[0, index]
        target = run.ig2.reference_targets[index]
        rows.append({
            "data set row": pool_index,
            ("target" if regression else "class"): f"{target:.4g}" if regression
            else logic.class_name(model, int(target)),
            "f(GradCF)": float(result.counterfactual_logits[0, index]),
            "distance start → end": f"{float(trace[0]):.4g} → {float(trace[-1]):.4g}",
            "reach D(GradCF)/D(x)": round(float(result.path_reach[0, index]), 4)})
    st.dataframe(rows, hide_index=True, width="stretch", key=keys.IG2_REFS)
    labels = [f"row {i}" for i in run.ig2.reference_indices]
    st.plotly_chart(figures.distance_trace_figure(
        result.distance_trace[0].detach().cpu().double().numpy(), labels),
        key=keys.TRACE_FIG, width="stretch")


def _batch(batch: list[logic.BatchRow], run: logic.TabularRun) -> None:
    st.subheader(f"All CSV rows ({len(batch)}): IG at each row's predicted class")
    table = pd.DataFrame(logic.batch_table(batch, BATCH_TOP_K))
    st.dataframe(table, hide_index=True, width="stretch", key=keys.BATCH_TABLE)
    worst = max(row.relative_delta for row in batch)
    st.caption(f"Largest relative completeness error over the rows: {100 * worst:.3g} %.")
    st.download_button("All rows' top features (CSV)", data=exports.frame_csv(table),
                       file_name=f"{run.model_name}_rows_top_features.csv", mime="text/csv",
                       key=keys.DL_BATCH, on_click="ignore")


def _downloads(run: logic.TabularRun, names: tuple[str, ...],
               row_texts: list[str] | None = None, base_texts: list[str] | None = None) -> None:
    values: Any = run.raw_row if row_texts is None else row_texts
    frame = pd.DataFrame({"feature": names, "value": values,
                          "baseline value": run.baseline_raw if base_texts is None
                          else base_texts})
    for label, attributions, *_ in _method_results(run):
        frame[f"{label} attribution"] = attributions
    record = {"model": run.model_name, "weights_sha256": run.weights_hash,
              "row": dict(zip(names, list(values) if row_texts is not None
                              else run.raw_row.tolist(), strict=True)),
              "settings": run.settings.record(), "f_baseline": run.f_baseline,
              "seconds": run.seconds}
    if run.ig is not None:
        record["ig"] = {"delta": float(run.ig.delta[0]), "f_input": float(run.ig.f_inputs[0]),
                        "relative_delta": float(run.ig.relative_delta[0])}
    if run.ig2 is not None:
        record["ig2"] = {"delta": float(run.ig2.result.delta[0]),
                         "reference_rows": list(run.ig2.reference_indices),
                         **ig2_trust.trust_record(run.ig2.trust)}
    left, right = st.columns(2)
    left.download_button("Attributions (CSV)", data=exports.frame_csv(frame), mime="text/csv",
                         file_name=f"{run.model_name}_{run.row_digest[:8]}.csv",
                         key=keys.DL_CSV, on_click="ignore")
    right.download_button("Run record (JSON)", data=exports.run_record(record),
                          mime="application/json", key=keys.DL_JSON, on_click="ignore",
                          file_name=f"{run.model_name}_{run.row_digest[:8]}_record.json")
