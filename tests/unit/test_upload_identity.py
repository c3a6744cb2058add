"""An uploaded model is identified by the whole upload (weights, JSON config, class names,
normalisation, architecture), never by its weights file alone: the same weights with another
activation are another model, and the shared cache serves each its own attributions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from safetensors.torch import save

from attribution_core import ResultCache, integrated_gradients
from attribution_core.models.onnx_models import (
    onnx_image_spec,
    parse_mlp_config,
    tabular_upload_spec,
)
from attribution_core.models.uploads import torchvision_upload_spec


def _mlp_bytes() -> bytes:
    generator = torch.Generator().manual_seed(3)
    holder = torch.nn.Module()
    holder.layers = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                        torch.nn.Linear(8, 2))
    with torch.no_grad():
        for parameter in holder.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return save(holder.state_dict())


def _config(activation: str) -> dict:
    return parse_mlp_config(json.dumps({"activation": activation,
                                        "feature_names": ["a", "b", "c", "d"]}).encode())


def test_the_same_weights_with_another_activation_are_another_model(tmp_path: Path) -> None:
    data = _mlp_bytes()
    relu = tabular_upload_spec(data, "mlp.safetensors", config=_config("relu"))
    tanh = tabular_upload_spec(data, "mlp.safetensors", config=_config("tanh"))
    again = tabular_upload_spec(data, "mlp.safetensors", config=_config("relu"))
    assert relu.weights_sha256 != tanh.weights_sha256 and relu.name != tanh.name, \
        "the config is part of the upload's identity"
    assert relu.weights_sha256 == again.weights_sha256, "the same upload keeps its key"
    row = torch.tensor([[0.5, -1.0, 2.0, 0.3]])
    served = {}
    for spec in (relu, tanh):  # the dashboard's call: one shared disk cache, model_key
        loaded = spec.loader(torch.device("cpu"))
        served[spec.name] = integrated_gradients(
            loaded.forward, row, target=0, n_steps=32, cache=ResultCache(disk_dir=tmp_path),
            model_key=loaded.weights_hash)
    loaded = tanh.loader(torch.device("cpu"))
    fresh = integrated_gradients(loaded.forward, row, target=0, n_steps=32)
    assert not served[tanh.name].from_cache, "the Tanh upload misses the ReLU entry"
    torch.testing.assert_close(served[tanh.name].attributions, fresh.attributions,
                               msg="the Tanh upload gets its own attributions")


def test_every_part_of_an_image_upload_is_in_its_key() -> None:
    import torchvision

    network = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(2, 2))
    buffer = io.BytesIO()
    torch.onnx.export(network, (torch.zeros(1, 3, 16, 16),), buffer, input_names=["x"],
                      dynamo=False)
    plain = onnx_image_spec(buffer.getvalue(), "net.onnx", normalisation="none")
    imagenet = onnx_image_spec(buffer.getvalue(), "net.onnx", normalisation="imagenet")
    assert plain.weights_sha256 != imagenet.weights_sha256, \
        "ImageNet normalisation inside the wrapper is another model"
    state = save(torchvision.models.resnet18(weights=None, num_classes=2).state_dict())
    named = torchvision_upload_spec(state, "resnet18", class_names=("cat", "dog"))
    unnamed = torchvision_upload_spec(state, "resnet18")
    assert named.weights_sha256 != unnamed.weights_sha256, "class names are part of it"


def test_the_reference_rows_are_part_of_a_tabular_upload() -> None:
    import numpy as np

    data = _mlp_bytes()
    header = ("a", "b", "c", "d")
    rows = np.arange(12, dtype=float).reshape(3, 4)
    first = tabular_upload_spec(data, "mlp.safetensors", config=_config("relu"),
                                reference=(header, rows, None))
    other = tabular_upload_spec(data, "mlp.safetensors", config=_config("relu"),
                                reference=(header, rows + 1, None))
    assert first.weights_sha256 != other.weights_sha256, "other reference rows, other upload"
