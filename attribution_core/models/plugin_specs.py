"""A full :class:`ModelSpec` from a plain ``nn.Module`` (plugins and uploads share this).

Per modality the model input is what the built-in models use, so every page, the evaluation
and the command line explain a user's model exactly as they explain a built-in one:

- image: pixels in [0, 1], ``[B, C, H, W]``; ``mean``/``std`` (when given) are applied inside a
  wrapper, so black is zeros and IG2's box is [0, 1];
- tabular: ``[B, F]`` in ``feature_names`` order; with ``mean``/``std`` the row is standardised
  first, without them ``preprocess`` only orders a ``{feature: value}`` row into a tensor;
- text: ``forward(inputs_embeds, attention_mask)`` with the tokenizer's ids embedded by
  ``embedding_module``; a ``transformers`` sequence classifier is wrapped as it is.

``reference_data`` (inputs, or ``(inputs, labels)``; labels default to the model's own
predictions) gives the data-set baselines (mean, median, reference row), IG2's references and
the statistics of the out-of-domain notice.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache, partial
from typing import Any

import numpy as np
import torch
from torch import nn

from attribution_core.fingerprints import fingerprint_state, module_state
from attribution_core.models.builtin_image import IMAGE_BASELINES
from attribution_core.models.builtin_tabular import TABULAR_BASELINES, TabularCodec
from attribution_core.models.imaging import pil_to_unit_tensor, unit_tensor_to_display
from attribution_core.models.spec import (
    LoadedModel,
    Modality,
    ModelLoadError,
    ModelSource,
    ModelSpec,
    OutputKind,
    ReferencePool,
)
from attribution_core.models.wrappers import (
    HFTextClassifier,
    NormalisedImageClassifier,
    last_linear_name,
)

TEXT_BASELINES = ("pad", "mask", "unk", "zero")
MAX_LENGTH = 256


def _split_reference(data: Any) -> tuple[Any, Any]:
    """``data`` or ``(data, labels)`` -> (inputs, labels or None)."""
    if data is None:
        return None, None
    if isinstance(data, ReferencePool):
        return data.inputs, data.labels
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], str):
        return data[0], data[1]
    return data, None


def _module_device(module: nn.Module) -> torch.device:
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return torch.device("cpu")


def _predicted(forward: Callable[..., torch.Tensor], inputs: torch.Tensor, batch: int = 256
               ) -> torch.Tensor:
    """The model's own classes for reference inputs given without labels."""
    outputs = []
    with torch.no_grad():
        for start in range(0, inputs.shape[0], batch):
            outputs.append(forward(inputs[start:start + batch]).detach().cpu())
    return torch.cat(outputs).argmax(dim=-1)


def _step_size(inputs: torch.Tensor | None, fallback: float) -> float:
    """About 1/100 of the median distance between reference inputs (as for the built-ins)."""
    if inputs is None or inputs.shape[0] < 2:
        return fallback
    flat = inputs[:64].reshape(min(64, inputs.shape[0]), -1).double()
    distances = torch.cdist(flat, flat)
    upper = distances[torch.triu(torch.ones_like(distances, dtype=torch.bool), diagonal=1)]
    median = float(upper.median())
    return median / 100 if median > 0 else fallback


def _placed(module: nn.Module, device: torch.device) -> nn.Module:
    """The module on ``device``: itself when it is there, else a copy (the caller's module is
    never moved away from under another device's copy)."""
    if _module_device(module) == device:
        return module
    return copy.deepcopy(module).to(device)


