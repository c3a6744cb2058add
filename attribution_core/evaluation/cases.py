"""Raw cases (bundled or uploaded) -> :class:`EvalCase`: model tensors, baselines, units, truth.

Every modality ends in the same shape: a [1, ...] input and baseline, perturbation units of
about 64 per image (an 8 x 8 grid of patches) or one per token / feature, a reading map shape,
the expected features as a bool mask of that shape, and references of other classes (IG2's
counterfactual targets and GradientSHAP's distribution; none for a model without a reference
pool: only those two methods need them, and only they refuse such cases, when asked for).
Targets are the model's own prediction: an evaluation asks whether the explanation of what the
model *did* is faithful.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from attribution_core.devices import device_lock
from attribution_core.evaluation.types import (
    EvalCase,
    EvaluationInputError,
    ImageItem,
    RowItem,
    TextItem,
)
from attribution_core.metrics import patch_groups, token_groups
from attribution_core.modalities import image as image_io
from attribution_core.modalities import tabular as tab_io
from attribution_core.modalities import tabular_categorical as cat_io
from attribution_core.modalities import text as text_io
from attribution_core.models.encoded_tabular import schema_of
from attribution_core.models.inputs import (
    display_array,
    feature_names,
    image_preprocessing,
    image_tensor,
    model_rows,
    pool_raw,
    tabular_baseline_raw,
)
from attribution_core.models.spec import LoadedModel, ReferencePool

IMAGE_GRID = 8  # deletion units per image side: 64 patches whatever the resolution
DEFAULT_REFERENCES = 8
# The spec's baseline names -> modalities.image.make_baseline's kinds.
IMAGE_BASELINE_KINDS = {"uniform_noise": "noise", "dataset_mean": "mean"}


@dataclass(frozen=True)
class CaseBuild:
    """The cases that could be built, and one sentence per item that could not."""

    cases: tuple[EvalCase, ...]
    skipped: tuple[str, ...] = ()


def bundled_cases(loaded: LoadedModel, n_cases: int = 50, *, baseline: str | None = None,
                  seed: int = 0, n_references: int = DEFAULT_REFERENCES,
                  removal: str | None = None) -> CaseBuild:
    """``n_cases`` held-out cases from the model's reference pool, classes taken in turn.

    Shapes cases carry their object masks and planted-cue sentences their decisive words as the
    expected features; digits and the tabular sets carry none. ``removal`` (a baseline kind)
    is what the deletion / insertion curves put in place of removed units, when it should
    differ from the attribution baseline (see :func:`with_removal`).
    """
    if removal is not None and removal != baseline:
        return with_removal(
            bundled_cases(loaded, n_cases, baseline=baseline, seed=seed,
                          n_references=n_references),
            bundled_cases(loaded, n_cases, baseline=removal, seed=seed, n_references=1))
    if loaded.spec.reference_pool is None:
        raise EvaluationInputError(f"{loaded.spec.title} has no bundled evaluation cases; "
                                   "upload cases instead.")
    if not isinstance(n_cases, int) or n_cases < 1:
        raise EvaluationInputError(f"The number of cases must be a positive whole number, "
                                   f"got {n_cases!r}.")
    pool = loaded.spec.reference_pool()
    chosen = _round_robin(pool.labels, n_cases, loaded.spec.output_kind == "regression")
    modality = loaded.spec.modality
    if modality == "image":
        masks = pool.extras.get("masks")
        return _image_tensor_cases(
            loaded, [(f"held-out {i}", pool.inputs[i:i + 1],
                      None if masks is None else masks[i].bool(), int(pool.labels[i]))
                     for i in chosen], baseline, seed, n_references)
    if modality == "text":
        texts = pool.extras.get("texts")
        if texts is None:
            raise EvaluationInputError(f"{loaded.spec.title}'s bundled set has no sentences.")
        words = pool.extras.get("decisive_words") or [()] * len(texts)
        items = [TextItem(f"held-out {i}", str(texts[i]), tuple(words[i]), int(pool.labels[i]))
                 for i in chosen]
        return text_cases(loaded, items, baseline=baseline, seed=seed, n_references=n_references)
    raw = pool_raw(loaded, pool)
    names = feature_names(loaded)
    rows = [RowItem(f"held-out {i}", dict(zip(names, raw[i].tolist(), strict=True)),
                    (), _label_value(pool.labels[i])) for i in chosen]
    return tabular_cases(loaded, rows, baseline=baseline, seed=seed, n_references=n_references)


def _round_robin(labels: torch.Tensor, n_cases: int, regression: bool) -> list[int]:
    """Pool indices taking each class in turn (in pool order), so small sets stay balanced."""
    if regression:
        return list(range(min(n_cases, labels.shape[0])))
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels.tolist()):
        by_class.setdefault(int(label), []).append(index)
    queues = [by_class[c] for c in sorted(by_class)]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n_cases and any(depth < len(q) for q in queues):
        chosen.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return sorted(chosen[:n_cases])


def _label_value(value: torch.Tensor) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() else number


# -- images ---------------------------------------------------------------------------------------

def image_cases(loaded: LoadedModel, items: Sequence[ImageItem], *, baseline: str | None = None,
                seed: int = 0, n_references: int = DEFAULT_REFERENCES,
                removal: str | None = None) -> CaseBuild:
    """Uploaded pictures (with optional masks at the picture's size) -> cases."""
    if removal is not None and removal != baseline:
        return with_removal(
            image_cases(loaded, items, baseline=baseline, seed=seed, n_references=n_references),
            image_cases(loaded, items, baseline=removal, seed=seed, n_references=1))
    prepared: list[tuple[str, torch.Tensor, torch.Tensor | None, int | None]] = []
    skipped: list[str] = []
    for item in items:
        try:
            tensor = image_tensor(loaded, item.image)
        except (ValueError, OSError) as error:
            skipped.append(f"{item.name}: the model cannot read this picture ({error}).")
            continue
        mask = None
        if item.mask is not None:
            height, width = tensor.shape[-2:]
            resized = Image.fromarray(np.asarray(item.mask, dtype=np.uint8) * 255).resize(
                (int(width), int(height)), Image.Resampling.NEAREST)
            mask = torch.from_numpy(np.asarray(resized) > 127)
            if not bool(mask.any()):
                skipped.append(f"{item.name}: its mask is empty at the model's resolution "
                               f"({width} x {height}); the case is kept without a mask.")
                mask = None
        prepared.append((item.name, tensor, mask, item.label))
    build = _image_tensor_cases(loaded, prepared, baseline, seed, n_references)
    return CaseBuild(build.cases, tuple(skipped) + build.skipped)


def _image_tensor_cases(loaded: LoadedModel,
                        prepared: Sequence[tuple[str, torch.Tensor, torch.Tensor | None,
                                                 int | None]],
                        baseline: str | None, seed: int, n_references: int) -> CaseBuild:
    if not prepared:
        return CaseBuild((), ())
    example = prepared[0][1]
    prep = image_preprocessing(loaded, example)
    kind = baseline or loaded.spec.default_baseline
    kind = IMAGE_BASELINE_KINDS.get(kind, kind)
    pool = loaded.spec.reference_pool() if loaded.spec.reference_pool is not None else None
    dataset_mean = None
    if kind == "mean":
        known = loaded.extras.get("dataset_mean")
        dataset_mean = known if isinstance(known, torch.Tensor) else (
            None if pool is None else pool.inputs.float().mean(dim=0, keepdim=True))
    height, width = (int(v) for v in example.shape[-2:])
    units = patch_groups(height, width, max(1, math.ceil(max(height, width) / IMAGE_GRID)))
    inputs = torch.cat([p[1] for p in prepared])
    predicted = _predictions(loaded, inputs, {})
    cases = []
    for (name, tensor, mask, label), target in zip(prepared, predicted, strict=True):
        base = image_io.make_baseline(kind, tensor, prep, seed=seed,
                                      dataset_mean=dataset_mean).float()
        refs = _class_references(pool, target, n_references, seed, like=tensor)
        display = display_array(loaded, tensor[0], prep)
        cases.append(EvalCase(
            case_id=name, inputs=tensor, baseline=base, target=target, references=refs,
            units=units, reading_shape=(height, width), expected=mask, label=label,
            label_name=_class_name(loaded, label), display=display))
    return CaseBuild(tuple(cases), ())


def _class_references(pool: ReferencePool | None, target: int, k: int, seed: int,
                      like: torch.Tensor) -> torch.Tensor:
    """Up to ``k`` pool samples of other classes than ``target`` (never ``like`` itself); none
    [0, ...] without a pool or without another class: only the methods that need references
    (IG2, GradientSHAP) refuse such cases, when they are asked for (``runner``)."""
    if pool is None:
        return no_references(like)
    candidates = torch.nonzero(pool.labels.long() != target).flatten()
    same = (pool.inputs.reshape(pool.inputs.shape[0], -1)
            == like.reshape(1, -1).to(pool.inputs)).all(dim=1)
    candidates = candidates[~same[candidates]]
    if candidates.numel() == 0:
        return no_references(like)
    generator = torch.Generator().manual_seed(seed + target)
    order = torch.randperm(candidates.numel(), generator=generator)[:k]
    return pool.inputs.index_select(0, candidates[order].sort().values).float()


def no_references(like: torch.Tensor) -> torch.Tensor:
    """An empty reference set [0, ...] for one input ``like`` [1, ...]."""
    return like.new_zeros((0, *like.shape[1:])).float()


def _predictions(loaded: LoadedModel, inputs: torch.Tensor,
                 kwargs: dict[str, torch.Tensor]) -> list[int]:
    with device_lock(loaded.device), torch.no_grad():
        outputs = loaded.forward(inputs.to(loaded.device),
                                 **{k: v.to(loaded.device) for k, v in kwargs.items()})
    if loaded.spec.output_kind == "regression":
        return [0] * inputs.shape[0]
    return [int(v) for v in outputs.argmax(dim=-1).tolist()]


def _class_name(loaded: LoadedModel, label: int | float | None) -> str | None:
    names = list(loaded.spec.class_names)
    if isinstance(label, int) and 0 <= label < len(names):
        return str(names[label])
    return None if label is None else str(label)


# -- text -----------------------------------------------------------------------------------------

def text_cases(loaded: LoadedModel, items: Sequence[TextItem], *, baseline: str | None = None,
               seed: int = 0, n_references: int = DEFAULT_REFERENCES,
               removal: str | None = None) -> CaseBuild:
    """Sentences -> cases over token embeddings; expected words mark all their tokens."""
    if removal is not None and removal != baseline:
        return with_removal(
            text_cases(loaded, items, baseline=baseline, seed=seed, n_references=n_references),
            text_cases(loaded, items, baseline=removal, seed=seed, n_references=1))
    if loaded.tokenizer is None or loaded.embed is None:
        raise EvaluationInputError(f"{loaded.spec.title} is not a text model with a tokenizer.")
    kind = baseline or loaded.spec.default_baseline
    limit = text_io.max_length_of(loaded.tokenizer, loaded.extras.get("max_length"))
    ref_texts, ref_labels = _text_pool(loaded)
    cases: list[EvalCase] = []
    skipped: list[str] = []
    for item in items:
        try:
            encoded = text_io.encode_text(loaded.tokenizer, item.text, limit, loaded.preprocess)
        except text_io.TextInputError as error:
            skipped.append(f"{item.name}: {error}")
            continue
        mask = encoded.attention_mask
        with torch.no_grad():
            inputs = loaded.embed(encoded.input_ids.to(loaded.device)).detach().cpu().float()
        base = text_io.text_baseline(kind, encoded, loaded.tokenizer, _embed_cpu(loaded),
                                     inputs).float()
        target = _predictions(loaded, inputs, {"attention_mask": mask})[0]
        words = text_io.group_words(encoded.tokens, encoded.special)
        expected = None
        if item.expected_words:
            wanted = {w.strip().lower() for w in item.expected_words if w.strip()}
            flags = torch.zeros(encoded.length, dtype=torch.bool)
            for word in words:
                if not word.special and word.text.strip().lower() in wanted:
                    flags[list(word.token_indices)] = True
            if bool(flags.any()):
                expected = flags
            else:
                skipped.append(f"{item.name}: none of the expected words "
                               f"({', '.join(item.expected_words)}) occurs in the text; the "
                               "case is kept without expectations.")
        others = [t for t, label in zip(ref_texts, ref_labels, strict=True) if label != target
                  and t != item.text]
        if others:
            generator = torch.Generator().manual_seed(seed + target)
            picks = torch.randperm(len(others), generator=generator)[:n_references].sort().values
            ids, ref_mask = text_io.encode_to_length(
                loaded.tokenizer, [others[int(i)] for i in picks], encoded.length)
            with torch.no_grad():
                refs = loaded.embed(ids.to(loaded.device)).detach().cpu().float()
        else:  # only IG2 and GradientSHAP need references; they say so when asked for
            refs, ref_mask = no_references(inputs), mask.new_zeros((0, encoded.length))
        cases.append(EvalCase(
            case_id=item.name, inputs=inputs, baseline=base, target=target, references=refs,
            units=token_groups(encoded.length), reading_shape=(encoded.length,),
            expected=expected, forward_kwargs={"attention_mask": mask},
            reference_kwargs={"attention_mask": ref_mask}, unit_names=encoded.tokens,
            label=item.label, label_name=_class_name(loaded, item.label),
            display=encoded.tokens, text=item.text))
    return CaseBuild(tuple(cases), tuple(skipped))


def _embed_cpu(loaded: LoadedModel) -> Callable[[torch.Tensor], torch.Tensor]:
    def embed(ids: torch.Tensor) -> torch.Tensor:
        return loaded.embed(ids.to(loaded.device)).detach().cpu()  # type: ignore[misc]
    return embed


def _text_pool(loaded: LoadedModel) -> tuple[list[str], list[int]]:
    """Reference sentences and their classes (the pool's labels, else the model's own)."""
    if loaded.spec.reference_pool is not None:
        pool = loaded.spec.reference_pool()
        texts = pool.extras.get("texts")
        if texts is not None:
            return [str(t) for t in texts], [int(v) for v in pool.labels.tolist()]
    if loaded.spec.samples is None:
        return [], []
    texts = [str(s.value) for s in loaded.spec.samples()]
    labels = []
    limit = text_io.max_length_of(loaded.tokenizer, loaded.extras.get("max_length"))
    for text in texts:
        encoded = text_io.encode_text(loaded.tokenizer, text, limit, loaded.preprocess)
        with torch.no_grad():
            embedded = loaded.embed(encoded.input_ids.to(loaded.device))  # type: ignore[misc]
        labels.append(_predictions(loaded, embedded.cpu(),
                                   {"attention_mask": encoded.attention_mask})[0])
    return texts, labels


# -- tabular --------------------------------------------------------------------------------------

def tabular_cases(loaded: LoadedModel, items: Sequence[RowItem], *, baseline: str | None = None,
                  seed: int = 0, n_references: int = DEFAULT_REFERENCES,
                  removal: str | None = None) -> CaseBuild:
    """Raw rows -> cases; regression references are the rows with the most distant targets."""
    if removal is not None and removal != baseline:
        return with_removal(
            tabular_cases(loaded, items, baseline=baseline, seed=seed,
                          n_references=n_references),
            tabular_cases(loaded, items, baseline=removal, seed=seed, n_references=1))
    names = feature_names(loaded)
    schema = schema_of(loaded)
    # Encoded models: each encoded slot's unit is its original column (metrics ``groups``),
    # so curves remove a whole column and the reading map sums a column's slots.
    units = None if schema is None else schema.group_tensor()
    kind = baseline or loaded.spec.default_baseline
    base_raw = tabular_baseline_raw(loaded, kind)
    base = model_rows(loaded, base_raw)
    pool = loaded.spec.reference_pool() if loaded.spec.reference_pool is not None else None
    regression = loaded.spec.output_kind == "regression"
    cases: list[EvalCase] = []
    skipped: list[str] = []
    for item in items:
        unknown = sorted(set(item.values) - set(names))
        missing = [n for n in names if n not in item.values]
        if unknown or missing:
            skipped.append(f"{item.name}: columns do not match the model (missing: "
                           f"{', '.join(missing) or 'none'}; unknown: "
                           f"{', '.join(unknown) or 'none'}).")
            continue
        raw = np.array([float(item.values[n]) for n in names], dtype=np.float64)
        problem = _row_problem(schema, raw)
        if problem is not None:
            skipped.append(f"{item.name}: {problem}.")
            continue
        inputs = model_rows(loaded, raw)
        target = _predictions(loaded, inputs, {})[0]
        if regression and pool is None:
            refs = no_references(inputs)
        elif regression:
            with device_lock(loaded.device), torch.no_grad():
                value = float(loaded.forward(inputs.to(loaded.device))[0, 0])
            picks = tab_io.distant_target_indices(pool.labels, value, k=n_references, seed=seed)
            refs = pool.inputs.index_select(0, torch.as_tensor(picks)).float()
        else:
            refs = _class_references(pool, target, n_references, seed, like=inputs)
        expected = None
        if item.expected_features:
            unknown_expected = sorted(set(item.expected_features) - set(names))
            if unknown_expected:
                raise EvaluationInputError(
                    f"{item.name}: expected feature(s) {', '.join(unknown_expected)} are not "
                    f"features of {loaded.spec.title}; valid names: {', '.join(names)}.")
            expected = torch.tensor([n in item.expected_features for n in names])
        label = item.label
        cases.append(EvalCase(
            case_id=item.name, inputs=inputs, baseline=base.clone(), target=target,
            references=refs, units=units, reading_shape=(len(names),), expected=expected,
            unit_names=names, label=int(label) if isinstance(label, int) else None,
            label_name=_class_name(loaded, label), display=raw))
    return CaseBuild(tuple(cases), tuple(skipped))


def _row_problem(schema: cat_io.TabularSchema | None, raw: np.ndarray) -> str | None:
    if schema is not None:  # missing cells allowed where the pipeline imputes them
        return cat_io.row_problem(schema, raw)
    return None if np.isfinite(raw).all() else "a value is missing or not a number"


def with_removal(build: CaseBuild, removal_build: CaseBuild) -> CaseBuild:
    """The cases of ``build`` with the baselines of ``removal_build`` (same items built with
    another baseline kind) as what the curves put in place of removed units.

    Deletion and insertion replace units by the attribution baseline by default, which favours
    methods that integrate from that same baseline (IG); a removal value that is no method's
    baseline (e.g. a blurred image) compares IG and IG2 on neutral ground.
    """
    by_id = {case.case_id: case.baseline for case in removal_build.cases}
    cases = tuple(dataclasses.replace(case, removal=by_id[case.case_id])
                  for case in build.cases if case.case_id in by_id)
    return CaseBuild(cases, build.skipped)


def expected_area_share(cases: Sequence[EvalCase]) -> float:
    """Mean share of the reading map that is expected (what a random map would put there)."""
    shares = [float(c.expected.double().mean()) for c in cases if c.expected is not None]
    return float(np.mean(shares)) if shares else math.nan
