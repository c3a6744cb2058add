"""The image page's Hugging Face source: a tiny ViT built from a config and saved to a folder
the operator shares, loaded with its image processor and explained; other sources refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from attribution_core.models.hf_images import hugging_face_image_spec
from attribution_core.models.sources import refusal_message
from tests.app import image_files as files
from tests.app.conftest import open_app

pytestmark = pytest.mark.app
LABELS = {0: "apple", 1: "pear", 2: "plum"}


@pytest.fixture
def shared_vit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=16,
                       num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    torch.manual_seed(0)
    folder = tmp_path / "models" / "tiny-vit"
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    monkeypatch.setenv("IG_DASHBOARD_MODEL_DIRS", str(tmp_path / "models"))
    return "tiny-vit"


def test_tiny_vit_spec_matches_the_transformers_model(shared_vit: str) -> None:
    from transformers import ViTForImageClassification, ViTImageProcessor

    spec = hugging_face_image_spec(shared_vit)
    loaded = spec.loader(torch.device("cpu"))
    picture = files.gradient_image(64, 48)
    inputs = loaded.preprocess(picture)
    assert tuple(inputs.shape) == (1, 3, 32, 32) and float(inputs.max()) <= 1.0, \
        f"pixels in [0, 1] at the processor's size: {tuple(inputs.shape)}"
    folder = Path(os.environ["IG_DASHBOARD_MODEL_DIRS"]) / shared_vit
    model = ViTForImageClassification.from_pretrained(folder).eval()
    pixels = ViTImageProcessor.from_pretrained(folder)(images=picture, return_tensors="pt")
    expected = model(pixel_values=pixels["pixel_values"]).logits
    assert torch.allclose(loaded.forward(inputs), expected, atol=1e-4), \
        "normalisation inside the wrapper = the processor's own"
    assert tuple(spec.class_names) == ("apple", "pear", "plum"), spec.class_names
    assert spec.representation_module and spec.representation_module.endswith("classifier"), \
        f"IG2's layer is the head: {spec.representation_module}"


def test_tiny_vit_is_explained_on_the_image_page(shared_vit: str) -> None:
    at = open_app("image")
    at.radio(key="img_model_source").set_value("Your model").run()
    at.radio(key="img_own_kind").set_value("Hugging Face image classifier").run()
    at.text_input(key="img_own_hf_source").set_value("/etc").run()
    at.button(key="img_own_hf_load").click().run()
    assert [e.value for e in at.error] == [refusal_message()], "a folder outside the roots"
    at.text_input(key="img_own_hf_source").set_value(shared_vit).run()
    at.button(key="img_own_hf_load").click().run()
    assert not at.exception and not at.error, f"loads: {[e.value for e in at.error]}"
    at.file_uploader(key="img_upload").set_value(
        ("fruit.png", files.png_bytes(64, 48), "image/png")).run()
    classes = [row["class"] for frame in at.dataframe if "probability" in frame.value.columns
               for row in frame.value.to_dict("records")]
    assert {"0: apple", "1: pear", "2: plum"} == set(classes), f"id2label is used: {classes}"
    at.slider(key="img_steps").set_value(16).run()
    at.button(key="img_explain").click().run()
    assert not at.exception, f"Explain raised: {at.exception}"
    assert not at.error, f"Explain showed errors: {[e.value for e in at.error]}"
    assert any(m.label == "IG relative error" for m in at.metric), "a completeness figure"