def build_spec(name: str, module: nn.Module, modality: Modality, *,
               class_names: Sequence[str] | None = None,
               output_kind: OutputKind = "classification", title: str | None = None,
               description: str = "", feature_names: Sequence[str] | None = None,
               feature_units: Sequence[str] | None = None, reference_data: Any = None,
               input_size: int | tuple[int, int] | None = None,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
               tokenizer: Any = None, embedding_module: str | nn.Module | None = None,
               representation_module: str | None = None, source: ModelSource = "plugin",
               weights_sha256: str | None = None,
               metadata: Mapping[str, Any] | None = None,
               preprocess: Callable[..., Any] | None = None,
               max_length: int | None = None) -> ModelSpec:
    """The spec of ``module`` (see the module docstring); raises :class:`ModelLoadError` with a
    reason a user can act on when an argument does not fit the modality. ``max_length``: the
    longest token sequence a text model takes (default ``MAX_LENGTH``)."""
    _check_kinds(name, module, modality, output_kind)
    module = module.eval()
    builder = {"image": _image_parts, "tabular": _tabular_parts, "text": _text_parts}[modality]
    parts = builder(name, module, reference_data=reference_data, input_size=input_size,
                    mean=mean, std=std, feature_names=feature_names,
                    feature_units=feature_units, tokenizer=tokenizer,
                    embedding_module=embedding_module, output_kind=output_kind,
                    max_length=max_length or MAX_LENGTH)
    names = tuple(str(c) for c in class_names) if class_names is not None else \
        parts.pop("class_names", None) or (("prediction",) if output_kind == "regression"
                                           else ())
    wrapped: nn.Module = parts.pop("module")
    if preprocess is not None:  # e.g. torchvision's resize + centre crop for uploads
        parts["preprocess"] = preprocess
    representation = representation_module or last_linear_name(module)
    if representation and parts.pop("prefix", ""):
        representation = f"model.{representation}"
    spec_holder: list[ModelSpec] = []
    loader = _loader(spec_holder, wrapped, parts, weights_sha256, tokenizer)
    spec = ModelSpec(
        name=name, title=title or name, modality=modality, output_kind=output_kind,
        class_names=names, loader=loader, description=description,
        weights_sha256=weights_sha256, default_baseline=parts["default_baseline"],
        baselines=parts["baselines"], representation_module=representation,
        input_box=parts.get("input_box"), ig2_step_size=parts["step_size"],
        reference_pool=parts.get("pool"), metadata=dict(metadata or {}), source=source,
    )
    spec_holder.append(spec)
    return spec


def _check_kinds(name: str, module: Any, modality: str, output_kind: str) -> None:
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{name}: module must be a torch.nn.Module, got "
                             f"{type(module).__name__}.")
    if modality not in ("image", "text", "tabular"):
        raise ModelLoadError(f"{name}: modality must be 'image', 'text' or 'tabular', "
                             f"got {modality!r}.")
    if output_kind not in ("classification", "regression"):
        raise ModelLoadError(f"{name}: output_kind must be 'classification' or 'regression'.")


def _loader(spec_holder: list[ModelSpec], wrapped: nn.Module, parts: dict[str, Any],
            weights_sha256: str | None, tokenizer: Any) -> Callable[[torch.device], LoadedModel]:
    """The spec's loader: ``wrapped`` placed on a device (the spec itself is filled in after)."""
    def loader(device: torch.device) -> LoadedModel:
        placed = _placed(wrapped, device)
        extras = dict(parts["extras"])
        embed = parts.get("embed")
        if embed is not None and placed is not wrapped:
            embed = parts["embed_for"](placed)
        return LoadedModel(
            spec=spec_holder[0], module=placed, forward=placed,
            weights_hash=weights_sha256 or fingerprint_state(module_state(placed)),
            device=device, embed=embed, tokenizer=tokenizer,
            preprocess=parts["preprocess"], postprocess=parts.get("postprocess"),
            extras=extras)
    return loader


