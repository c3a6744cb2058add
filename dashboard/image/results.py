"""Image page, the run and its results: Explain button, progress, maps, completeness, downloads.

Results live in ``st.session_state`` keyed by every input of the run; view options (colour map,
clipping, opacity, top-k) are not part of the key, so changing them only re-renders.
"""

from __future__ import annotations

import platform
from collections import OrderedDict
from typing import Any

import numpy as np
import streamlit as st
import torch

from attribution_core.modalities import image as image_io
from attribution_core.models.inputs import display_array
from attribution_core.models.spec import LoadedModel
from dashboard.image import keys, logic
from dashboard.image.inputs import ImageInput
from dashboard.image.views import ViewOptions, method_maps, render_maps
from dashboard.widgets import (
    digests,
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


def _runs() -> OrderedDict[str, logic.ExplanationRun]:
    return session_runs.session_runs(keys.RUNS)


def current_run(model_name: str) -> tuple[str, logic.ExplanationRun] | None:
    """The run on screen for ``model_name``: the last one shown, else that model's latest."""
    runs = _runs()
    key = st.session_state.get(keys.CURRENT)
    if key in runs and runs[key].model_name == model_name:
        return key, runs[key]
    for other_key in reversed(runs):
        if runs[other_key].model_name == model_name:
            return other_key, runs[other_key]
    return None


def explain_section(model: LoadedModel, source: ImageInput, settings: logic.ImageSettings,
                    uploaded_baseline: Any) -> None:
    """Baseline check, the Explain button and the run (with a progress bar)."""
    try:
        baseline = logic.build_baseline(settings.baseline, model, source.inputs, source.prep,
                                        seed=settings.seed, uploaded=uploaded_baseline)
    except image_io.ImageInputError as error:
        st.error(str(error))
        baseline = None
    baseline_digest = None if baseline is None else digests.tensor_hex(baseline)
    if baseline is not None:
        memo = st.session_state.setdefault(keys.BASELINE_CHECKS, {})
        check_key = (model.spec.name, model.weights_hash, baseline_digest, settings.target)
        if check_key not in memo:  # one forward pass, but not on every rerun
            memo.clear()
            memo[check_key] = logic.check_baseline(model, baseline, settings.target)
        _baseline_note(memo[check_key], model, settings.target)
    key = None if baseline_digest is None else logic.run_key(
        model.spec.name, model.weights_hash, source.digest, baseline_digest, settings)
    st.session_state[keys.PENDING] = key
    estimate = run_costs.image_cost(model, source.inputs, settings,
                                     logic.CURVE_FRACTIONS)
    run_gate.show_estimate(estimate)
    clicked = st.button("Explain", type="primary", key=keys.EXPLAIN, disabled=key is None)
    if not clicked or key is None or baseline is None:
        return
    preview_slot = st.empty()
    computed = session_runs.explain_once(
        keys.RUNS, keys.CURRENT, key,
        lambda progress: logic.run_explanation(
            model, source.inputs, baseline, settings, cache=resources.shared_result_cache(),
            progress=progress, input_probabilities=source.probabilities,
            on_preview=progressive.image_preview(preview_slot)),
        device=model.device, estimate=estimate, what_to_reduce=run_costs.IMAGE_REDUCE)
    preview_slot.empty()  # the exact result takes the preview's place
    if computed:
        st.session_state[keys.input_name(key)] = source.name


def _baseline_note(check: logic.BaselineCheck, model: LoadedModel, target: int) -> None:
    names = model.spec.class_names
    text = (f"f(baseline) = {check.f_baseline:.4g} for class "
            f"{logic.class_label(names, target)}; the model reads the baseline as "
            f"{logic.class_label(names, check.predicted_class)} "
            f"(p = {check.predicted_probability:.2f}).")
    if check.neutral:
        st.caption("Baseline: " + text)
    else:
        st.warning("The baseline is not neutral: " + text + " Attributions then explain the "
                   "difference between two confident predictions; try another baseline.")


def results_section(model: LoadedModel) -> None:
    found = current_run(model.spec.name)
    if found is None:
        st.info("Press **Explain** to compute the attributions.")
        return
    key, run = found
    if st.session_state.get(keys.PENDING) != key:
        st.info("The inputs changed since this result was computed; it stays on screen until "
                "you press **Explain** again.")
    for note in run.notes:
        st.warning(note)
    progressive.show_summary(run.preview)
    if run.ig2 is not None:
        progressive.show_summary(run.ig2.preview)
    options = _view_options()
    prep = logic.preprocessing_for(model, run.inputs)
    picture = display_array(model, run.inputs[0], prep)
    maps = method_maps(run)
    limit = render_maps(maps, picture, options)
    _completeness(run)
    _ranked(maps, options)
    if run.ig2 is not None:
        _ig2_details(model, run, prep)
    _downloads(model, run, key, maps, picture, limit, options)


def _view_options() -> ViewOptions:
    st.subheader("Attribution maps")
    cols = st.columns(5)
    view = cols[0].radio("View", ["signed", "positive", "absolute"], key=keys.VIEW,
                         horizontal=False)
    colour_map = cols[1].selectbox("Colour map", list(figures.COLOUR_SCALES), key=keys.CMAP)
    clip = cols[2].slider("Clip at percentile", 90.0, 100.0, 99.5, step=0.5, key=keys.CLIP,
                          help="Values beyond this percentile of |attribution| saturate.")
    opacity = cols[3].slider("Overlay opacity", 0.0, 1.0, 0.6, step=0.05, key=keys.OPACITY)
    top_k = int(cols[4].number_input("Top regions", 1, 64, 8, key=keys.TOPK))
    return ViewOptions(view, colour_map, clip, opacity, top_k)  # type: ignore[arg-type]


def _completeness(run: logic.ExplanationRun) -> None:
    st.subheader("Completeness")
    st.caption("Relative error = |sum of attributions − (f(input) − f(reference point))| / "
               "|f(input) − f(reference point)|, in logits. :green[green] below 1 %, "
               ":orange[amber] below 5 %, :red[red] otherwise: raise the steps (IG), or the "
               "step size or path steps (IG2).")
    entries: list[tuple[str, float, float, str]] = []
    if run.ig is not None:
        entries.append(("IG", float(run.ig.delta[0]), float(run.ig.relative_delta[0]),
                        f"f(input) = {float(run.ig.f_inputs[0]):.5g}, f(baseline) = "
                        f"{float(run.ig.f_baselines[0]):.5g}, "
                        f"{int(run.ig.n_evaluations[0])} gradient evaluations"))
    # A shared-cache hit is not announced: it would tell the user that someone else explained
    # the same input.
    if run.ig2 is not None:
        s = run.ig2
        entries.append(("IG2", s.delta, s.relative_delta,
                        f"f(input) = {s.f_input:.5g}, mean f(GradCF) = "
                        f"{s.f_counterfactual_mean:.5g} (mean f(references) = "
                        f"{s.f_reference_mean:.5g}), {s.n_evaluations} path points"))
    columns = st.columns(max(2, len(entries) + (1 if run.ig is not None else 0)))
    for column, (name, delta, relative, detail) in zip(columns, entries, strict=False):
        with column:
            st.plotly_chart(figures.gauge_figure(relative, f"{name}: relative error"),
                            key=keys.gauge(name), width="stretch")
            st.metric(f"{name} relative error", f"{100 * relative:.4g} %")
            st.metric(f"{name} delta", f"{delta:.6g}", help="sum of attributions minus the "
                      "score change it explains, in logits")
            st.caption(f"{figures.completeness_colour(relative)}: {detail}")
            if name == "IG" and run.ig is not None:
                trust.show_map_convergence(run.ig)
            if name == "IG2" and run.ig2 is not None and run.ig2.trust is not None:
                ig2_trust.show_ig2_trust(run.ig2.trust)
    if run.ig is not None:
        with columns[-1]:
            _curve(run)


def _curve(run: logic.ExplanationRun) -> None:
    points = {p.evaluations: p for p in run.curve}
    for other in _runs().values():  # earlier runs of the same question add real points
        same = (other.ig is not None and other.input_digest == run.input_digest
                and other.model_name == run.model_name
                and digests.tensor_hex(other.baseline) == digests.tensor_hex(run.baseline)
                and other.settings.target == run.settings.target)
        if same and other.ig is not None:
            evaluations = int(other.ig.n_evaluations[0])
            points.setdefault(evaluations, logic.CurvePoint(
                evaluations, float(other.ig.relative_delta[0]), "earlier run"))
    ordered = sorted(points.values(), key=lambda p: p.evaluations)
    current = int(run.ig.n_evaluations[0]) if run.ig is not None else None
    st.plotly_chart(figures.convergence_figure(
        [p.evaluations for p in ordered], [p.relative_delta for p in ordered],
        [p.source for p in ordered], current), key=keys.CURVE_FIG, width="stretch")
    if len(ordered) == 1:
        st.caption("One point only: tick the convergence curve in *Advanced* (or run other "
                   "step counts) to see how the error falls with more steps.")


def _ranked(maps: dict[str, np.ndarray], options: ViewOptions) -> None:
    st.subheader("Most important regions")
    st.caption("The image is cut into an 8 x 8 grid; share = the cell's attribution over the "
               "sum of all cells' |attribution| (negative: evidence against the class).")
    columns = st.columns(len(maps))
    for column, (name, values) in zip(columns, maps.items(), strict=True):
        regions = image_io.ranked_regions(values, top_k=options.top_k)
        column.markdown(f"**{name}**")
        column.dataframe(
            [{"rank": r.rank, "region": r.label, "share": f"{100 * r.share:+.1f} %",
              "attribution": round(r.attribution, 6)} for r in regions],
            hide_index=True, width="stretch", key=keys.regions(name))


def _ig2_details(model: LoadedModel, run: logic.ExplanationRun,
                 prep: image_io.ImagePreprocessing) -> None:
    assert run.ig2 is not None
    summary = run.ig2
    names = model.spec.class_names
    st.subheader("IG2 counterfactuals (GradCF)")
    st.caption("Each path starts at the input and descends the distance to one reference's "
               "representation; its end (GradCF) is what the IG2 map is measured against.")
    columns = st.columns(min(8, len(summary.counterfactual_classes)))
    for index, cls in enumerate(summary.counterfactual_classes):
        picture = display_array(model, summary.counterfactuals[index], prep)
        probability = summary.counterfactual_probabilities[index] \
            if index < len(summary.counterfactual_probabilities) else float("nan")
        with columns[index % len(columns)]:
            st.image(_enlarge(picture), width=96, caption=(
                f"ref {logic.class_label(names, summary.reference_labels[index])} → "
                f"{logic.class_label(names, cls)} (p {probability:.2f})"))
    if summary.distance_trace.size:
        labels = [f"ref #{i} ({logic.class_label(names, c)})"
                  for i, c in zip(summary.reference_indices, summary.reference_labels,
                                  strict=True)]
        st.plotly_chart(figures.distance_trace_figure(summary.distance_trace, labels),
                        key=keys.TRACE_FIG, width="stretch")
        if summary.trust is not None:
            st.dataframe(ig2_trust.reach_rows(summary.trust, labels), hide_index=True,
                         width="stretch", key=keys.REACH_TABLE)
    if summary.band is not None:
        st.subheader("IG2 uncertainty from the references")
        st.caption("Per pixel: the 95 % band of the reference average (1.96 standard errors of "
                   "the per-reference maps, channels combined), over the largest attribution. "
                   "Bright where another draw of references would move the map most.")
        limit = float(np.max(summary.band)) or 1.0
        st.plotly_chart(figures.heatmap_figure(summary.band, limit, "absolute", "Viridis",
                                               "IG2 band / max |attribution|"),
                        key=keys.IG2_BAND_FIG, width="stretch")


def _enlarge(picture: np.ndarray, side: int = 96) -> np.ndarray:
    factor = max(1, side // max(1, min(picture.shape[:2])))
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def _downloads(model: LoadedModel, run: logic.ExplanationRun, key: str,
               maps: dict[str, np.ndarray], picture: np.ndarray, limit: float,
               options: ViewOptions) -> None:
    st.subheader("Downloads")
    record = exports.run_record(_record(model, run, key, limit, options))
    tensors = {"IG": run.ig.attributions if run.ig is not None else None,
               "IG2": run.ig2.attributions if run.ig2 is not None else None}
    stem = f"{run.model_name}_{run.input_digest[:8]}"
    columns = st.columns(len(maps) * 3 + 1)
    index = 0
    for name, values in maps.items():
        tensor = tensors[name]
        assert tensor is not None
        shown = image_io.apply_view(values, options.view)
        columns[index].download_button(
            f"{name} heatmap PNG", file_name=f"{stem}_{name}.png", mime="image/png",
            data=lambda v=shown: exports.heatmap_png(v, limit, options.view, options.colour_map,
                                                     picture, options.opacity),
            on_click="ignore", key=keys.dl_png(name))
        columns[index + 1].download_button(
            f"{name} .npy", file_name=f"{stem}_{name}.npy", mime="application/octet-stream",
            data=lambda t=tensor: exports.attributions_npy(t), on_click="ignore",
            key=keys.dl_npy(name))
        columns[index + 2].download_button(
            f"{name} CSV", file_name=f"{stem}_{name}.csv", mime="text/csv",
            data=lambda t=tensor: exports.attributions_csv(t), on_click="ignore",
            key=keys.dl_csv(name))
        index += 3
    columns[index].download_button("Run record (JSON)", data=record, mime="application/json",
                                   file_name=f"{stem}_record.json", on_click="ignore",
                                   key=keys.DL_JSON)


def _record(model: LoadedModel, run: logic.ExplanationRun, key: str, limit: float,
            options: ViewOptions) -> dict[str, Any]:
    record: dict[str, Any] = {
        "model": run.model_name, "model_title": model.spec.title,
        "weights_sha256": run.weights_hash, "input_sha256_16": run.input_digest,
        "input_name": st.session_state.get(keys.input_name(key)),
        "baseline_sha256_16": digests.tensor_hex(run.baseline),
        "settings": run.settings.record(),
        "baseline_check": vars(run.baseline_check),
        "view": {"view": options.view, "colour_map": options.colour_map,
                 "clip_percentile": options.clip, "colour_limit": limit,
                 "opacity": options.opacity},
        "device": resources.device_label(), "seconds": run.seconds,
        "versions": {"torch": torch.__version__, "streamlit": st.__version__,
                     "python": platform.python_version()},
    }
    if run.ig is not None:
        record["ig"] = {"delta": float(run.ig.delta[0]),
                        "relative_delta": float(run.ig.relative_delta[0]),
                        "f_input": float(run.ig.f_inputs[0]),
                        "f_baseline": float(run.ig.f_baselines[0]),
                        "n_evaluations": int(run.ig.n_evaluations[0]),
                        "quadrature": run.ig.quadrature, "n_steps": run.ig.n_steps,
                        "convergence": [vars(p) for p in run.curve]}
    if run.ig2 is not None:
        s = run.ig2
        record["ig2"] = {"delta": s.delta, "relative_delta": s.relative_delta,
                         "f_input": s.f_input, "f_counterfactual_mean": s.f_counterfactual_mean,
                         "f_reference_mean": s.f_reference_mean,
                         "reference_indices": list(s.reference_indices),
                         "reference_labels": list(s.reference_labels),
                         "counterfactual_classes": list(s.counterfactual_classes),
                         "n_evaluations": s.n_evaluations,
                         "final_distances": s.distance_trace[:, -1].tolist()
                         if s.distance_trace.size else []}
        if s.trust is not None:
            record["ig2"].update(ig2_trust.trust_record(s.trust))
    return record
