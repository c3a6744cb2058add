"""References for a model that came without reference data: the uploaded cases themselves.

IG2 and GradientSHAP need inputs of other classes. A built-in model has its held-out pool; a
model a user uploaded without reference data has none, so an audit of it on a set of uploaded
cases draws its references from those cases, labelled by the model's own predictions (a case is
never its own reference: the case builders exclude it). Nothing here changes the model: the
pool goes on a copy of its spec, for this one audit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from attribution_core.devices import device_lock
from attribution_core.evaluation.types import EvaluationInputError, ImageItem, RowItem, TextItem
from attribution_core.models.inputs import feature_names, image_tensor, model_rows
from attribution_core.models.spec import LoadedModel, ModelSpec, ReferencePool

Item = ImageItem | TextItem | RowItem


def _labels(loaded: LoadedModel, inputs: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
    with device_lock(loaded.device), torch.no_grad():
        out = loaded.forward(inputs.to(loaded.device),
                             **{k: v.to(loaded.device) for k, v in kwargs.items()})
    out = out.detach().cpu()
    if loaded.spec.output_kind == "regression":
        return out[:, 0].float()
    return out.argmax(dim=-1).long()


def pool_from_cases(loaded: LoadedModel, items: Sequence[Item]) -> ReferencePool:
    """The items as a reference pool in the model's input space, labelled by the model."""
    modality = loaded.spec.modality
    if modality == "text":
        from attribution_core.models.builtin_text import _text_pool

        texts = [item.text for item in items if isinstance(item, TextItem)]
        if not texts:
            raise EvaluationInputError("No text to draw references from.")
        batch = loaded.tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
        with device_lock(loaded.device), torch.no_grad():
            embedded = loaded.embed(batch["input_ids"].to(loaded.device))  # type: ignore[misc]
        labels = _labels(loaded, embedded, attention_mask=batch["attention_mask"])
        return _text_pool(loaded, texts, [int(v) for v in labels.tolist()])
    if modality == "image":
        tensors = []
        for item in items:
            if isinstance(item, ImageItem):
                try:
                    tensors.append(image_tensor(loaded, item.image))
                except (ValueError, OSError):
                    continue  # the case builder names the pictures the model cannot read
        if not tensors:
            raise EvaluationInputError("No picture the model can read to draw references from.")
        inputs = torch.cat(tensors)
        return ReferencePool(inputs, _labels(loaded, inputs), {"split": "uploaded cases"})
    names = feature_names(loaded)
    raws = []
    for item in items:
        if isinstance(item, RowItem) and all(n in item.values for n in names):
            raw = np.array([float(item.values[n]) for n in names], dtype=np.float64)
            if np.isfinite(raw).all():
                raws.append(raw)
    if not raws:
        raise EvaluationInputError("No complete row to draw references from.")
    inputs = torch.cat([model_rows(loaded, raw) for raw in raws])
    return ReferencePool(inputs, _labels(loaded, inputs),
                         {"split": "uploaded cases", "raw": np.stack(raws)})


def has_reference_data(spec: ModelSpec) -> bool:
    """Whether ``spec``'s reference pool can be read (a label set a user typed has a pool
    factory but no labelled sentences of its own)."""
    if spec.reference_pool is None:
        return False
    try:
        spec.reference_pool()
    except Exception:
        return False
    return True


def with_case_pool(loaded: LoadedModel, items: Sequence[Item]) -> LoadedModel:
    """``loaded`` unchanged when it has reference data (or, for text, bundled sentences);
    else the same model whose spec draws references from ``items``."""
    spec = loaded.spec
    if has_reference_data(spec) or (spec.modality == "text" and spec.samples is not None
                                    and len(spec.samples()) > 0):
        return loaded
    pool = pool_from_cases(loaded, items)
    return dataclasses.replace(loaded, spec=dataclasses.replace(spec, reference_pool=lambda: pool))