def _image_parts(name: str, module: nn.Module, *, reference_data: Any,
                 input_size: int | tuple[int, int] | None, mean: Sequence[float] | None,
                 std: Sequence[float] | None, **_: Any) -> dict[str, Any]:
    raw_inputs, labels = _split_reference(reference_data)
    inputs = None if raw_inputs is None else torch.as_tensor(
        np.asarray(raw_inputs), dtype=torch.float32)
    if inputs is not None and inputs.dim() != 4:
        raise ModelLoadError(f"{name}: image reference_data must be [N, C, H, W] pixels in "
                             f"[0, 1], got shape {tuple(inputs.shape)}.")
    if input_size is None and inputs is not None:
        input_size = (int(inputs.shape[2]), int(inputs.shape[3]))
    if input_size is None:
        raise ModelLoadError(f"{name}: an image model needs input_size (or reference_data).")
    size = (input_size, input_size) if isinstance(input_size, int) else \
        (int(input_size[0]), int(input_size[1]))
    channels = int(inputs.shape[1]) if inputs is not None else len(mean) if mean else 3
    wrapped: nn.Module = module
    prefix = False
    if mean is not None or std is not None:
        if mean is None or std is None or len(mean) != len(std):
            raise ModelLoadError(f"{name}: give mean and std together, one value per channel.")
        wrapped, prefix = NormalisedImageClassifier(module, mean, std).eval(), True
    parts: dict[str, Any] = {
        "module": wrapped, "prefix": prefix, "default_baseline": "black",
        "baselines": IMAGE_BASELINES if inputs is not None else IMAGE_BASELINES[:-1],
        "input_box": (0.0, 1.0), "step_size": _step_size(inputs, 0.002 * (
            channels * size[0] * size[1]) ** 0.5),
        "preprocess": partial(pil_to_unit_tensor, size=size, channels=channels),
        "postprocess": unit_tensor_to_display,
        "extras": {"input_size": size, "channels": channels},
    }
    if inputs is not None:
        parts["extras"]["dataset_mean"] = inputs.mean(dim=0, keepdim=True)
        parts["pool"] = _pool_factory(wrapped, inputs, labels, {
            "split": "reference_data", "dataset_mean": inputs.mean(dim=0, keepdim=True)})
    return parts


def _pool_factory(forward: nn.Module, inputs: torch.Tensor, labels: Any,
                  extras: dict[str, Any]) -> Callable[[], ReferencePool]:
    @lru_cache(maxsize=1)
    def pool() -> ReferencePool:
        if labels is not None:
            found = torch.as_tensor(np.asarray(labels))
        else:
            found = _predicted(forward, inputs.to(_module_device(forward)))
        return ReferencePool(inputs, found, extras)

    return pool


def _tabular_parts(name: str, module: nn.Module, *, reference_data: Any,
                   feature_names: Sequence[str] | None, feature_units: Sequence[str] | None,
                   mean: Sequence[float] | None, std: Sequence[float] | None,
                   output_kind: OutputKind, **_: Any) -> dict[str, Any]:
    raw, labels = _split_reference(reference_data)
    if feature_names is None and raw is not None and hasattr(raw, "columns"):
        feature_names = [str(c) for c in raw.columns]
    if not feature_names:
        raise ModelLoadError(f"{name}: a tabular model needs feature_names.")
    names = tuple(str(n) for n in feature_names)
    width = len(names)
    for label, values in (("mean", mean), ("std", std), ("feature_units", feature_units)):
        if values is not None and len(values) != width:
            raise ModelLoadError(f"{name}: {label} has {len(values)} values for {width} "
                                 "features.")
    codec = TabularCodec(names, mean if mean is not None else np.zeros(width),
                         std if std is not None else np.ones(width))
    extras: dict[str, Any] = {
        "feature_names": names, "codec": codec,
        "units": tuple(str(u) for u in feature_units) if feature_units else ("",) * width,
        "baseline_tensors": {"zeros": codec.to_model(np.zeros(width))},
    }
    parts: dict[str, Any] = {
        "module": module, "default_baseline": "zeros", "baselines": ("zeros",),
        "step_size": 0.05, "preprocess": codec.to_model, "postprocess": codec.to_raw,
        "extras": extras,
    }
    if raw is None:
        return parts
    try:
        raw_rows = codec.raw_array(np.asarray(raw, dtype=np.float64))
    except ModelLoadError as error:
        raise ModelLoadError(f"{name}: reference_data: {error}") from error
    inputs = codec.to_model(raw_rows)
    extras.update({
        "train_mean_raw": raw_rows.mean(axis=0), "train_median_raw": np.median(raw_rows, 0),
    })
    extras["baseline_tensors"].update({"mean": codec.to_model(raw_rows.mean(axis=0)),
                                       "median": codec.to_model(np.median(raw_rows, 0))})
    if labels is not None and output_kind == "regression":
        labels = np.asarray(labels, dtype=np.float32)
    elif labels is not None:  # class numbers (a CSV reads them as floats)
        labels = np.asarray(labels, dtype=np.float64).round().astype(np.int64)
    elif labels is None and output_kind == "regression":
        with torch.no_grad():
            labels = module(inputs).detach().cpu().float()[:, 0].numpy()
    parts.update({
        "default_baseline": "mean", "baselines": TABULAR_BASELINES,
        "step_size": _step_size(inputs, 0.05),
        "pool": _pool_factory(module, inputs, labels, {"split": "reference_data",
                                                       "raw": raw_rows}),
    })
    return parts


