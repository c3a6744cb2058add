"""A Hugging Face sequence classifier uploaded as a zip of its folder, ready to explain.

The zip is checked and its model files extracted by :mod:`.model_zip` into a private temporary
folder (mode 0700, one per upload), loaded from there with ``from_pretrained(local_files_only=
True, trust_remote_code=False, use_safetensors=True)``, and the folder is deleted as soon as
the model and tokenizer are in memory: nothing of a user's upload stays on the server's disk.
Configs that ask for custom code (``auto_map``) or a quantisation backend are refused before
``transformers`` reads them, and so are configs whose declared sizes exceed the limits or the
weights' headers (:mod:`.hf_checks`); a checkpoint whose classifier head is missing (a bare
encoder would get a random head) is refused after.

Before this process loads anything, the same extraction and load, plus a count of the
parameters the config describes (built on the meta device) against the weights, run once in
the sandbox (:func:`trial`, a child with a time and memory budget, :mod:`.sandbox`): what
``from_pretrained`` costs is bounded there first, and only a folder that loaded within the
budget is loaded here.

The spec is built but never registered: the dashboard keeps it in the uploading session only
(dashboard/widgets/session_models.py). Its ``weights_sha256`` (the result cache's key) covers
every file of the zip.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from attribution_core.models.hf import _class_names
from attribution_core.models.hf_checks import check_declared_config, check_parameters
from attribution_core.models.model_zip import ExtractedFolder, extract_model_zip
from attribution_core.models.plugin_specs import MAX_LENGTH, build_spec
from attribution_core.models.spec import ModelLoadError, ModelSpec

# Config keys that make transformers import code or packages the upload chose.
REFUSED_CONFIG_KEYS = {
    "auto_map": "it asks for custom model code (auto_map)",
    "quantization_config": "it asks for a quantisation backend (quantization_config)",
    "custom_pipelines": "it asks for custom pipeline code (custom_pipelines)",
}
# Models whose position ids start after the padding index (two positions fewer are usable).
_OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert", "longformer",
                               "roberta-prelayernorm", "xmod", "data2vec-text"})
PROBE_TEXT = "a short probe sentence"


def _check_configs(extracted: ExtractedFolder, file_name: str) -> str:
    """The model type, after refusing configs that would run or import chosen code."""
    for what, config in (("config.json", extracted.config),
                         ("tokenizer_config.json", extracted.tokenizer_config or {})):
        for key, reason in REFUSED_CONFIG_KEYS.items():
            if key in config:
                raise ModelLoadError(f"{file_name}: {what} is refused because {reason}; only "
                                     "models that transformers itself defines are loaded "
                                     "(trust_remote_code=False).")
    model_type = extracted.config.get("model_type")
    from transformers import CONFIG_MAPPING

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        shown = model_type[:60] if isinstance(model_type, str) else model_type
        raise ModelLoadError(f"{file_name}: config.json names the model type {shown!r}, "
                             "which this server's transformers does not define.")
    check_declared_config(extracted.config, model_type, extracted.weights, file_name)
    return model_type


def _sanitised(error: BaseException, folder: Path, file_name: str) -> str:
    """The error's text without the server's temporary path."""
    return str(error).replace(str(folder), file_name).replace(str(folder.resolve()), file_name)


def _load(folder: Path, file_name: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                  trust_remote_code=False)
    except Exception as error:
        raise ModelLoadError(f"{file_name}: the tokenizer could not be loaded "
                             f"({type(error).__name__}: {_sanitised(error, folder, file_name)})"
                             ". Zip the tokenizer files save_pretrained() wrote with the model."
                             ) from error
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False, use_safetensors=True,
            output_loading_info=True)
    except Exception as error:
        raise ModelLoadError(f"{file_name}: the sequence classifier could not be loaded "
                             f"({type(error).__name__}: {_sanitised(error, folder, file_name)})"
                             ".") from error
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        shown = ", ".join(missing[:4]) + (f", … ({len(missing) - 4} more)"
                                          if len(missing) > 4 else "")
        raise ModelLoadError(f"{file_name}: the weights lack {shown}, so transformers would "
                             "fill them with random numbers (a bare encoder without its "
                             "trained classification head?). Upload a fine-tuned "
                             "*ForSequenceClassification checkpoint.")
    return tokenizer, model


def usable_length(tokenizer: Any, config: Any, model_type: str) -> int:
    """The longest input the model can take: its positions, the tokenizer's maximum, and the
    dashboard's ceiling (``MAX_LENGTH``), whichever is smallest."""
    limits = [MAX_LENGTH]
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions - (2 if model_type in _OFFSET_POSITIONS else 0))
    declared = getattr(tokenizer, "model_max_length", None)
    if isinstance(declared, int) and 0 < declared <= 100_000:
        limits.append(declared)
    return max(2, min(limits))


