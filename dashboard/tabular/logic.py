"""What the tabular page computes, without Streamlit: rows, baselines, IG / IG2 runs, batches.

The model input is the standardised row ``[1, F]`` (``loaded.preprocess`` maps raw values to it,
``loaded.postprocess`` back); attributions are per standardised feature and sum to
f(x) - f(baseline) in the model's output units (a logit, or the regression target's units).
A model with categorical columns (:func:`schema`) takes its encoded row ``[1, E]`` instead; its
attributions are computed there and summed per original column before anything is shown, so
they still sum to f(x) - f(baseline).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from attribution_core import ig2, integrated_gradients, with_convergence
from attribution_core.cache import ResultCache
from attribution_core.engine import device_lock
from attribution_core.fast_paths import Preview, PreviewSummary, preview_ig, summarise_preview
from attribution_core.methods.ig2_preview import Ig2Preview, preview_ig2, summarise_ig2_preview
from attribution_core.modalities import tabular as tab_io
from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.models.encoded_tabular import schema_of
from attribution_core.models.inputs import (
    feature_names,
    model_rows,
    output_probabilities,
    tabular_baseline_raw,
)
from attribution_core.models.spec import LoadedModel, ReferencePool
from attribution_core.references import select_references
from attribution_core.results import Attribution, IG2Attribution, to_device
from dashboard.widgets.figures import CurvePoint

Method = Literal["IG", "IG2", "both"]
PhaseProgress = Callable[[str, float], None]
CURVE_DIVISORS = (8, 4, 2)
TYPED = "typed"  # a baseline row the user types (raw units), offered for every model
BASELINE_LABELS = {**tab_io.BASELINE_LABELS, TYPED: "a row you type (raw units)"}


@dataclass(frozen=True)
class TabularSettings:
    method: Method = "IG"
    target: int = 0
    baseline: str = "mean"
    reference_row: int = 0
    baseline_values: tuple[float, ...] | None = None  # raw units, for the typed baseline
    n_steps: int | Literal["auto"] = 64
    tolerance: float = 0.01
    convergence_curve: bool = True
    n_references: int = 8
    reference_choice: Literal["other", "relevant"] = "other"
    ig2_steps: int = 32
    ig2_step_size: float | Literal["auto"] = "auto"
    seed: int = 0

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TabularIg2:
    result: IG2Attribution
    reference_indices: tuple[int, ...]
    reference_targets: tuple[float, ...]  # class labels or regression targets of the pool rows
    how: str
    preview: PreviewSummary | None = None


@dataclass(frozen=True)
class TabularRun:
    settings: TabularSettings
    model_name: str
    weights_hash: str
    row_digest: str
    raw_row: np.ndarray  # [F] raw feature values
    baseline_raw: np.ndarray  # [F]
    outputs: torch.Tensor  # [C] model outputs at x (logits or the regression value)
    f_baseline: float
    baseline_outputs: torch.Tensor  # [C]
    ig: Attribution | None
    ig2: TabularIg2 | None
    curve: tuple[CurvePoint, ...]
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    preview: PreviewSummary | None = None


@dataclass(frozen=True)
class BatchRow:
    row_number: int  # 0-based row of the CSV
    predicted: str
    target: int
    f_input: float
    f_baseline: float
    delta: float
    relative_delta: float
    top: tuple[tuple[str, float], ...]


def units(loaded: LoadedModel) -> tuple[str, ...]:
    found = loaded.extras.get("units") or ()
    names = feature_names(loaded)
    return tuple(str(u) for u in found) if len(found) == len(names) else ("",) * len(names)


def schema(loaded: LoadedModel) -> cat_io.TabularSchema | None:
    """The column schema of a model explained in an encoded space (categorical columns,
    imputed cells), or None for a model over plain numbers."""
    return schema_of(loaded)


def folded(loaded: LoadedModel, result: Any) -> Any:
    """A result with its attributions summed per original column (as it is otherwise)."""
    found = schema_of(loaded)
    return result if found is None or result is None else cat_io.fold_result(result, found)


def value_texts(loaded: LoadedModel, raw: np.ndarray) -> list[str] | None:
    """Raw values as the user wrote them (category names), or None for plain numbers."""
    found = schema_of(loaded)
    return None if found is None else cat_io.display_row(found, np.asarray(raw).reshape(-1))


def probabilities(loaded: LoadedModel, outputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities from the model's outputs: softmax of logits, or the outputs as they
    are when the model already gives probabilities (a scikit-learn classifier from ONNX)."""
    return output_probabilities(loaded, outputs)


