"""What the text page computes, without Streamlit: encoding, baselines, IG / IG2 runs, views.

Attributions are taken over the token embeddings (``loaded.embed(input_ids)``) with the
attention mask passed as a forward keyword; the page sums them over the embedding dimension.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from attribution_core import explain_flow
from attribution_core.cache import ResultCache
from attribution_core.engine import device_lock
from attribution_core.explain_flow import (
    Ig2Progress,
    Ig2Request,
    IgOutcome,
    IgProgress,
    IgRequest,
    run_ig,
)
from attribution_core.fast_paths import PreviewSummary
from attribution_core.methods.ig2 import Ig2TrustSummary
from attribution_core.modalities import text as text_io
from attribution_core.models.spec import LoadedModel
from attribution_core.references import select_references
from attribution_core.results import Attribution, IG2Attribution, to_device
from dashboard.widgets import digests, ig_runs
from dashboard.widgets.figures import CurvePoint

Method = Literal["IG", "IG2", "both"]
PhaseProgress = Callable[[str, float], None]
CURVE_DIVISORS = (4, 2)
# Last-resort reference candidates (labelled by the model itself) for models without a labelled
# pool or bundled samples, e.g. a zero-shot label set the user just typed.
GENERIC_SENTENCES = (
    "The film was a delight from start to finish.",
    "I hated every minute of this boring show.",
    "The service was slow and the food was cold.",
    "What a wonderful, friendly little hotel.",
    "The team won the championship after extra time.",
    "Parliament passed the new budget law on Tuesday.",
    "Shares of the company fell after the earnings report.",
    "Researchers released a faster open-source compiler.",
    "The weather will be cloudy with light rain tomorrow.",
    "Please send me the invoice by the end of the week.",
)


@dataclass(frozen=True)
class TextSettings:
    """Every input of one explanation except the text (hashed separately)."""

    method: Method = "IG"
    target: int = 0
    baseline: str = "pad"
    n_steps: int | Literal["auto"] = 32
    tolerance: float = 0.01
    convergence_curve: bool = True
    n_references: int = 4
    reference_choice: Literal["other", "relevant"] = "other"
    ig2_steps: int = 16
    ig2_step_size: float | Literal["auto"] = "auto"
    seed: int = 0

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TextIg2:
    """IG2's result for one text, with the reference sentences it walked towards."""

    result: IG2Attribution
    reference_texts: tuple[str, ...]
    reference_labels: tuple[int, ...]
    labels_from: str  # "pool labels" or "model predictions"
    trust: Ig2TrustSummary
    preview: PreviewSummary | None = None


@dataclass(frozen=True)
class TextRun:
    settings: TextSettings
    model_name: str
    weights_hash: str
    text_digest: str
    encoded: text_io.EncodedText
    probabilities: torch.Tensor  # [C] float64
    f_baseline: float
    baseline_class: int
    baseline_probability: float
    ig: Attribution | None
    ig2: TextIg2 | None
    curve: tuple[CurvePoint, ...]
    seconds: float
    preview: PreviewSummary | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def baseline_is_neutral(top_probability: float, n_classes: int) -> bool:
    """Neutral: the baseline's top class is less than halfway from chance to certainty."""
    chance = 1.0 / max(2, n_classes)
    return top_probability < chance + 0.5 * (1.0 - chance)


def encode(loaded: LoadedModel, text: str) -> text_io.EncodedText:
    """The text as this model reads it (truncated to its maximum, dropped tokens counted)."""
    if loaded.tokenizer is None or loaded.embed is None:
        raise text_io.TextInputError(f"{loaded.spec.title} is not a text model with a "
                                     "tokenizer and an embedding layer.")
    limit = text_io.max_length_of(loaded.tokenizer, loaded.extras.get("max_length"))
    return text_io.encode_text(loaded.tokenizer, text, limit, loaded.preprocess)


def embeddings(loaded: LoadedModel, input_ids: torch.Tensor) -> torch.Tensor:
    assert loaded.embed is not None
    with device_lock(loaded.device), torch.no_grad():
        return loaded.embed(input_ids.to(loaded.device)).detach().float()