def _probe(model: Any, tokenizer: Any, n_classes: int, file_name: str) -> None:
    """One forward pass over embeddings, as the explanations will call it."""
    try:
        batch = tokenizer(PROBE_TEXT, return_tensors="pt")
        with torch.no_grad():
            embeds = model.get_input_embeddings()(batch["input_ids"])
            logits = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
    except Exception as error:
        raise ModelLoadError(f"{file_name}: the model could not classify a probe sentence "
                             f"({type(error).__name__}: {error}).") from error
    if tuple(logits.shape) != (1, n_classes):
        raise ModelLoadError(f"{file_name}: the model returned logits of shape "
                             f"{tuple(logits.shape)} for one sentence, not [1, {n_classes}].")


def trial(data: bytes, options: Mapping[str, Any]) -> dict[str, Any]:
    """The sandbox job (:mod:`.sandbox`): everything :func:`text_upload_spec` does with the
    upload before it keeps the model (extract, check the configs, count the parameters the
    config describes on the meta device against the weights, load the tokenizer and the model,
    classify the probe sentence), in a child with a time and memory budget. JSON facts back."""
    file_name = str(options.get("what", "the zip"))
    with tempfile.TemporaryDirectory(prefix="ig-dashboard-model-") as name:
        folder = Path(name)
        extracted = extract_model_zip(data, folder, file_name)
        model_type = _check_configs(extracted, file_name)
        parameters = check_parameters(folder, extracted.weights, file_name)
        tokenizer, model = _load(folder, file_name)
    n_classes = int(model.config.num_labels)
    _class_names(model.config, n_classes)
    _probe(model, tokenizer, n_classes, file_name)
    return {"model_type": model_type, "classes": n_classes, "parameters": parameters}


def tried(data: bytes, file_name: str) -> dict[str, Any]:
    """The server's side of :func:`trial`: a refusal is a one-line ModelLoadError."""
    from attribution_core.models.sandbox import run_sandboxed

    options = {"what": file_name, "threads": torch.get_num_threads()}
    report = run_sandboxed("hf_text", data, options, what=file_name)
    return {**report.result, "check_seconds": report.seconds,
            "check_peak_bytes": report.peak_extra_bytes}


def text_upload_spec(data: bytes, file_name: str = "the zip", *,
                     reference_texts: Sequence[str] | None = None,
                     reference_labels: Sequence[int] | None = None) -> ModelSpec:
    """The spec of the Hugging Face sequence classifier in the zip ``data``.

    ``reference_texts`` (optional, with ``reference_labels`` or labelled by the model) give
    IG2's references, the Evaluate page's cases and the out-of-domain notice's statistics.
    """
    with tempfile.TemporaryDirectory(prefix="ig-dashboard-model-") as name:
        folder = Path(name)
        folder.chmod(0o700)  # mkdtemp's default; said here because it matters
        extracted = extract_model_zip(data, folder, file_name)
        model_type = _check_configs(extracted, file_name)  # declared sizes: cheap refusals
        checked = tried(data, file_name)  # the same load, bounded, in the sandbox first
        tokenizer, model = _load(folder, file_name)
    n_classes = int(model.config.num_labels)
    classes = _class_names(model.config, n_classes)
    _probe(model, tokenizer, n_classes, file_name)
    reference: Any = None
    if reference_texts:
        texts = [str(t) for t in reference_texts]
        if reference_labels is not None:
            labels = [int(v) for v in reference_labels]
            if len(labels) != len(texts):
                raise ModelLoadError(f"{len(labels)} labels for {len(texts)} reference texts.")
            wrong = [v for v in labels if not 0 <= v < n_classes]
            if wrong:
                raise ModelLoadError(f"The reference label {wrong[0]} is not a class of the "
                                     f"model (0 to {n_classes - 1}).")
            reference = (texts, labels)
        else:
            reference = texts
    length = usable_length(tokenizer, model.config, model_type)
    tokenizer.model_max_length = length  # every truncation (pages, pools, Evaluate) stops here
    digest = extracted.sha256
    return build_spec(
        f"upload:text:{digest[:12]}", model, "text", class_names=classes,
        title=f"Your text classifier ({file_name}, {model_type}, {n_classes} classes)",
        description=f"Uploaded Hugging Face {model_type} sequence classifier (sha256 of all "
                    f"files {digest[:12]}…); class names from its id2label."
                    + (f" {len(reference_texts)} reference texts." if reference_texts else
                       " No reference texts: IG2 draws from the bundled sentences."),
        tokenizer=tokenizer, reference_data=reference, source="upload",
        weights_sha256=digest, max_length=length,
        metadata={"file": file_name, "format": "Hugging Face folder (zip)",
                  "model_type": model_type, "files": list(extracted.files),
                  "ignored": list(extracted.ignored),
                  "check_seconds": checked["check_seconds"],
                  "check_peak_bytes": checked["check_peak_bytes"]})