def is_regression(loaded: LoadedModel) -> bool:
    return loaded.spec.output_kind == "regression"


def model_row(loaded: LoadedModel, raw: np.ndarray) -> torch.Tensor:
    """Raw values ``[F]`` or ``[R, F]`` -> standardised model rows ``[R, F]`` on the device."""
    return model_rows(loaded, raw).to(loaded.device)


def outputs_of(loaded: LoadedModel, rows: torch.Tensor, what: str = "this row") -> torch.Tensor:
    """The model's outputs ``[R, C]``; a NaN or infinite output is refused here, in words,
    rather than turning every attribution and chart after it into NaN."""
    with device_lock(loaded.device), torch.no_grad():
        outputs = loaded.forward(rows.to(loaded.device)).detach().double().cpu()
    bad = (~torch.isfinite(outputs)).any(dim=-1).nonzero().flatten().tolist()
    if bad:
        where = what if outputs.shape[0] == 1 else \
            f"{what} {', '.join(str(i + 1) for i in bad[:5])}" + (" …" if len(bad) > 5 else "")
        raise ValueError(f"The model's output at {where} is not a finite number (NaN or "
                         "infinite): its values are out of the range the model can handle.")
    return outputs


def pool(loaded: LoadedModel) -> ReferencePool | None:
    return loaded.spec.reference_pool() if loaded.spec.reference_pool is not None else None


def available_baselines(loaded: LoadedModel) -> tuple[str, ...]:
    """The baselines this model can give: data-set ones only with a data set (or its recorded
    means / medians), zeros and a typed row always; a model with categorical columns offers its
    schema's own (a category is not typed as a number)."""
    if schema(loaded) is not None:
        return tuple(loaded.spec.baselines)
    has_pool = loaded.spec.reference_pool is not None
    kinds = [kind for kind in tab_io.BASELINE_KINDS if kind == "zeros" or has_pool
             or f"train_{kind}_raw" in loaded.extras]
    return (*kinds, TYPED)


def baseline_labels(loaded: LoadedModel) -> Mapping[str, str]:
    """How each of :func:`available_baselines` is named on the page."""
    return BASELINE_LABELS if schema(loaded) is None else cat_io.BASELINE_LABELS


def baseline_raw(loaded: LoadedModel, kind: str, reference_row: int = 0,
                 typed: Sequence[float] | None = None) -> np.ndarray:
    """The baseline in raw units ``[F]`` (the page shows it beside the row's values)."""
    if kind == TYPED:
        if typed is None or len(typed) != len(feature_names(loaded)):
            raise ValueError("Type one baseline value per feature.")
        return np.asarray(typed, dtype=np.float64)
    return tabular_baseline_raw(loaded, kind, reference_row)


def digest_row(values: np.ndarray) -> str:
    data = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    return hashlib.sha256(data.tobytes() + str(data.shape).encode()).hexdigest()[:16]


