"""Evaluate page, the run and its results: Run / Stop / Continue, then tables, charts, downloads.

A run is stored under the key of every input that changes its numbers (see evaluate_state), so
Run on inputs already evaluated shows the stored result at once. The result on screen stays
while the inputs are edited, marked as stale, until Run is pressed again.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from attribution_core.evaluation import CaseOutcome, EvaluationInputError, EvaluationResult
from attribution_core.evaluation.report import to_record
from attribution_core.evaluation.report_html import report_html
from attribution_core.evaluation.runner import evaluate
from attribution_core.evaluation.types import UNSIGNED_METHODS
from dashboard.evaluate import figures as charts
from dashboard.evaluate import keys
from dashboard.evaluate import ray_job as evaluate_ray_job
from dashboard.evaluate import sanity as evaluate_sanity
from dashboard.evaluate.inputs import EvaluationRequest
from dashboard.evaluate.state import EvaluationStore, PartialRun
from dashboard.widgets import resources, run_costs, run_gate

MOST_DISAGREEING = 10
MAPS_PER_ROW = 3
HIGHLIGHT = "background-color: #d9f2d9; font-weight: 600"
# (summary field, column title, better: "low" / "high" / None, agreement-only)
SUMMARY_COLUMNS: tuple[tuple[str, str, str | None, bool], ...] = (
    ("n_cases", "Cases", None, False),
    ("deletion_auc_mean", "Deletion AUC, mean ↓", "low", False),
    ("deletion_auc_median", "Deletion AUC, median ↓", "low", False),
    ("insertion_auc_mean", "Insertion AUC, mean ↑", "high", False),
    ("insertion_auc_median", "Insertion AUC, median ↑", "high", False),
    ("beats_random_deletion_rate", "Beats random (deletion) ↑", "high", False),
    ("beats_random_insertion_rate", "Beats random (insertion) ↑", "high", False),
    ("abs_relative_delta_median", "|Completeness error|, median ↓", "low", False),
    ("abs_relative_delta_max", "|Completeness error|, max ↓", "low", False),
    ("convergence_median", "Map convergence (IG, IG2), median ↓", "low", False),
    ("convergence_max", "Map convergence, max ↓", "low", False),
    ("path_reach_median", "IG2 path reach D(GradCF)/D(x), median ↓", "low", False),
    ("short_path_share", "IG2 paths stopped short ↓", "low", False),
    ("precision_at_k_mean", "Top-k precision ↑", "high", True),
    ("rank_correlation_mean", "Rank correlation ↑", "high", True),
    ("mask_share_mean", "Mask share ↑", "high", True),
    ("pointing_game_rate", "Pointing game ↑", "high", True),
    ("seconds_total", "Time (s) ↓", "low", False),
)


def _store() -> EvaluationStore:
    return EvaluationStore(st.session_state)


# -- the run --------------------------------------------------------------------------------------

def run_section(request: EvaluationRequest | None) -> None:
    """Run (or reuse), and after an interrupted run: "Stopped after k of N" and Continue."""
    store = _store()
    evaluate_ray_job.track(store)  # this session's Ray job, if any: progress, Stop, its result
    stopped = store.interrupted()
    st.session_state[keys.PENDING] = None if request is None else request.key
    estimate = None if request is None else run_costs.evaluate_cost(
        request.model, request.cases, request.settings)
    run_gate.show_estimate(estimate)
    run_column, continue_column, note_column = st.columns([1, 1, 4], vertical_alignment="center")
    clicked = run_column.button("Run evaluation", type="primary", key=keys.RUN,
                                disabled=request is None)
    resume = False
    note, continue_slot = note_column.empty(), continue_column.empty()
    if stopped is not None:
        note.warning(f"Stopped after {stopped.n_done} of {stopped.n_total} cases.",
                     icon=":material/pause_circle:")
        resume = continue_slot.button("Continue", key=keys.CONTINUE,
                                      help="Finish only the cases not done yet.")
    if (resume or clicked) and stopped is not None:  # the run takes over; the note goes
        note.empty()
        continue_slot.empty()
    if resume and stopped is not None:
        _execute(store, store.resume())
    elif clicked and request is not None:
        if store.show(request.key):  # these inputs were evaluated: no model call at all
            return
        if stopped is not None and stopped.key == request.key:  # same numbers: keep its cases
            _execute(store, store.resume())
            return
        if evaluate_ray_job.wanted(request):  # large runs go to the cluster, not this server
            evaluate_ray_job.start(request)
            evaluate_ray_job.track(store)
            return
        if run_gate.refused(estimate, run_costs.EVALUATE_REDUCE):
            return
        _execute(store, store.begin(request.key, request.model.spec.name,
                                            request.cases, request.settings))
    elif stopped is not None and stopped.result is None and stopped.n_done:
        _assemble(store, stopped)


def _execute(store: EvaluationStore, partial: PartialRun) -> None:
    """Evaluate the partial run's remaining cases with progress and a Stop button."""
    model = resources.loaded_model(partial.model_name)
    slot = st.empty()  # emptied when the run ends (a container's own empty() would not clear)
    with slot.container(border=True):
        stop_column, bar_column = st.columns([1, 6], vertical_alignment="center")
        # Any click reruns the script, which raises inside this one at its next st call; the
        # cases finished by then are already stored (on_case), so the button needs no handler.
        stop_column.button("Stop", key=keys.STOP, icon=":material/stop_circle:")
        bar = bar_column.progress(partial.n_done / max(partial.n_total, 1),
                                  text=f"case {partial.n_done + 1} of {partial.n_total}: "
                                       "starting")

    def progress(done: int, total: int, message: str) -> None:
        text = (f"case {min(done + 1, total)} of {total}: {message}" if done < total
                else f"all {total} cases done")
        bar.progress(float(np.clip(done / max(total, 1), 0.0, 1.0)), text=text)

    try:  # a turn in the device's fair queue; Stop (any click) also leaves the queue
        result = run_gate.run_queued(model.device, "eval", lambda job: evaluate(
            model, partial.cases, partial.settings, progress=job.progress(progress),
            should_stop=store.should_stop(), on_case=store.record,
            done=tuple(partial.outcomes), cache=resources.shared_result_cache()),
            cancel_button=False)
    except run_gate.JobCancelled:  # the cases done so far stay; the next run offers Continue
        slot.empty()
        st.info("The evaluation was cancelled; **Continue** finishes the remaining cases.")
        return
    except EvaluationInputError as error:
        slot.empty()
        st.error(f"The evaluation cannot run: {error}")
        store.abandon()
        return
    except Exception as error:  # show why; the previous result stays on screen
        slot.empty()
        st.error(f"The evaluation failed ({type(error).__name__}): {error}")
        store.abandon()
        return
    slot.empty()
    store.finish(result)
    if result.cancelled:  # draw the page again with "Stopped after k of N" and Continue
        st.rerun()


