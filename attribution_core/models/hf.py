"""Hugging Face classifiers (sequence and image classification) from a hub id or a local folder.

Always ``trust_remote_code=False``; ``local_files_only`` unless downloads are allowed, so a hub
id resolves only from the local Hugging Face cache when offline. Any failure becomes a
:class:`ModelLoadError` that says where the files were looked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from attribution_core.fingerprints import fingerprint_state
from attribution_core.models.imaging import unit_tensor_to_display
from attribution_core.models.spec import LoadedModel, ModelLoadError, ModelSpec
from attribution_core.models.upload_checks import check_class_count, check_class_names
from attribution_core.models.wrappers import (
    HFImageClassifier,
    HFTextClassifier,
    NormalisedImageClassifier,
    last_linear_name,
)

TEXT_BASELINES = ("pad", "mask", "unk", "zero")


def _local_only(allow_download: bool | None) -> bool:
    if allow_download is not None:
        return not allow_download
    return os.environ.get("ATTRIBUTION_ALLOW_DOWNLOAD", "") != "1"


def _from_pretrained(loader: Callable[..., Any], source: str, what: str, local_only: bool,
                     display_name: str | None = None) -> Any:
    try:
        return loader(source, trust_remote_code=False, local_files_only=local_only)
    except Exception as error:
        if display_name is not None:
            # A source accepted by the source policy (sources.py): name it as the user typed
            # it, never by the server path it resolved to.
            reason = str(error).replace(source, display_name)
            raise ModelLoadError(f"Could not load the {what} from {display_name!r}: "
                                 f"{reason}") from error
        where = (f"the folder {source}" if Path(source).exists() else
                 f"the hub id {source!r}" + (" (offline: only the local Hugging Face cache "
                                              "was searched)" if local_only else ""))
        raise ModelLoadError(f"Could not load the {what} from {where}: {error}") from error


def _class_names(config: Any, n_classes: int) -> tuple[str, ...]:
    """The classes a config's id2label names, bounded like every class list the pages show
    (the count before any name is read)."""
    check_class_count(n_classes, "The model's id2label")
    labels = getattr(config, "id2label", None) or {}
    return check_class_names([labels.get(i, labels.get(str(i), f"class {i}"))
                              for i in range(n_classes)], "The model's id2label")


def _tokenize(tokenizer: Any, text: str, max_length: int) -> dict[str, torch.Tensor]:
    encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def load_hf_text_classifier(source: str, device: str | torch.device = "cpu",
                            allow_download: bool | None = None, name: str | None = None,
                            max_length: int = 256, display_name: str | None = None
                            ) -> LoadedModel:
    """``AutoModelForSequenceClassification`` + ``AutoTokenizer``; forward over embeddings.

    ``display_name`` replaces ``source`` in the title and in error messages (the dashboard
    passes what the user typed, and the resolved server folder as ``source``)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local_only = _local_only(allow_download)
    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, source, "tokenizer", local_only,
                                 display_name)
    model = _from_pretrained(AutoModelForSequenceClassification.from_pretrained, source,
                             "sequence classifier", local_only, display_name)
    shown = display_name or source
    target = torch.device(device)
    module = HFTextClassifier(model.eval()).to(target)
    n_classes = int(model.config.num_labels)
    head = last_linear_name(module)
    spec = ModelSpec(
        name=name or f"hf:{shown}", title=f"Hugging Face text classifier {shown}",
        modality="text", output_kind="classification",
        class_names=_class_names(model.config, n_classes),
        loader=lambda dev: loaded, default_baseline="pad", baselines=TEXT_BASELINES,
        representation_module=head, input_box=None, ig2_step_size=0.02,
        metadata={"source": shown}, source="huggingface",
    )
    loaded = LoadedModel(
        spec=spec, module=module, forward=module,
        weights_hash=fingerprint_state(module.state_dict()), device=target,
        embed=module.embed, tokenizer=tokenizer,
        preprocess=partial(_tokenize, tokenizer, max_length=max_length),
        extras={"max_length": max_length},
    )
    return loaded


def _image_processor_preprocess(processor: Any, image: Image.Image) -> torch.Tensor:
    if not isinstance(image, Image.Image):
        raise ModelLoadError(f"Expected a PIL image, got {type(image).__name__}.")
    pixels = processor(images=image.convert("RGB"), return_tensors="pt",
                       do_normalize=False)["pixel_values"]
    return pixels.float()


def load_hf_image_classifier(source: str, device: str | torch.device = "cpu",
                             allow_download: bool | None = None, name: str | None = None,
                             display_name: str | None = None) -> LoadedModel:
    """``AutoModelForImageClassification`` + ``AutoImageProcessor``; input pixels in [0, 1].

    ``display_name``: as for :func:`load_hf_text_classifier`."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    local_only = _local_only(allow_download)
    processor = _from_pretrained(AutoImageProcessor.from_pretrained, source, "image processor",
                                 local_only, display_name)
    model = _from_pretrained(AutoModelForImageClassification.from_pretrained, source,
                             "image classifier", local_only, display_name)
    shown = display_name or source
    mean = getattr(processor, "image_mean", None) or (0.5, 0.5, 0.5)
    std = getattr(processor, "image_std", None) or (0.5, 0.5, 0.5)
    if not getattr(processor, "do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    target = torch.device(device)
    module = NormalisedImageClassifier(HFImageClassifier(model.eval()), mean, std).to(target)
    n_classes = int(model.config.num_labels)
    head = last_linear_name(module)
    spec = ModelSpec(
        name=name or f"hf:{shown}", title=f"Hugging Face image classifier {shown}",
        modality="image", output_kind="classification",
        class_names=_class_names(model.config, n_classes), loader=lambda dev: loaded,
        default_baseline="black", baselines=("black", "white", "blurred", "uniform_noise"),
        representation_module=head, input_box=(0.0, 1.0), ig2_step_size=0.5,
        metadata={"source": shown}, source="huggingface",
    )
    loaded = LoadedModel(
        spec=spec, module=module, forward=module,
        weights_hash=fingerprint_state(module.state_dict()), device=target,
        preprocess=partial(_image_processor_preprocess, processor),
        postprocess=unit_tensor_to_display,
        extras={"processor": processor, "mean": tuple(mean), "std": tuple(std)},
    )
    return loaded
