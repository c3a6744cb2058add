"""The image page's "Your model": a randomly initialised torchvision resnet18 saved as
safetensors, uploaded with class names and explained; its limits and refusals; privacy."""

from __future__ import annotations

import io
from functools import lru_cache

import pytest
import torch
import torchvision
from safetensors.torch import save
from streamlit.testing.v1 import AppTest

from attribution_core.models import list_specs
from tests.app import image_files as files
from tests.app.conftest import open_app
from tests.app.helpers import metric

pytestmark = pytest.mark.app
CLASSES = b'["cat", "dog", "fox", "owl", "yak"]'


@lru_cache(maxsize=1)
def resnet18_safetensors() -> bytes:
    torch.manual_seed(0)
    network = torchvision.models.resnet18(weights=None, num_classes=5)
    return save(network.state_dict())


def load_own_model(at: AppTest, weights: tuple[str, bytes], classes: bytes | None = CLASSES
                   ) -> AppTest:
    at.radio(key="img_model_source").set_value("Your model").run()
    at.selectbox(key="img_own_architecture").set_value("resnet18")
    at.file_uploader(key="img_own_weights").set_value(
        (weights[0], weights[1], "application/octet-stream"))
    if classes is not None:
        at.file_uploader(key="img_own_classes").set_value(
            ("classes.json", classes, "application/json"))
    at.run()
    at.button(key="img_own_load").click().run()
    assert not at.exception, f"loading the upload raised: {at.exception}"
    return at


@pytest.mark.slow  # ~50 s on 2 cores: most of it is the page's cost probe timing resnet18
def test_uploaded_resnet18_is_explained_and_stays_in_its_session() -> None:
    at = load_own_model(open_app("image"), ("random_resnet18.safetensors",
                                            resnet18_safetensors()))
    assert not at.error, f"the upload loads: {[e.value for e in at.error]}"
    at.file_uploader(key="img_upload").set_value(
        ("photo.png", files.png_bytes(300, 200), "image/png")).run()
    assert not at.exception, f"preparing the photo raised: {at.exception}"
    classes = [row["class"] for frame in at.dataframe if "probability" in frame.value.columns
               for row in frame.value.to_dict("records")]
    assert {"0: cat", "4: yak"} <= set(classes), f"the class names are used: {classes}"
    at.slider(key="img_steps").set_value(8).run()
    at.button(key="img_explain").click().run()
    assert not at.exception, f"Explain raised: {at.exception}"
    assert not at.error, f"Explain showed errors: {[e.value for e in at.error]}"
    relative = metric(at, "IG relative error")
    assert relative == relative, "IG ran on the uploaded model and reports its completeness"
    assert not any(s.name.startswith("upload:") for s in list_specs()), \
        "the upload never reaches the process-wide registry"
    stranger = open_app("image")
    options = stranger.selectbox(key="sidebar_model_image").options
    assert not any("random_resnet18" in option for option in options), \
        f"the upload is not in a stranger's list: {options}"
    stranger.radio(key="img_model_source").set_value("Your model").run()
    assert not stranger.exception, f"a second session raised: {stranger.exception}"
    assert any("Load this model" in i.value for i in stranger.info), \
        "another session has no model of its own: it is asked to load one"


def test_upload_above_the_model_limit_is_refused_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_DASHBOARD_MAX_MODEL_UPLOAD_MB", "1")
    at = open_app("image")
    at.radio(key="img_model_source").set_value("Your model").run()
    data = resnet18_safetensors()
    at.file_uploader(key="img_own_weights").set_value(
        ("big.safetensors", data, "application/octet-stream")).run()
    messages = [e.value for e in at.error]
    # The box itself refuses it (and drops the bytes from the server), before any Load.
    assert messages == [f"big.safetensors is {len(data) / 2**20:.1f} MB; this box takes "
                        "files of at most 1 MB."], messages
    assert at.button(key="img_own_load").disabled, "nothing to load"


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("pickled.safetensors", "pickle", "refused"),
    ("short.safetensors", b"\x01\x02", "too short"),
    ("wrong_arch.safetensors", "mobilenet", "no 'fc.weight'"),
])
def test_bad_weights_get_a_reason_and_the_page_stays(name: str, data: bytes | str,
                                                     expected: str) -> None:
    if data == "pickle":
        buffer = io.BytesIO()
        torch.save({"fc.weight": torch.zeros(2, 2)}, buffer)
        data = buffer.getvalue()
    elif data == "mobilenet":
        data = save(torchvision.models.mobilenet_v3_small(weights=None, num_classes=3)
                    .state_dict())
    at = load_own_model(open_app("image"), (name, data), classes=None)
    messages = [e.value for e in at.error]
    assert len(messages) == 1 and expected in messages[0], f"one reason: {messages}"
    assert "Traceback" not in messages[0], "no traceback on the page"