def _text_model(name: str, module: nn.Module, embedding_module: str | nn.Module | None
                ) -> tuple[nn.Module, Callable[[nn.Module], Any], tuple[str, ...] | None]:
    """The module a text spec runs, how to find its embedding on a placed copy, and the class
    names a transformers classifier declares (None otherwise)."""
    from transformers import PreTrainedModel

    if isinstance(module, PreTrainedModel):
        def embedded(placed: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
            return placed.embed  # type: ignore[return-value]

        labels = getattr(module.config, "id2label", None) or {}
        count = int(getattr(module.config, "num_labels", len(labels)))
        return HFTextClassifier(module).eval(), embedded, tuple(
            str(labels.get(i, f"class {i}")) for i in range(count))
    if embedding_module is None:
        raise ModelLoadError(f"{name}: a text model that is not a transformers classifier "
                             "needs embedding_module (the nn.Embedding of its token ids).")
    layer = embedding_module

    def embed_for(placed: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        if isinstance(layer, str):
            found = dict(placed.named_modules()).get(layer)
            if found is None:
                raise ModelLoadError(f"{name}: no module named {layer!r} to embed with.")
            return found
        return layer

    return module, embed_for, None


def _text_reference_pool(wrapped: nn.Module, embed: Any, tokenizer: Any, texts: list[str],
                         labels: Any) -> Callable[[], ReferencePool]:
    """IG2's reference pool of a text model, built on first use (labels predicted if absent)."""
    from attribution_core.models.builtin_text import _text_pool

    @lru_cache(maxsize=1)
    def pool() -> ReferencePool:
        device = _module_device(wrapped)
        stand_in = LoadedModel(spec=None, module=wrapped, forward=wrapped,  # type: ignore
                               weights_hash="", device=device, embed=embed,
                               tokenizer=tokenizer)
        found = [int(v) for v in labels] if labels is not None else None
        if found is None:
            batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
            with torch.no_grad():
                outputs = wrapped(embed(batch["input_ids"].to(device)),
                                  attention_mask=batch["attention_mask"].to(device))
            found = outputs.argmax(dim=-1).tolist()
        return _text_pool(stand_in, texts, found)

    return pool


def _text_parts(name: str, module: nn.Module, *, reference_data: Any, tokenizer: Any,
                embedding_module: str | nn.Module | None, max_length: int = MAX_LENGTH,
                **_: Any) -> dict[str, Any]:
    if tokenizer is None:
        raise ModelLoadError(f"{name}: a text model needs its tokenizer.")
    wrapped, embed_for, class_names = _text_model(name, module, embedding_module)
    from attribution_core.models.builtin_text import _tokenize

    parts: dict[str, Any] = {
        "module": wrapped, "prefix": isinstance(wrapped, HFTextClassifier),
        "default_baseline": "pad", "baselines": TEXT_BASELINES, "input_box": None,
        "step_size": 0.05, "embed": embed_for(wrapped), "embed_for": embed_for,
        "preprocess": partial(_tokenize, tokenizer, max_length=max_length),
        "extras": {"max_length": max_length},
    }
    if class_names is not None:
        parts["class_names"] = class_names
    texts, labels = _split_reference(reference_data)
    if texts is not None:
        texts = [str(t) for t in texts]
        parts["pool"] = _text_reference_pool(wrapped, parts["embed"], tokenizer, texts, labels)
    return parts
