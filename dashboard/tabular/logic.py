"""What the tabular page computes, without Streamlit: rows, baselines, IG / IG2 runs, batches.

The model input is the standardised row ``[1, F]`` (``loaded.preprocess`` maps raw values to it,
``loaded.postprocess`` back); attributions are per standardised feature and sum to
f(x) - f(baseline) in the model's output units (a logit, or the regression target's units).
A model with categorical columns (:func:`schema`) takes its encoded row ``[1, E]`` instead; its
attributions are computed there and summed per original column before anything is shown, so
they still sum to f(x) - f(baseline).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from attribution_core import explain_flow
from attribution_core.cache import ResultCache
from attribution_core.engine import device_lock
from attribution_core.explain_flow import Ig2Request, IgOutcome, IgProgress, IgRequest, run_ig
from attribution_core.fast_paths import PreviewSummary
from attribution_core.methods.ig2 import Ig2TrustSummary
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
from dashboard.widgets import digests, ig_runs
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
    trust: Ig2TrustSummary
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
    """A raw row's digest, as :func:`run_row` reads it (float64)."""
    return digests.array_hex(np.asarray(values, dtype=np.float64))


def run_key(model_name: str, weights_hash: str, row_digest: str, settings: TabularSettings
            ) -> str:
    return digests.json_hex([model_name, weights_hash, row_digest, settings.record()])


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
    outcome: IgOutcome | None = None
    if want_ig:
        outcome = run_ig(ig_request(loaded, inputs, baseline, settings), cache=cache,
                         progress=ig_runs.reporter(report, _ig_words), on_preview=on_preview)
    ig2_result = None
    if want_ig2:
        report("IG2: walking towards the reference rows", 0.5)
        ig2_result = _run_ig2(loaded, inputs, outputs, settings, cache, on_preview)
    report("Done", 1.0)
    return TabularRun(
        settings=settings, model_name=loaded.spec.name, weights_hash=loaded.weights_hash,
        row_digest=digest_row(raw), raw_row=raw, baseline_raw=base_raw, outputs=outputs,
        f_baseline=float(base_outputs[settings.target]), baseline_outputs=base_outputs,
        # Sessions never hold accelerator memory; columns are shown summed over their slots.
        ig=None if outcome is None else folded(loaded, to_device(outcome.result, "cpu")),
        ig2=ig2_result,
        curve=() if outcome is None else ig_runs.curve_points(
            outcome, ladder_x="evaluations", ladder_source="fewer steps"),
        seconds=time.perf_counter() - started,
        preview=None if outcome is None else outcome.preview)


def ig_request(loaded: LoadedModel, inputs: torch.Tensor, baseline: torch.Tensor,
               settings: TabularSettings) -> IgRequest:
    """The page's IG run over the model row, with the curve's ladder (1/8, 1/4, 1/2 of the
    steps, repeats kept)."""
    return IgRequest(
        loaded.forward, inputs, baselines=baseline, target=settings.target,
        n_steps=settings.n_steps, tolerance=settings.tolerance,
        ladder=ig_runs.ladder(settings.n_steps, CURVE_DIVISORS, settings.convergence_curve,
                              distinct=False),
        model_key=loaded.weights_hash, device=loaded.device)


def _ig_words(event: IgProgress) -> tuple[str, float] | None:
    """The tabular page's progress words: the preview and the exact run's start only."""
    if event.stage == "preview":
        return "IG: a quick preview first", 0.0
    if event.stage == "exact" and event.done is None:
        return "IG: gradients along the straight path", 0.1
    return None


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
    outcome = explain_flow.run_ig2(
        Ig2Request(loaded.forward, inputs, references,
                   representation=loaded.ig2_representation(), target=settings.target,
                   n_steps=settings.ig2_steps, step_size=settings.ig2_step_size,
                   clip=loaded.spec.input_box, model_key=loaded.weights_hash,
                   device=loaded.device),
        cache=cache, on_preview=on_preview)
    targets = tuple(float(v) for v in data.labels.index_select(0, indices).tolist())
    return TabularIg2(folded(loaded, outcome.result), tuple(int(i) for i in indices.tolist()),
                      targets, how, outcome.trust, outcome.preview)


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
    rows_done = progress or (lambda _done, _total: None)
    result = run_ig(
        IgRequest(loaded.forward, inputs, baselines=baseline.expand_as(inputs), target=targets,
                  n_steps=settings.n_steps, tolerance=settings.tolerance,
                  model_key=loaded.weights_hash, device=loaded.device),
        cache=cache, progress=lambda e: None if e.done is None or e.total is None
        else rows_done(e.done, e.total)).result
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