def test_class_names_that_do_not_fit_are_refused() -> None:
    at = load_own_model(open_app("image"), ("random_resnet18.safetensors",
                                            resnet18_safetensors()), classes=b'["a", "b"]')
    messages = [e.value for e in at.error]
    assert any("lists 2 names but the weights have 5 classes" in m for m in messages), messages


def test_a_colour_photo_on_the_digits_model_gets_the_out_of_domain_notice() -> None:
    at = open_app("image")
    at.selectbox(key="sidebar_model_image").set_value("digits_cnn").run()
    notices = [w.value for w in at.warning if "unlike the data" in w.value]
    assert not notices, f"a bundled digit gets no notice: {notices}"
    at.radio(key="img_source").set_value("Upload").run()
    at.file_uploader(key="img_upload").set_value(
        ("holiday.png", files.png_bytes(320, 240), "image/png")).run()
    assert not at.exception, f"the photo raised: {at.exception}"
    notices = [w.value for w in at.warning if "unlike the data" in w.value]
    assert len(notices) == 1 and "Handwritten digits" in notices[0], \
        f"the colour photo is called out in words: {[w.value for w in at.warning]}"



def tiny_cnn_onnx() -> tuple[torch.nn.Module, bytes]:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                  torch.nn.Linear(4, 3)).eval()
    buffer = io.BytesIO()
    torch.onnx.export(network, (torch.zeros(1, 3, 32, 32),), buffer, input_names=["pixels"],
                      dynamic_axes={"pixels": {0: "batch"}}, dynamo=False)
    return network, buffer.getvalue()


def test_onnx_image_classifier_from_torch_export_is_loaded_and_explained() -> None:
    from attribution_core.models.loaders import IMAGENET_MEAN, IMAGENET_STD
    from attribution_core.models.onnx_models import onnx_image_spec

    network, data = tiny_cnn_onnx()
    spec = onnx_image_spec(data, "tiny.onnx", ["red", "green", "blue"], "imagenet")
    loaded = spec.loader(torch.device("cpu"))
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = network((pixels - mean) / std)
    assert torch.allclose(loaded.forward(pixels), expected, atol=1e-5), \
        "ONNX via onnx2torch, normalised inside the wrapper = the torch network"
    at = open_app("image")
    at.radio(key="img_model_source").set_value("Your model").run()
    at.radio(key="img_own_kind").set_value("ONNX (.onnx)").run()
    at.file_uploader(key="img_own_onnx").set_value(("tiny.onnx", data, "application/x-onnx"))
    at.radio(key="img_own_onnx_norm").set_value("imagenet")
    at.file_uploader(key="img_own_onnx_classes").set_value(
        ("classes.txt", b"red\ngreen\nblue\n", "text/plain"))
    at.run()
    at.button(key="img_own_onnx_load").click().run()
    assert not at.exception and not at.error, f"loads: {[e.value for e in at.error]}"
    at.file_uploader(key="img_upload").set_value(
        ("photo.png", files.png_bytes(64, 48), "image/png")).run()
    at.slider(key="img_steps").set_value(16).run()
    at.button(key="img_explain").click().run()
    assert not at.exception and not at.error, f"explained: {[e.value for e in at.error]}"
    classes = [row["class"] for frame in at.dataframe if "probability" in frame.value.columns
               for row in frame.value.to_dict("records")]
    assert {"0: red", "1: green", "2: blue"} == set(classes), f"class names used: {classes}"
    assert metric(at, "IG relative error") < 5.0, "IG on the converted graph adds up"