def run_key(model_name: str, weights_hash: str, row_digest: str, settings: TabularSettings
            ) -> str:
    payload = json.dumps([model_name, weights_hash, row_digest, settings.record()],
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def run_row(loaded: LoadedModel, raw: np.ndarray, settings: TabularSettings, *,
            cache: ResultCache | None, progress: PhaseProgress | None = None,
            on_preview: Callable[[Any], None] | None = None) -> TabularRun:
    """IG, IG2 or both for one raw row (each with a labelled preview first when
    ``on_preview`` is given)."""
    started = time.perf_counter()
    report = progress or (lambda _t, _f: None)
    raw = np.asarray(raw, dtype=np.float64).reshape(-1)
    inputs = model_row(loaded, raw)
    base_raw = baseline_raw(loaded, settings.baseline, settings.reference_row,
                            settings.baseline_values)
    baseline = model_row(loaded, base_raw)
    outputs = outputs_of(loaded, inputs)[0]
    base_outputs = outputs_of(loaded, baseline, "the baseline")[0]
    want_ig, want_ig2 = settings.method in ("IG", "both"), settings.method in ("IG2", "both")
    ig_result: Attribution | None = None
    preview: Preview | None = None
    curve: list[CurvePoint] = []
    if want_ig:
        if on_preview is not None:
            report("IG: a quick preview first", 0.0)
            preview = preview_ig(loaded.forward, inputs, baseline, settings.target,
                                 settings.n_steps, loaded.device)
            on_preview(preview)
        report("IG: gradients along the straight path", 0.1)
        ig_result = integrated_gradients(
            loaded.forward, inputs, baselines=baseline, target=settings.target,
            n_steps=settings.n_steps, tolerance=settings.tolerance, cache=cache,
            model_key=loaded.weights_hash)
        curve.extend(_own_curve(ig_result))
        nearest: Attribution | None = None
        if settings.convergence_curve and isinstance(settings.n_steps, int):
            for divisor in CURVE_DIVISORS:
                steps = max(2, settings.n_steps // divisor)
                if steps == settings.n_steps:
                    continue
                smaller = integrated_gradients(
                    loaded.forward, inputs, baselines=baseline, target=settings.target,
                    n_steps=steps, cache=cache, model_key=loaded.weights_hash)
                curve.append(CurvePoint(int(smaller.n_evaluations[0]),
                                        float(smaller.relative_delta[0]), "fewer steps"))
                if nearest is None or int(smaller.n_evaluations[0]) > int(
                        nearest.n_evaluations[0]):
                    nearest = smaller
        if nearest is not None:
            ig_result = with_convergence(ig_result, nearest)
        ig_result = to_device(ig_result, "cpu")  # sessions never hold accelerator memory
    summary = summarise_preview(preview, ig_result)
    ig_result = folded(loaded, ig_result)
    ig2_result = None
    if want_ig2:
        report("IG2: walking towards the reference rows", 0.5)
        ig2_result = _run_ig2(loaded, inputs, outputs, settings, cache, on_preview)
    report("Done", 1.0)
    return TabularRun(
        settings=settings, model_name=loaded.spec.name, weights_hash=loaded.weights_hash,
        row_digest=digest_row(raw), raw_row=raw, baseline_raw=base_raw, outputs=outputs,
        f_baseline=float(base_outputs[settings.target]), baseline_outputs=base_outputs,
        ig=ig_result, ig2=ig2_result, curve=tuple(sorted(curve, key=lambda p: p.evaluations)),
        seconds=time.perf_counter() - started, preview=summary)


def _own_curve(result: Attribution) -> list[CurvePoint]:
    evaluations, relative = result.convergence_evaluations, result.convergence_relative_delta
    if evaluations is None or relative is None:
        return [CurvePoint(int(result.n_evaluations[0]), float(result.relative_delta[0]),
                           "this run")]
    return [CurvePoint(int(e), float(r), "adaptive refinement" if result.n_steps == "auto"
                       else "this run")
            for e, r in zip(evaluations[:, 0].tolist(), relative[:, 0].tolist(), strict=True)]


def _run_ig2(loaded: LoadedModel, inputs: torch.Tensor, outputs: torch.Tensor,
             settings: TabularSettings, cache: ResultCache | None,
             on_preview: Callable[[Any], None] | None = None) -> TabularIg2:
    data = pool(loaded)
    if data is None:
        raise ValueError(f"{loaded.spec.title} has no reference rows, which IG2 needs.")
    if is_regression(loaded):
        indices = torch.as_tensor(tab_io.distant_target_indices(
            data.labels, float(outputs[settings.target]), settings.n_references,
            settings.seed), dtype=torch.long)
        how = ("rows whose target is among the farthest quarter from the prediction "
               f"{float(outputs[settings.target]):.4g}")
    else:
        selection = select_references(data.inputs, data.labels, settings.target,
                                      k=settings.n_references, seed=settings.seed,
                                      strategy=settings.reference_choice,
                                      class_ranking=outputs.float())
        indices = selection.indices
        how = ("rows of the 2nd-4th most likely classes" if settings.reference_choice ==
               "relevant" else "rows of other classes than the explained one")
    references = data.inputs.index_select(0, indices).to(loaded.device, torch.float32)
    representation = loaded.ig2_representation()
    preview: Ig2Preview | None = None
    if on_preview is not None:
        preview = preview_ig2(loaded.forward, inputs, references, loaded.device,
                              representation=representation, target=settings.target,
                              n_steps=settings.ig2_steps, step_size=settings.ig2_step_size,
                              clip=loaded.spec.input_box)
        on_preview(preview)
    # halving: a companion path at half the steps, the steps' part of the convergence.
    result = ig2(loaded.forward, inputs, references, representation=representation,
                 target=settings.target, n_steps=settings.ig2_steps,
                 step_size=settings.ig2_step_size, clip=loaded.spec.input_box, cache=cache,
                 model_key=loaded.weights_hash, halving=True)
    targets = tuple(float(v) for v in data.labels.index_select(0, indices).tolist())
    return TabularIg2(folded(loaded, result), tuple(int(i) for i in indices.tolist()), targets,
                      how, summarise_ig2_preview(preview, result))


def run_batch(loaded: LoadedModel, raw_rows: np.ndarray, row_numbers: Sequence[int],
              settings: TabularSettings, *, cache: ResultCache | None, top_k: int = 3,
              progress: Callable[[int, int], None] | None = None) -> list[BatchRow]:
    """IG for many rows at once (one batched call), each at its own predicted class."""
    if raw_rows.shape[0] == 0:
        return []
    names = feature_names(loaded)
    inputs = model_row(loaded, raw_rows)
    baseline = model_row(loaded, baseline_raw(loaded, settings.baseline, settings.reference_row,
                                              settings.baseline_values))
    outputs = outputs_of(loaded, inputs, "the valid CSV row")
    targets = [0] * len(inputs) if is_regression(loaded) else \
        outputs.argmax(dim=-1).tolist()
    result = integrated_gradients(
        loaded.forward, inputs, baselines=baseline.expand_as(inputs), target=targets,
        n_steps=settings.n_steps, tolerance=settings.tolerance, progress=progress,
        cache=cache, model_key=loaded.weights_hash)
    attributions = folded(loaded, result).attributions.detach().cpu().double()
    rows = []
    for i, number in enumerate(row_numbers):
        label = f"{float(outputs[i, 0]):.4g}" if is_regression(loaded) else \
            class_name(loaded, int(targets[i]))
        rows.append(BatchRow(
            row_number=int(number), predicted=label, target=int(targets[i]),
            f_input=float(result.f_inputs[i]), f_baseline=float(result.f_baselines[i]),
            delta=float(result.delta[i]), relative_delta=float(result.relative_delta[i]),
            top=tuple(tab_io.row_summary(attributions[i], names, top_k))))
    return rows


def batch_table(rows: Sequence[BatchRow], top_k: int = 3) -> list[dict[str, Any]]:
    table = []
    for row in rows:
        entry: dict[str, Any] = {"CSV row": row.row_number + 1, "prediction": row.predicted,
                                 "f(x)": row.f_input, "f(baseline)": row.f_baseline}
        for rank in range(top_k):
            name, value = row.top[rank] if rank < len(row.top) else ("", float("nan"))
            entry[f"feature {rank + 1}"] = name
            entry[f"attribution {rank + 1}"] = value
        entry["completeness error"] = row.delta
        entry["relative error %"] = 100 * row.relative_delta
        table.append(entry)
    return table


def class_name(loaded: LoadedModel, index: int) -> str:
    names = loaded.spec.class_names
    name = str(names[index]) if index < len(names) else str(index)
    return name if name == str(index) else f"{index}: {name}"
