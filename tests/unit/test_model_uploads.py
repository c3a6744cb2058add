"""Uploaded torchvision weights: every offered architecture reads its head size from the state
dict, the spec carries the upload's digest as the cache key, class-names files parse."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save

from attribution_core.identity import upload_digest
from attribution_core.models.spec import ModelLoadError
from attribution_core.models.uploads import (
    UPLOAD_ARCHITECTURES,
    model_upload_limit_bytes,
    parse_class_names,
    torchvision_upload_spec,
)

HEAVY = {"resnet50", "mobilenet_v3_large", "convnext_tiny", "vit_b_16", "densenet121"}


@pytest.mark.parametrize("architecture", [
    pytest.param(name, marks=pytest.mark.slow) if name in HEAVY else name
    for name in UPLOAD_ARCHITECTURES])
def test_head_size_comes_from_the_weights(architecture: str) -> None:
    torch.manual_seed(0)
    network = torchvision.models.get_model(architecture, weights=None, num_classes=3).eval()
    data = save(network.state_dict())
    spec = torchvision_upload_spec(data, architecture, file_name="mine.safetensors")
    loaded = spec.loader(torch.device("cpu"))
    assert len(spec.class_names) == 3, f"{architecture}: 3 classes read from the head"
    assert loaded.weights_hash == upload_digest(data, architecture=architecture,
                                                class_names=None), "the upload's digest = key"
    assert spec.weights_sha256 == loaded.weights_hash and spec.source == "upload", spec.source
    head = dict(loaded.module.named_modules()).get(spec.representation_module or "")
    assert isinstance(head, torch.nn.Linear) and head.out_features == 3, \
        f"{architecture}: IG2's layer is the classifier head ({spec.representation_module})"
    pixels = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = network((pixels - mean) / std)
        assert torch.allclose(loaded.forward(pixels), expected, atol=1e-4), \
            f"{architecture}: the uploaded weights, ImageNet-normalised inside"


def test_class_name_files() -> None:
    assert parse_class_names(b'["cat", "dog"]', "names.json") == ("cat", "dog"), "json list"
    assert parse_class_names(b'{"1": "dog", "0": "cat"}', "id2label.json") == ("cat", "dog"), \
        "an id2label object, in key order"
    assert parse_class_names(b"cat\n\ndog\r\n", "names.txt") == ("cat", "dog"), "txt lines"
    for data, name, reason in [(b"{oops", "bad.json", "not valid JSON"),
                               (b"", "empty.txt", "no class names"),
                               (b"\xff\xfe", "binary.txt", "not UTF-8")]:
        with pytest.raises(ModelLoadError, match=reason):
            parse_class_names(data, name)


def test_the_model_upload_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert model_upload_limit_bytes() == 400 * 2**20, "a few hundred MB by default"
    monkeypatch.setenv("IG_DASHBOARD_MAX_MODEL_UPLOAD_MB", "120")
    assert model_upload_limit_bytes() == 120 * 2**20, "the operator's value"
    network = torchvision.models.get_model("resnet18", weights=None, num_classes=2)
    monkeypatch.setenv("IG_DASHBOARD_MAX_MODEL_UPLOAD_MB", "1")
    with pytest.raises(ModelLoadError, match="accepts model uploads up to 1 MB"):
        torchvision_upload_spec(save(network.state_dict()), "resnet18")
