"""Registry, built-in model assets, preprocessing round trips and the listing command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attribution_core.models import (
    ModelLoadError,
    get_spec,
    list_specs,
    load_model,
)
from attribution_core.models.assets import MODELS_DIR, read_metadata, sha256_file

BUILTIN_TRAINED = ["digits_cnn", "shapes_cnn", "cue_transformer", "breast_cancer_mlp",
                   "wine_mlp", "diabetes_mlp"]
ZERO_SHOT = ["minilm_sentiment", "minilm_topic"]
REPO = Path(__file__).resolve().parents[2]


def _trained_and_present(name: str) -> bool:
    return (MODELS_DIR / f"{name}.safetensors").is_file()


@pytest.mark.parametrize("name", BUILTIN_TRAINED)
def test_builtin_metadata_matches_weights(name: str) -> None:
    assert _trained_and_present(name), f"{name}.safetensors is missing from assets/models"
    metadata = read_metadata(name)
    weights = MODELS_DIR / f"{name}.safetensors"
    assert metadata.get("sha256") == sha256_file(weights), f"{name}.json sha256 is stale"
    assert weights.stat().st_size < 5_000_000, f"{name} weights should stay well under 5 MB"
    for key in ("data", "held_out", "date", "script", "seed", "budget"):
        assert key in metadata, f"{name}.json lacks {key!r}"


@pytest.mark.parametrize("name", ZERO_SHOT)
def test_zero_shot_metadata_matches_package_weights_and_labels(name: str) -> None:
    loaded = load_model(name, "cpu")
    metadata = read_metadata(name)
    assert loaded.weights_hash == metadata["sha256"] == get_spec(name).weights_sha256, (
        f"{name}: recorded hash differs from the package weights + label descriptions")
    assert loaded.extras["label_descriptions"] == metadata["label_descriptions"], "labels"


@pytest.mark.parametrize("name", BUILTIN_TRAINED + ZERO_SHOT)
def test_builtin_reaches_recorded_held_out_score(name: str) -> None:
    loaded = load_model(name, "cpu")
    pool = get_spec(name).reference_pool()
    recorded = read_metadata(name)["held_out"]
    kwargs = {}
    inputs = pool.inputs
    if loaded.spec.modality == "text":  # the pool holds token embeddings plus their masks
        assert torch.equal(inputs, loaded.embed(pool.extras["input_ids"])), "pool embeddings"
        kwargs = {"attention_mask": pool.extras["attention_mask"]}
    with torch.no_grad():
        outputs = loaded.forward(inputs, **kwargs)
    if loaded.spec.output_kind == "regression":
        predictions = outputs[:, 0].double()
        targets = pool.labels.double()
        r2 = 1 - ((targets - predictions) ** 2).sum() / ((targets - targets.mean()) ** 2).sum()
        assert abs(float(r2) - recorded["r2"]) < 1e-3, f"{name}: R^2 {r2} vs {recorded}"
        assert float(r2) > 0.3, f"{name}: R^2 {r2} is too low to be a useful model"
    else:
        acc = float((outputs.argmax(1) == pool.labels).double().mean())
        assert len(pool.labels) == recorded["n_test"], f"{name}: held-out set size changed"
        assert abs(acc - recorded["accuracy"]) < 2e-3, f"{name}: accuracy {acc} vs {recorded}"
        assert acc > 0.9, f"{name}: held-out accuracy {acc} is too low"


def test_registry_lists_and_caches() -> None:
    names = [spec.name for spec in list_specs()]
    for name in [*BUILTIN_TRAINED, "minilm_sentiment", "minilm_topic", "resnet50", "resnet18",
                 "mobilenet_v3_large", "vit_b_16", "convnext_tiny"]:
        assert name in names, f"{name} should be registered"
    assert all(s.modality == "tabular" for s in list_specs("tabular")), "modality filter leaks"
    assert {s.name for s in list_specs("tabular")} == {
        "breast_cancer_mlp", "wine_mlp", "diabetes_mlp"}, "tabular specs differ"
    first = load_model("wine_mlp", "cpu")
    assert load_model("wine_mlp", "cpu") is first, "a second load should hit the cache"
    with pytest.raises(ModelLoadError, match="Known models"):
        get_spec("no_such_model")


@pytest.mark.parametrize("name", BUILTIN_TRAINED)
def test_representation_module_is_the_final_linear(name: str) -> None:
    loaded = load_model(name, "cpu")
    head = loaded.representation()
    assert isinstance(head, torch.nn.Linear), f"{name}: representation module is not a Linear"
    assert head.out_features == len(loaded.spec.class_names), f"{name}: head width != classes"


def test_digits_image_round_trip_and_samples() -> None:
    loaded = load_model("digits_cnn", "cpu")
    samples = loaded.spec.samples()
    assert len(samples) >= 6, "six digit samples are bundled"
    correct = 0
    for sample in samples:
        tensor = loaded.preprocess(sample.value)
        assert tensor.shape == (1, 1, 8, 8), f"digits tensor shape {tuple(tensor.shape)}"
        assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0, "outside the box"
        shown = loaded.postprocess(tensor)
        assert shown.shape == (8, 8, 3) and shown.dtype == np.uint8, "display array"
        again = loaded.preprocess(Image.fromarray(shown))
        assert torch.allclose(again, tensor, atol=1 / 255), "display -> tensor round trip"
        correct += int(loaded.forward(tensor).argmax(1).item() == sample.label)
    assert correct >= len(samples) - 1, f"only {correct}/{len(samples)} samples right"
    # A dark digit on white paper is inverted to the training convention.
    tensor = loaded.preprocess(samples[0].value)
    paper = Image.fromarray(255 - loaded.postprocess(tensor))
    assert torch.allclose(loaded.preprocess(paper), tensor, atol=1 / 255), "no auto-invert"


@pytest.mark.parametrize("name", ["breast_cancer_mlp", "wine_mlp", "diabetes_mlp"])
def test_tabular_round_trip_and_baselines(name: str) -> None:
    loaded = load_model(name, "cpu")
    samples = loaded.spec.samples()
    assert len(samples) >= 3, f"{name}: rows are bundled"
    raw = np.array(list(samples[0].value.values()), dtype=np.float64)
    tensor = loaded.preprocess(samples[0].value)
    assert tensor.shape == (1, len(raw)), f"{name}: tensor shape {tuple(tensor.shape)}"
    back = loaded.postprocess(tensor)[0]
    assert np.allclose(back, raw, rtol=1e-5, atol=1e-6), f"{name}: raw -> model -> raw"
    mean_row = loaded.extras["baseline_tensors"]["mean"]
    assert np.allclose(loaded.postprocess(mean_row)[0], loaded.extras["train_mean_raw"],
                       rtol=1e-5, atol=1e-5), f"{name}: mean baseline is not the raw mean"
    assert len(loaded.extras["feature_names"]) == len(raw), f"{name}: feature names"
    with pytest.raises(ModelLoadError, match="missing"):
        loaded.preprocess({"not a feature": 1.0})


def test_listing_command_shows_every_model() -> None:
    result = subprocess.run([sys.executable, "-m", "attribution_core.models"], cwd=REPO,
                            capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                 "TORCH_HOME": str(REPO / ".no-torch-home")})
    assert result.returncode == 0, f"listing failed: {result.stderr[-500:]}"
    lines = result.stdout.splitlines()
    for name in ["digits_cnn", "wine_mlp", "resnet50", "convnext_tiny"]:
        line = next((ln for ln in lines if ln.startswith(name + " ")), None)
        assert line is not None, f"{name} missing from the listing"
    resnet = next(ln for ln in lines if ln.startswith("resnet50 "))
    assert "needs weights" in resnet and "resnet50-11ad3fa6.pth" in resnet, (
        "a model without weights should say which file to put where")
    digits = next(ln for ln in lines if ln.startswith("digits_cnn "))
    assert digits.rstrip().endswith("ready"), "digits_cnn should be ready"
    assert json.loads((MODELS_DIR / "digits_cnn.json").read_text())["name"] == "digits_cnn"


def test_the_model_cache_functions_act_on_the_real_loading_cache() -> None:
    from attribution_core.models import clear_model_cache, register_model
    from attribution_core.models.registry import cached_models, unregister_spec

    module = torch.nn.Sequential(torch.nn.Linear(3, 2))
    register_model("cache_probe_model", module, "tabular", feature_names=("a", "b", "c"))
    try:
        first = load_model("cache_probe_model", "cpu")
        assert ("cache_probe_model", "cpu") in cached_models(), \
            f"a loaded model is listed: {cached_models()}"
        assert load_model("cache_probe_model", "cpu") is first, "and served again"
        clear_model_cache()
        assert ("cache_probe_model", "cpu") not in cached_models(), "clearing empties it"
        assert load_model("cache_probe_model", "cpu") is not first, "and the next load is new"
        unregister_spec("cache_probe_model")
        assert ("cache_probe_model", "cpu") not in cached_models(), \
            "an unregistered model's copies are dropped"
    finally:
        unregister_spec("cache_probe_model")