def _assemble(store: EvaluationStore, partial: PartialRun) -> None:
    """The result of the cases an interrupted run finished (no case is computed again)."""
    model = resources.loaded_model(partial.model_name)
    try:
        partial.result = evaluate(model, partial.cases, partial.settings,
                                  should_stop=lambda: True, done=tuple(partial.outcomes))
    except Exception as error:  # the stored cases stay; Continue can still finish the run
        st.error(f"The cases finished before the stop cannot be shown: {error}")


# -- the results ----------------------------------------------------------------------------------

def results_section(request: EvaluationRequest | None = None) -> None:
    """The result on screen (the last run, or the stored one for these inputs)."""
    shown = _store().on_screen()
    if shown is None:
        st.info("Press **Run evaluation** to compare the methods on these cases.")
        return
    key, result, partial = shown
    if result is None:
        if partial is not None and not partial.running:
            st.info("The run was stopped before any case finished; press **Continue**.")
        return
    if st.session_state.get(keys.PENDING) != key:
        st.info("The inputs changed since this result was computed; it stays on screen until "
                "you press **Run evaluation** again.", icon=":material/history:")
    _header(result)
    _summary(result)
    _curves(result)
    _completeness(result)
    _agreement(result)
    _disagreement(result)
    evaluate_sanity.sanity_section(request, key)
    _downloads(result, key)


