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
    """

    spec: ModelSpec
    module: nn.Module
    forward: Callable[..., torch.Tensor]
    weights_hash: str
    device: torch.device
    embed: Callable[[torch.Tensor], torch.Tensor] | None = None
    tokenizer: Any = None
    preprocess: Callable[..., Any] | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Name, modality, loader and every default the dashboard offers for one model."""

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
