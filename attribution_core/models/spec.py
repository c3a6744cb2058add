"""The ModelSpec contract: everything the core and the dashboard need to explain one model.

A spec is cheap to build (nothing is loaded until ``load()``), so the registry can list models
and their status without touching weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

Modality = Literal["image", "text", "tabular"]
OutputKind = Literal["classification", "regression"]
ModelSource = Literal["builtin", "torchvision", "huggingface", "upload", "plugin"]


class ModelLoadError(ValueError):
    """A model could not be loaded; the message says what is wrong in words a user can act on."""


@dataclass(frozen=True)
class Sample:
    """A bundled example input in raw form (what a user would upload or type).

    ``value`` is a ``PIL.Image.Image`` for images, a ``str`` for text and a ``dict`` of raw
    feature values (feature name -> float) for tabular rows. ``extras`` carries per-sample
    ground truth where known (e.g. ``mask`` for the shapes images, ``decisive_words`` for the
    planted-cue sentences).
    """

    name: str
    value: Any
    label: int | float | None = None
    label_name: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferencePool:
    """Labelled samples in model-input space (for IG2 references and dataset baselines)."""

    inputs: torch.Tensor
    labels: torch.Tensor
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelStatus:
    ready: bool
    message: str


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to explain: ``forward(inputs, **kwargs) -> [B, C]`` on model-input tensors.

    For text, ``forward`` takes token embeddings (``embed(input_ids)`` makes them) plus an
    ``attention_mask`` keyword; for images and tabular rows it takes the preprocessed tensor.
    Regression models return ``[B, 1]``.

    ``preprocess`` turns raw input into the model tensor: ``PIL.Image -> [1, C, H, W]`` for
    images, a feature row (sequence, array or ``{name: value}``) ``-> [1, F]`` for tabular
    models, ``str -> {"input_ids": [1, L], "attention_mask": [1, L]}`` for text.
    ``postprocess`` goes back: model tensor ``[C, H, W]`` or ``[1, C, H, W]`` -> ``H x W x 3``
    uint8 array for images, standardised ``[F]``/``[B, F]`` -> raw feature values (numpy) for
    tabular models; ``None`` for text. The tokenizer follows the Hugging Face interface
    (``__call__``, ``convert_ids_to_tokens``, ``pad_token_id``, ``unk_token_id``,
    ``mask_token_id``, ``all_special_ids``). ``extras`` holds per-model facts the dashboard
    needs (feature names, units, raw means/medians, label descriptions, ...).
    """

    spec: ModelSpec
    module: nn.Module
    forward: Callable[..., torch.Tensor]
    weights_hash: str
    device: torch.device
    embed: Callable[[torch.Tensor], torch.Tensor] | None = None
    tokenizer: Any = None
    preprocess: Callable[..., Any] | None = None
    postprocess: Callable[..., Any] | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    def representation(self) -> nn.Module | None:
        """The module whose *input* is the default IG2 representation (None if unnamed)."""
        if self.spec.representation_module is None:
            return None
        return dict(self.module.named_modules()).get(self.spec.representation_module)

    def ig2_representation(self) -> str | None:
        """IG2's ``representation`` argument for the spec's layer: ``"<layer>:input"``, which
        ``ig2`` hooks by name when ``forward`` is the module itself; None (IG2's default, the
        last Linear's input) when there is no layer or the forward is a wrapper."""
        layer = self.spec.representation_module
        return f"{layer}:input" if layer and isinstance(self.forward, nn.Module) else None


@dataclass(frozen=True)
class ModelSpec:
    """Name, modality, loader and every default the dashboard offers for one model.

    ``representation_module`` names a module in ``LoadedModel.module.named_modules()`` whose
    input (taken with a forward pre-hook) is the default IG2 representation, usually the final
    linear classifier. ``input_box`` is the valid range of the model-input tensor (for IG2
    clipping), ``None`` where unbounded (text embeddings). ``ig2_step_size`` is in model-input
    units; for the built-in models it is about 1/100 of the median L2 distance between held-out
    samples of different classes, so about 100 GradPath steps cover the way to a reference.
    ``samples`` lists the bundled example inputs. ``weights_sha256`` is the sha256 of the
    weights file (for an upload: of the whole upload, config included; ``identity.upload_digest``),
    the content hash the result cache uses.
    """

    name: str
    title: str
    modality: Modality
    output_kind: OutputKind
    class_names: Sequence[str]
    loader: Callable[[torch.device], LoadedModel]
    description: str = ""
    weights_path: Path | None = None
    weights_sha256: str | None = None
    default_baseline: str = "zeros"
    baselines: Sequence[str] = ()
    representation_module: str | None = None
    input_box: tuple[float, float] | None = None
    ig2_step_size: float = 0.01
    reference_pool: Callable[[], ReferencePool] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    status: Callable[[], ModelStatus] = lambda: ModelStatus(True, "ready")
    source: ModelSource = "builtin"
    samples: Callable[[], Sequence[Sample]] | None = None