def logits(loaded: LoadedModel, inputs_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with device_lock(loaded.device), torch.no_grad():
        out = loaded.forward(inputs_embeds.to(loaded.device),
                             attention_mask=mask.to(loaded.device))
    return out.detach().double().cpu()


def probabilities(loaded: LoadedModel, encoded: text_io.EncodedText) -> torch.Tensor:
    out = logits(loaded, embeddings(loaded, encoded.input_ids), encoded.attention_mask)
    return torch.softmax(out, dim=-1)[0]


def run_key(model_name: str, weights_hash: str, text_digest: str, settings: TextSettings) -> str:
    return digests.json_hex([model_name, weights_hash, text_digest, settings.record()])


def _forward_kwargs(loaded: LoadedModel, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"attention_mask": mask.to(loaded.device)}


def run_explanation(loaded: LoadedModel, encoded: text_io.EncodedText, text: str,
                    settings: TextSettings, *, cache: ResultCache | None,
                    progress: PhaseProgress | None = None,
                    on_preview: Callable[[Any], None] | None = None) -> TextRun:
    """IG, IG2 or both for one text, plus a short convergence curve for IG; with
    ``on_preview`` a labelled preview of each method first (never cached)."""
    started = time.perf_counter()
    report = progress or (lambda _text, _fraction: None)
    assert loaded.embed is not None
    inputs = embeddings(loaded, encoded.input_ids)
    mask = encoded.attention_mask.to(loaded.device)
    baseline = text_io.text_baseline(settings.baseline, encoded, loaded.tokenizer, loaded.embed,
                                     inputs)
    probs = torch.softmax(logits(loaded, inputs, mask), dim=-1)[0]
    base_logits = logits(loaded, baseline, mask)[0]
    base_probs = torch.softmax(base_logits, dim=-1)
    want_ig = settings.method in ("IG", "both")
    want_ig2 = settings.method in ("IG2", "both")
    ig_share = 0.5 if want_ig and want_ig2 else 1.0
    outcome: IgOutcome | None = None
    if want_ig:
        outcome = run_ig(ig_request(loaded, inputs, baseline, mask, settings), cache=cache,
                         progress=ig_runs.reporter(report, lambda e: _ig_words(e, ig_share)),
                         on_preview=on_preview)
    ig2_result: TextIg2 | None = None
    if want_ig2:
        start = 1.0 - ig_share if want_ig else 0.0
        ig2_result = _run_ig2(loaded, encoded, inputs, mask, probs, settings, cache,
                              lambda text, f: report(text, start + (1 - start) * f),
                              on_preview=on_preview)
    report("Done", 1.0)
    return TextRun(
        settings=settings, model_name=loaded.spec.name, weights_hash=loaded.weights_hash,
        text_digest=digests.text_hex(text), encoded=encoded, probabilities=probs,
        f_baseline=float(base_logits[settings.target]),
        baseline_class=int(base_probs.argmax()),
        baseline_probability=float(base_probs.max()),
        ig=None if outcome is None else to_device(outcome.result, "cpu"), ig2=ig2_result,
        curve=() if outcome is None else ig_runs.curve_points(
            outcome, ladder_x="evaluations", ladder_source="fewer steps"),
        seconds=time.perf_counter() - started,
        preview=None if outcome is None else outcome.preview)


def ig_request(loaded: LoadedModel, inputs: torch.Tensor, baseline: torch.Tensor,
               mask: torch.Tensor, settings: TextSettings) -> IgRequest:
    """The page's IG run over the embeddings (the mask as a forward keyword), with the curve's
    ladder (1/4, 1/2 of the steps, repeats kept)."""
    return IgRequest(
        loaded.forward, inputs, baselines=baseline, target=settings.target,
        n_steps=settings.n_steps, tolerance=settings.tolerance,
        ladder=ig_runs.ladder(settings.n_steps, CURVE_DIVISORS, settings.convergence_curve,
                              distinct=False),
        forward_kwargs=_forward_kwargs(loaded, mask), model_key=loaded.weights_hash,
        device=loaded.device)


def _ig_words(event: IgProgress, share: float) -> tuple[str, float] | None:
    """The text page's progress words: the exact run's rows, then each ladder run's start."""
    if event.stage == "preview":
        return "IG: a quick preview first", 0.0
    if event.stage == "exact" and event.done is not None and event.total is not None:
        return (f"IG: gradients along the straight path ({event.done}/{event.total} rows)",
                share * 0.8 * event.done / max(event.total, 1))
    if event.stage == "ladder" and event.done is None:
        return f"IG: convergence curve, {event.steps} steps", share * 0.9
    return None


# -- IG2 -----------------------------------------------------------------------------------

def reference_candidates(loaded: LoadedModel, fallback_texts: Sequence[str]
                         ) -> tuple[list[str], torch.Tensor | None]:
    """Sentences to draw references from, with their labels when the model's pool has them."""
    pool_factory = loaded.spec.reference_pool
    if pool_factory is not None:
        try:
            pool = pool_factory()
            texts = list(pool.extras.get("texts", ()))
            if texts and len(texts) == int(pool.labels.shape[0]):
                return texts, pool.labels.detach().cpu().long()
        except Exception:  # a custom label set has no labelled pool: fall back below
            pass
    candidates = [*fallback_texts, *GENERIC_SENTENCES]
    return [t for t in dict.fromkeys(candidates) if t.strip()], None


def _predicted_labels(loaded: LoadedModel, texts: Sequence[str], length: int) -> torch.Tensor:
    ids, mask = text_io.encode_to_length(loaded.tokenizer, texts, length)
    out = logits(loaded, embeddings(loaded, ids), mask)
    return out.argmax(dim=-1).long()


def _run_ig2(loaded: LoadedModel, encoded: text_io.EncodedText, inputs: torch.Tensor,
             mask: torch.Tensor, probs: torch.Tensor, settings: TextSettings,
             cache: ResultCache | None, report: PhaseProgress,
             fallback_texts: Sequence[str] = (),
             on_preview: Callable[[Any], None] | None = None) -> TextIg2:
    texts, labels = reference_candidates(loaded, fallback_texts or _sample_texts(loaded))
    if not texts:
        raise ValueError(f"{loaded.spec.title} has no reference sentences for IG2.")
    labels_from = "pool labels"
    if labels is None:
        report("IG2: labelling candidate reference sentences with the model", 0.05)
        labels = _predicted_labels(loaded, texts, encoded.length)
        labels_from = "model predictions"
    if not bool((labels != settings.target).any()):
        raise ValueError(f"IG2 needs reference sentences of another class than the explained "
                         f"one, but all {len(texts)} candidate sentences are in that class "
                         f"({labels_from}). Explain another class or use IG.")
    selection = select_references(torch.arange(len(texts)).unsqueeze(1), labels,
                                  settings.target, k=settings.n_references, seed=settings.seed,
                                  strategy=settings.reference_choice,
                                  class_ranking=probs.float())
    chosen = [texts[int(i)] for i in selection.indices.tolist()]
    ids, ref_mask = text_io.encode_to_length(loaded.tokenizer, chosen, encoded.length)
    outcome = explain_flow.run_ig2(
        Ig2Request(loaded.forward, inputs, embeddings(loaded, ids),
                   representation=loaded.ig2_representation(), target=settings.target,
                   n_steps=settings.ig2_steps, step_size=settings.ig2_step_size,
                   forward_kwargs={"attention_mask": mask},
                   reference_kwargs={"attention_mask": ref_mask.to(loaded.device)},
                   model_key=loaded.weights_hash, device=loaded.device),
        cache=cache, progress=ig_runs.reporter(report, _ig2_words), on_preview=on_preview)
    return TextIg2(result=outcome.result, reference_texts=tuple(chosen),
                   reference_labels=tuple(int(v) for v in selection.labels.tolist()),
                   labels_from=labels_from, preview=outcome.preview, trust=outcome.trust)


def _ig2_words(event: Ig2Progress) -> tuple[str, float]:
    if event.stage == "preview":
        return "IG2: a quick preview first", 0.1
    done, total = event.done or 0, event.total or 0
    return (f"IG2: walking {event.n_references} gradient paths towards the reference "
            f"sentences ({done}/{total})", min(1.0, done / max(total, 1)))


def _sample_texts(loaded: LoadedModel) -> list[str]:
    """Bundled sentences of every text model (fallback reference candidates)."""
    from attribution_core.models import list_specs

    texts: list[str] = []
    for spec in [loaded.spec, *list_specs("text")]:
        if spec.samples is None:
            continue
        try:
            texts.extend(str(s.value) for s in spec.samples())
        except Exception:  # a model without readable samples adds nothing
            continue
    return texts


# -- views -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MethodView:
    """One method's attributions as tokens and words, with its completeness figures."""

    name: str
    tokens: tuple[text_io.ScoredUnit, ...]
    words: tuple[text_io.ScoredUnit, ...]
    f_input: float
    f_reference: float  # f(baseline) for IG, mean f(GradCF) for IG2
    delta: float
    relative_delta: float
    n_evaluations: int
    from_cache: bool


def method_views(run: TextRun) -> list[MethodView]:
    words = text_io.group_words(run.encoded.tokens, run.encoded.special)
    views = []
    results: list[tuple[str, Any, float]] = []
    if run.ig is not None:
        results.append(("IG", run.ig, float(run.ig.f_baselines[0])))
    if run.ig2 is not None:
        result = run.ig2.result
        results.append(("IG2", result, float(result.f_counterfactuals[0])))
    for name, result, f_reference in results:
        scores = text_io.token_scores(result.attributions)
        views.append(MethodView(
            name=name,
            tokens=tuple(text_io.token_units(scores, run.encoded.tokens, run.encoded.special)),
            words=tuple(text_io.word_scores(scores, words)),
            f_input=float(result.f_inputs[0]), f_reference=f_reference,
            delta=float(result.delta[0]), relative_delta=float(result.relative_delta[0]),
            n_evaluations=int(result.n_evaluations[0]), from_cache=bool(result.from_cache)))
    return views


def colour_limit(views: Sequence[MethodView], level: Literal["tokens", "words"]) -> float:
    values = [abs(u.score) for v in views for u in (v.tokens if level == "tokens" else v.words)
              if not u.special]
    limit = float(np.max(values)) if values else 0.0
    return limit if limit > 0 else 1.0