def _header(result: EvaluationResult) -> None:
    st.header("Results")
    status = (f"partial: {len(result.cases)} of {result.n_requested} cases"
              if result.cancelled else f"{len(result.cases)} cases")
    removal = getattr(result.settings, "removal", None)
    curves = f"removed units become {removal}" if removal else "removed units become the baseline"
    st.caption(f"{result.model_title} · {status} · {', '.join(result.methods)} · {curves} · "
               f"{result.seconds:.1f} s on {result.device}")
    for note in result.notes:
        st.warning(note)


def summary_frame(result: EvaluationResult) -> pd.DataFrame:
    """One row per method, readable column titles; agreement columns only with expectations."""
    expected = _has_expectations(result)
    rows = []
    for summary in result.summaries():
        row: dict[str, Any] = {"Method": summary.method}
        for field, title, _better, agreement_only in SUMMARY_COLUMNS:
            if agreement_only and not expected:
                continue
            row[title] = getattr(summary, field)
        rows.append(row)
    return pd.DataFrame(rows)


def _has_expectations(result: EvaluationResult) -> bool:
    return any(case.expected is not None for case in result.cases)


def _summary(result: EvaluationResult) -> None:
    st.subheader("Summary per method")
    frame = summary_frame(result)
    styler = frame.style.format(precision=3, na_rep="–")
    for _field, title, better, _agreement in SUMMARY_COLUMNS:
        if better is None or title not in frame.columns or len(frame) < 2:
            continue
        if better == "low":
            styler = styler.highlight_min(subset=[title], props=HIGHLIGHT)
        else:
            styler = styler.highlight_max(subset=[title], props=HIGHLIGHT)
    st.dataframe(styler, hide_index=True, width="stretch", key=keys.SUMMARY)
    st.caption("AUCs are of curves normalised to f(baseline) = 0 and f(input) = 1. Deletion "
               "removes the highest-ranked units first (a faithful map makes the score fall "
               "fast: low AUC); insertion adds them to the baseline (high AUC). 'Beats random' "
               "is the share of cases whose AUC is better than a random order's. The best "
               "value of each column is highlighted.")


def _curves(result: EvaluationResult) -> None:
    st.subheader("Deletion and insertion")
    st.plotly_chart(charts.mean_curves_figure(result), key=keys.MEAN_CURVES, width="stretch")
    st.plotly_chart(charts.auc_figure(result), key=keys.AUC, width="stretch")


def _completeness(result: EvaluationResult) -> None:
    st.subheader("Completeness")
    figure, omitted = charts.completeness_figure(result)
    if figure is not None:
        st.plotly_chart(figure, key=keys.COMPLETENESS, width="stretch")
    if omitted:
        st.caption(f"Not shown: {', '.join(omitted)} (no completeness claim, so no error to "
                   "measure).")


def _agreement(result: EvaluationResult) -> None:
    st.subheader("Agreement with the expected features")
    if not _has_expectations(result):
        st.caption("No expected features were given for these cases, so agreement is not "
                   "measured (shapes masks, planted-cue words or an `expected` column give "
                   "them).")
        return
    st.plotly_chart(charts.agreement_figure(result), key=keys.AGREEMENT, width="stretch")
    st.caption("Top-k precision: share of a method's k highest units that are expected (k = "
               "the expected count). Mask share: share of positive attribution inside the "
               "expected area; the dashed line is that area's share of the map, what a uniform "
               "map would get.")


def _class(result: EvaluationResult, index: int | None) -> str:
    if index is None:
        return "–"
    names = result.class_names
    return names[index] if isinstance(index, int) and 0 <= index < len(names) else str(index)


def disagreement_frame(result: EvaluationResult, cases: tuple[CaseOutcome, ...]
                       ) -> pd.DataFrame:
    classes = len(result.class_names) != 1  # a single output (regression) has no classes
    return pd.DataFrame([{
        "Case": case.case_id,
        **({"True class": _class(result, case.label),
            "Predicted": _class(result, case.predicted)} if classes else {}),
        "f(input)": case.f_input,
        "Disagreement": case.disagreement,
        "Expected features": "yes" if case.expected is not None else "no",
    } for case in cases])


