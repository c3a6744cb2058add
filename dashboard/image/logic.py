"""What the image page computes, without Streamlit: inputs, predictions, baselines, runs.

Everything here is a plain function of tensors and frozen settings so that tests and benchmarks
can reproduce exactly what the page shows by calling the core themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from PIL import Image

from attribution_core.cache import ResultCache
from attribution_core.engine import device_lock
from attribution_core.explain_flow import IgOutcome, IgProgress, IgRequest, run_ig
from attribution_core.fast_paths import PreviewSummary
from attribution_core.modalities import image as image_io
from attribution_core.models.inputs import (
    image_preprocessing,
    image_tensor,
    output_probabilities,
)
from attribution_core.models.spec import LoadedModel
from attribution_core.results import Attribution, to_device
from dashboard.image import ig2 as ig2_adapter
from dashboard.image.ig2 import Ig2Summary
from dashboard.widgets import digests, ig_runs
from dashboard.widgets.figures import CurvePoint

Method = Literal["IG", "IG2", "both"]
PhaseProgress = Callable[[str, float], None]
NEUTRAL_CONFIDENCE = 0.5
CURVE_FRACTIONS = (8, 4, 2)
IG_FIELDS = ("baseline", "n_steps", "tolerance", "quadrature", "convergence_curve")
IG2_FIELDS = ("n_references", "reference_choice", "ig2_steps", "ig2_step_size",
              "representation")


@dataclass(frozen=True)
class ImageSettings:
    """Every input of one explanation except the image itself (which is hashed separately)."""

    method: Method = "IG"
    target: int = 0
    baseline: str = "black"
    n_steps: int | Literal["auto"] = 64
    tolerance: float = 0.01
    quadrature: str = "gausslegendre"
    convergence_curve: bool = True
    n_references: int = 8
    reference_choice: Literal["other classes", "relevant"] = "other classes"
    ig2_steps: int = 32
    ig2_step_size: float = 0.01
    representation: str | None = None
    seed: int = 0

    def record(self) -> dict[str, Any]:
        return asdict(self)

    def relevant(self) -> dict[str, Any]:
        """The fields the chosen method uses (IG2's options do not change an IG run, etc.)."""
        fields = self.record()
        if self.method == "IG":
            for name in IG2_FIELDS:
                fields.pop(name)
        elif self.method == "IG2":
            for name in IG_FIELDS:
                fields.pop(name)
        return fields


@dataclass(frozen=True)
class BaselineCheck:
    """f(baseline) for the target, the baseline's own prediction, and whether it is neutral."""

    f_baseline: float
    predicted_class: int
    predicted_probability: float
    target_probability: float
    neutral: bool


@dataclass(frozen=True)
class ExplanationRun:
    settings: ImageSettings
    model_name: str
    weights_hash: str
    input_digest: str
    ig: Attribution | None
    ig2: Ig2Summary | None
    inputs: torch.Tensor
    baseline: torch.Tensor
    baseline_check: BaselineCheck
    curve: tuple[CurvePoint, ...]
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    preview: PreviewSummary | None = None


# -- inputs and predictions ---------------------------------------------------------------------

def preprocessing_for(loaded: LoadedModel, example: torch.Tensor) -> image_io.ImagePreprocessing:
    """The pixel <-> model-space mapping of a model (size from a preprocessed example)."""
    return image_preprocessing(loaded, example)


def model_input(loaded: LoadedModel, picture: Image.Image) -> torch.Tensor:
    """A decoded picture -> the model's [1, C, H, W] input on the model's device."""
    return image_tensor(loaded, picture).to(loaded.device)


def probabilities(loaded: LoadedModel, inputs: torch.Tensor) -> torch.Tensor:
    """Softmax over classes, [B, C] float64 on the CPU (under the device lock); the outputs as
    they are for a model that already gives probabilities (an uploaded ONNX classifier)."""
    with device_lock(loaded.device), torch.no_grad():
        logits = loaded.forward(inputs.to(loaded.device))
    return output_probabilities(loaded, logits.detach().double().cpu())


def logits_of(loaded: LoadedModel, inputs: torch.Tensor) -> torch.Tensor:
    with device_lock(loaded.device), torch.no_grad():
        return loaded.forward(inputs.to(loaded.device)).detach().double().cpu()


def run_key(model_name: str, weights_hash: str, input_digest: str, baseline_digest: str,
            settings: ImageSettings) -> str:
    """Session-state key of a run: any input change makes a new key; view options are not in it."""
    used_baseline = None if settings.method == "IG2" else baseline_digest
    return digests.json_hex([model_name, weights_hash, input_digest, used_baseline,
                             settings.relevant()])


# -- baselines -------------------------------------------------------------------------------

def build_baseline(kind: str, loaded: LoadedModel, inputs: torch.Tensor,
                   prep: image_io.ImagePreprocessing, *, seed: int = 0,
                   uploaded: Image.Image | None = None) -> torch.Tensor:
    dataset_mean = None
    if kind == "mean":
        # The training-set mean where the model provides it, else the reference pool's.
        known = loaded.extras.get("dataset_mean")
        if isinstance(known, torch.Tensor):
            dataset_mean = known
        elif loaded.spec.reference_pool is not None:
            pool = loaded.spec.reference_pool()
            dataset_mean = pool.inputs.to(inputs.dtype).mean(dim=0, keepdim=True)
    if kind == "uploaded" and uploaded is not None:
        return model_input(loaded, uploaded)
    return image_io.make_baseline(kind, inputs, prep, seed=seed, dataset_mean=dataset_mean,
                                  uploaded=uploaded)


def check_baseline(loaded: LoadedModel, baseline: torch.Tensor, target: int) -> BaselineCheck:
    logits = logits_of(loaded, baseline)[0]
    probs = output_probabilities(loaded, logits)
    predicted = int(probs.argmax())
    confident = float(probs[predicted]) >= max(NEUTRAL_CONFIDENCE, 2.0 / probs.numel())
    return BaselineCheck(
        f_baseline=float(logits[target]), predicted_class=predicted,
        predicted_probability=float(probs[predicted]), target_probability=float(probs[target]),
        neutral=not confident,
    )


# -- the run ---------------------------------------------------------------------------------

def run_explanation(loaded: LoadedModel, inputs: torch.Tensor, baseline: torch.Tensor,
                    settings: ImageSettings, *, cache: ResultCache | None,
                    progress: PhaseProgress | None = None,
                    input_probabilities: torch.Tensor | None = None,
                    on_preview: Callable[[Any], None] | None = None) -> ExplanationRun:
    """Compute what the page shows for one set of inputs (IG, IG2 or both, and the curve).

    With ``on_preview``, an IG preview (and an IG2 preview before the exact IG2) is computed
    first and handed over to be shown while the exact result is computed; the run keeps only
    their summaries."""
    started = time.perf_counter()
    report = progress or (lambda _text, _fraction: None)
    want_ig = settings.method in ("IG", "both")
    want_ig2 = settings.method in ("IG2", "both")
    ig_share = 0.5 if (want_ig and want_ig2) else 1.0
    outcome: IgOutcome | None = None
    if want_ig:
        outcome = run_ig(ig_request(loaded, inputs, baseline, settings), cache=cache,
                         progress=ig_runs.reporter(report, lambda e: _ig_words(e, ig_share)),
                         on_preview=on_preview)
    ig2_result: Ig2Summary | None = None
    if want_ig2:
        start_fraction = 1.0 - (0.5 if want_ig else 1.0)
        ig2_result = ig2_adapter.run_ig2(
            loaded, inputs, settings.target, n_references=settings.n_references,
            choice=settings.reference_choice, n_steps=settings.ig2_steps,
            step_size=settings.ig2_step_size, representation=settings.representation,
            seed=settings.seed, cache=cache, clip=_input_box(loaded, inputs),
            input_probabilities=input_probabilities,
            progress=lambda text, f: report(text, start_fraction + (1 - start_fraction) * f),
            on_preview=on_preview,
        )
    report("Done", 1.0)
    return ExplanationRun(
        settings=settings, model_name=loaded.spec.name, weights_hash=loaded.weights_hash,
        input_digest=digests.tensor_hex(inputs),
        # Sessions keep results: never hold accelerator memory.
        ig=None if outcome is None else to_device(outcome.result, "cpu"), ig2=ig2_result,
        inputs=inputs.detach().cpu(), baseline=baseline.detach().cpu(),
        baseline_check=check_baseline(loaded, baseline, settings.target),
        curve=() if outcome is None else ig_runs.curve_points(
            outcome, ladder_x="steps", ladder_source="smaller step count"),
        seconds=time.perf_counter() - started,
        preview=None if outcome is None else outcome.preview,
    )


def ig_request(loaded: LoadedModel, inputs: torch.Tensor, baseline: torch.Tensor,
               settings: ImageSettings) -> IgRequest:
    """The page's IG run: its steps and quadrature, and the curve's ladder (1/8, 1/4, 1/2)."""
    return IgRequest(
        loaded.forward, inputs, baselines=baseline, target=settings.target,
        n_steps=settings.n_steps, method=settings.quadrature, tolerance=settings.tolerance,
        ladder=ig_runs.ladder(settings.n_steps, CURVE_FRACTIONS, settings.convergence_curve,
                              distinct=True),
        model_key=loaded.weights_hash, device=loaded.device)


def _ig_words(event: IgProgress, share: float) -> tuple[str, float] | None:
    """The image page's progress words: rows of every run against the steps of all runs."""
    if event.stage == "preview":
        return "IG: a quick preview first", 0.0
    if event.done is None or event.total is None:
        if event.stage == "ladder":
            return (f"IG: convergence curve, {event.steps} steps",
                    share * event.offset / max(event.span, 1))
        return None
    span = max(event.span, event.total, 1)
    return (f"IG: gradients at the points of the straight path ({event.done}/{event.total} "
            "rows)", share * min(1.0, (event.offset + event.done) / span))


def _input_box(loaded: LoadedModel, inputs: torch.Tensor) -> tuple[Any, Any]:
    """IG2's clipping box: the spec's scalar box, else the normalised pixel range per channel."""
    if loaded.spec.input_box is not None:
        return tuple(loaded.spec.input_box)  # type: ignore[return-value]
    low, high = preprocessing_for(loaded, inputs).input_box()
    return low.to(inputs.device, inputs.dtype), high.to(inputs.device, inputs.dtype)


def top_classes(probs: torch.Tensor, class_names: Sequence[str], k: int = 5
                ) -> list[tuple[int, str, float]]:
    values, indices = probs.topk(min(k, probs.numel()))
    return [(int(i), _name(class_names, int(i)), float(v))
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)]


def _name(class_names: Sequence[str], index: int) -> str:
    return str(class_names[index]) if index < len(class_names) else str(index)


def class_label(class_names: Sequence[str], index: int) -> str:
    name = _name(class_names, index)
    return name if name == str(index) else f"{index}: {name}"
