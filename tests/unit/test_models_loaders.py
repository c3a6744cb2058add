"""User-model loaders through their real code paths, with weights the tests create."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save as safetensors_bytes

from attribution_core.models import ModelLoadError, clear_model_cache, get_spec, load_model
from attribution_core.models.assets import sha256_file
from attribution_core.models.loaders import (
    load_hf_image_classifier,
    load_hf_text_classifier,
    load_safetensors_upload,
    load_torchvision,
    torchvision_checkpoint,
)

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _photo(seed: int = 0, size: tuple[int, int] = (300, 260)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("ATTRIBUTION_ALLOW_DOWNLOAD", raising=False)
    return tmp_path


def test_torchvision_by_name_from_local_hub_cache(torch_home: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = torchvision_checkpoint("resnet18")
    assert path.parent == torch_home / "hub" / "checkpoints", f"unexpected hub path {path}"
    assert not get_spec("resnet18").status().ready, "no checkpoint yet: not ready"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    assert get_spec("resnet18").status().ready, "the checkpoint is in place: ready"
    loaded = load_torchvision("resnet18", "cpu", allow_download=False)
    pixels = loaded.preprocess(_photo())
    assert pixels.shape == (1, 3, 224, 224), f"preprocess shape {tuple(pixels.shape)}"
    assert float(pixels.min()) >= 0.0 and float(pixels.max()) <= 1.0, "pixels outside [0, 1]"
    with torch.no_grad():
        expected = reference((pixels - IMAGENET_MEAN) / IMAGENET_STD)
        got = loaded.forward(pixels)
    assert torch.allclose(got, expected, atol=1e-4), "wrapped model != reference on normalised"
    assert len(loaded.spec.class_names) == 1000, "ImageNet categories expected"
    head = loaded.representation()
    assert isinstance(head, torch.nn.Linear) and head.in_features == 512, "resnet18 fc head"
    shown = loaded.postprocess(pixels)
    assert shown.shape == (224, 224, 3) and shown.dtype == np.uint8, "display array"
    try:  # the registry path: by name, from the same local checkpoint, cached afterwards
        by_name = load_model("resnet18", "cpu")
        assert load_model("resnet18", "cpu") is by_name, "the registry caches the model"
        with torch.no_grad():
            assert torch.allclose(by_name.forward(pixels), expected, atol=1e-4), "registry path"
        assert by_name.weights_hash == sha256_file(path), "content hash of the checkpoint"
    finally:
        clear_model_cache()  # the random-init network must not outlive this test


def test_torchvision_missing_weights_offline_names_file_and_folder(torch_home: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        load_torchvision("resnet50", "cpu", allow_download=False)
    message = str(caught.value)
    assert "resnet50-11ad3fa6.pth" in message, f"file name missing from: {message}"
    assert str(torch_home / "hub" / "checkpoints") in message, f"folder missing: {message}"
    with pytest.raises(ModelLoadError, match="Unknown torchvision model"):
        load_torchvision("resnet1000", "cpu")


def test_torchvision_corrupt_local_checkpoint_is_a_clear_error(torch_home: Path) -> None:
    path = torchvision_checkpoint("resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="weights-only checkpoint"):
        load_torchvision("resnet18", "cpu", allow_download=False)


def _small_resnet(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None, num_classes=num_classes).eval()


def test_safetensors_upload_round_trip() -> None:
    network = _small_resnet(3)
    data = safetensors_bytes({k: v.contiguous() for k, v in network.state_dict().items()})
    loaded = load_safetensors_upload(data, "resnet18", 3, ["cat", "dog", "fox"],
                                     image_size=64)
    assert loaded.spec.class_names == ("cat", "dog", "fox"), "class names kept"
    pixels = loaded.preprocess(_photo(1))
    assert pixels.shape == (1, 3, 64, 64), f"upload preprocess shape {tuple(pixels.shape)}"
    with torch.no_grad():
        expected = network((pixels - IMAGENET_MEAN) / IMAGENET_STD)
        got = loaded.forward(pixels)
    assert torch.allclose(got, expected, atol=1e-4), "uploaded weights give other outputs"
    other = load_safetensors_upload(data[:], "resnet18", 3)
    assert other.weights_hash == loaded.weights_hash, "same bytes, same content hash"
    assert loaded.spec.representation_module == "model.fc", "head of the uploaded network"


def test_upload_refuses_pickles_before_parsing() -> None:
    network = _small_resnet(3)
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    with pytest.raises(ModelLoadError, match="zip archive"):
        load_safetensors_upload(buffer.getvalue(), "resnet18", 3)
    with pytest.raises(ModelLoadError, match="pickle"):
        load_safetensors_upload(pickle.dumps({"fc.weight": [1.0]}), "resnet18", 3)


def test_upload_mismatches_are_named() -> None:
    state = {k: v.contiguous() for k, v in _small_resnet(3).state_dict().items()}
    with pytest.raises(ModelLoadError) as caught:
        load_safetensors_upload(safetensors_bytes(state), "resnet18", 5)
    message = str(caught.value)
    assert "shape mismatches" in message and "fc.weight" in message, message
    assert "(3, 512)" in message and "(5, 512)" in message, f"shapes not shown: {message}"
    renamed = dict(state)
    renamed["extra.weight"] = renamed.pop("layer1.0.conv1.weight")
    with pytest.raises(ModelLoadError) as caught:
        load_safetensors_upload(safetensors_bytes(renamed), "resnet18", 3)
    message = str(caught.value)
    assert "missing keys (1): layer1.0.conv1.weight" in message, message
    assert "unexpected keys (1): extra.weight" in message, message


def test_upload_truncated_or_garbage_is_refused() -> None:
    data = safetensors_bytes({k: v.contiguous() for k, v in _small_resnet(3).state_dict().items()})
    with pytest.raises(ModelLoadError, match="truncated"):
        load_safetensors_upload(data[: len(data) // 2], "resnet18", 3)
    with pytest.raises(ModelLoadError, match=r"truncated|not safetensors"):
        load_safetensors_upload(data[:100], "resnet18", 3)
    with pytest.raises(ModelLoadError, match="too short"):
        load_safetensors_upload(b"abc", "resnet18", 3)
    with pytest.raises(ModelLoadError, match="Unknown torchvision architecture"):
        load_safetensors_upload(data, "not_a_net", 3)
    with pytest.raises(ModelLoadError, match="class names"):
        load_safetensors_upload(data, "resnet18", 3, ["only one"])


WORDS = ["the", "movie", "was", "good", "bad", "great", "plot", "not", "##s", "film"]


def _tiny_bert_folder(folder: Path) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab = folder / "vocab.txt"
    folder.mkdir(parents=True, exist_ok=True)
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab), do_lower_case=True)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        num_labels=3, id2label={0: "neg", 1: "neutral", 2: "pos"},
                        label2id={"neg": 0, "neutral": 1, "pos": 2})
    torch.manual_seed(2)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def test_hugging_face_text_classifier_from_folder(tmp_path: Path) -> None:
    reference = _tiny_bert_folder(tmp_path / "bert")
    loaded = load_hf_text_classifier(str(tmp_path / "bert"), "cpu", allow_download=False)
    assert loaded.spec.class_names == ("neg", "neutral", "pos"), "id2label becomes class names"
    batch = loaded.preprocess("the movie was not good")
    tokens = loaded.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    assert tokens == ["[CLS]", "the", "movie", "was", "not", "good", "[SEP]"], tokens
    with torch.no_grad():
        expected = reference(input_ids=batch["input_ids"],
                             attention_mask=batch["attention_mask"]).logits
        got = loaded.forward(loaded.embed(batch["input_ids"]),
                             attention_mask=batch["attention_mask"])
    assert torch.allclose(got, expected, atol=1e-5), "forward over embeddings != ids forward"
    assert loaded.spec.representation_module is not None, "a classifier head is found"
    assert isinstance(loaded.representation(), torch.nn.Linear), "head is a Linear"


def test_hugging_face_image_classifier_from_folder(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    folder = tmp_path / "vit"
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=2)
    torch.manual_seed(3)
    reference = ViTForImageClassification(config).eval()
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    reference.save_pretrained(folder)
    processor.save_pretrained(folder)
    loaded = load_hf_image_classifier(str(folder), "cpu", allow_download=False)
    image = _photo(2, (40, 50))
    pixels = loaded.preprocess(image)
    assert pixels.shape == (1, 3, 32, 32), f"processor output {tuple(pixels.shape)}"
    assert float(pixels.min()) >= 0.0 and float(pixels.max()) <= 1.0, "pixels outside [0, 1]"
    with torch.no_grad():
        expected = reference(pixel_values=processor(images=image,
                                                    return_tensors="pt")["pixel_values"]).logits
        got = loaded.forward(pixels)
    assert torch.allclose(got, expected, atol=1e-4), "normalisation inside the wrapper differs"


def test_hugging_face_unavailable_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="Could not load"):
        load_hf_text_classifier(str(tmp_path / "missing"), "cpu", allow_download=False)
    with pytest.raises(ModelLoadError, match="offline"):
        load_hf_text_classifier("someone/not-cached-model", "cpu", allow_download=False)