def _disagreement(result: EvaluationResult) -> None:
    st.subheader("Where the methods disagree most")
    ranked = result.most_disagreeing(MOST_DISAGREEING)
    if not ranked:
        st.caption("Disagreement needs at least two methods.")
        return
    st.dataframe(disagreement_frame(result, ranked), hide_index=True,
                 width="stretch", key=keys.DISAGREEMENT,
                 column_config={"Disagreement": st.column_config.ProgressColumn(
                     "Disagreement", min_value=0.0, max_value=1.0, format="%.3f",
                     help="1 − mean pairwise rank correlation of the methods' |maps|")})
    ids = [case.case_id for case in ranked]
    chosen = st.selectbox("Open a case", ids, key=keys.CASE,
                          help="Its input, every method's map on one colour scale, and its "
                               "curves.")
    _single_case(result, ranked[ids.index(chosen)])


def _single_case(result: EvaluationResult, case: CaseOutcome) -> None:
    methods = [m for m in result.methods if any(o.method == m for o in case.outcomes)]
    bars = result.modality == "tabular"
    limits = charts.case_limits(case, methods, percentile=100.0 if bars else 99.0)
    signed = [m for m in methods if m not in UNSIGNED_METHODS]
    scale = "axis" if bars else "colour scale"
    reach = "largest" if bars else "99th percentile of the maps'"
    classes = (f": true class {_class(result, case.label)}, predicted "
               f"{_class(result, case.predicted)}") if len(result.class_names) != 1 else ""
    shared = f"One shared {scale} ±{limits[signed[0]]:.3g} ({reach} |score|; red: for the " \
        "class, blue: against) for " + ", ".join(signed) + ". " if signed else ""
    own = [m for m in methods if m in UNSIGNED_METHODS]
    st.caption(f"{case.case_id}{classes}. {shared}"
               + (f"{', '.join(own)}: unsigned gradient magnitudes on a scale of their own "
                  "(other units: only the ranking compares)." if own else ""))
    if result.modality == "image":
        for start in range(0, len(methods), MAPS_PER_ROW):
            columns = st.columns(MAPS_PER_ROW)
            for column, method in zip(columns, methods[start:start + MAPS_PER_ROW],
                                      strict=False):
                column.plotly_chart(charts.image_map_figure(case, method, limits[method]),
                                    key=keys.method_map(method), width="stretch")
    elif result.modality == "text":
        if case.text:
            st.markdown(f"> {case.text}")
        for method in methods:
            st.markdown(charts.token_html(case, method, limits[method]), unsafe_allow_html=True)
        st.caption("Boxed tokens are the expected ones.")
    else:
        for start in range(0, len(methods), MAPS_PER_ROW):
            columns = st.columns(MAPS_PER_ROW)
            for column, method in zip(columns, methods[start:start + MAPS_PER_ROW],
                                      strict=False):
                column.plotly_chart(charts.feature_bars_figure(case, method, limits[method]),
                                    key=keys.bars(method), width="stretch")
        st.caption("★ marks the expected features.")
    st.plotly_chart(charts.case_curves_figure(case, methods), key=keys.CASE_CURVES,
                    width="stretch")


def _downloads(result: EvaluationResult, key: str) -> None:
    st.subheader("Downloads")
    stem = f"evaluation_{result.model_name}_{len(result.cases)}cases"
    left, right, _rest = st.columns([1, 1, 3])
    left.download_button("HTML report", data=lambda: report_html(result),
                         file_name=f"{stem}.html", mime="text/html", on_click="ignore",
                         key=keys.DL_HTML, icon=":material/description:")
    sanity = evaluate_sanity.record_of(key)
    extra = None if sanity is None else {"randomisation_check": sanity}
    right.download_button("JSON record",
                          data=lambda: json.dumps(to_record(result, extra=extra)),
                          file_name=f"{stem}.json", mime="application/json",
                          on_click="ignore", key=keys.DL_JSON, icon=":material/data_object:")
