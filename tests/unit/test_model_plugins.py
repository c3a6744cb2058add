"""The plugin API: register_model builds a full spec, plugins come from ATTRIBUTION_MODELS, a
broken plugin is listed as not ready with its error, and the command line explains a plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from attribution_core import integrated_gradients
from attribution_core.models import (
    ModelLoadError,
    get_spec,
    list_specs,
    load_model,
    register_model,
    unregister_spec,
)
from attribution_core.models.plugin_discovery import forget_plugin, load_plugins, plugin_failures

ROOT = Path(__file__).resolve().parents[2]
LINEAR_PLUGIN = ROOT / "examples" / "plugins" / "linear_tabular.py"
WEIGHTS = np.array([[0.04, -0.08, 0.30], [-0.04, 0.08, -0.30]])


@pytest.fixture
def linear_plugin() -> Iterator[str]:
    failures = load_plugins(str(LINEAR_PLUGIN))
    assert not failures, f"the example plugin imports cleanly: {failures}"
    yield "linear_credit"
    unregister_spec("linear_credit")
    forget_plugin(str(LINEAR_PLUGIN))


@pytest.fixture
def broken_plugin(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "broken_plugin.py"
    path.write_text("import torch\nraise RuntimeError('weights file missing on this host')\n")
    yield str(path)
    forget_plugin(str(path))


def test_linear_plugin_ig_is_w_times_x_minus_baseline(linear_plugin: str) -> None:
    loaded = load_model(linear_plugin, device="cpu")
    row = {"income": 30.0, "debt": 35.0, "years_employed": 2.0}
    inputs = loaded.preprocess(row)
    baseline = loaded.extras["baseline_tensors"]["mean"]
    mean_raw = np.asarray(loaded.extras["train_mean_raw"])
    result = integrated_gradients(loaded.forward, inputs, baselines=baseline, target=1,
                                  n_steps=8)
    expected = WEIGHTS[1] * (np.array(list(row.values())) - mean_raw)
    got = result.attributions[0].double().numpy()
    assert np.allclose(got, expected, atol=1e-4), f"IG {got} vs closed form {expected}"
    assert loaded.spec.source == "plugin", f"source is {loaded.spec.source}"
    assert loaded.spec.baselines[0] == "mean", f"data-set baselines: {loaded.spec.baselines}"
    pool = loaded.spec.reference_pool()
    predicted = loaded.forward(pool.inputs).argmax(-1)
    assert torch.equal(pool.labels, predicted), "unlabelled references get the model's classes"


def test_plugin_models_are_listed_and_loaded_by_name(linear_plugin: str) -> None:
    names = [spec.name for spec in list_specs("tabular")]
    assert linear_plugin in names, f"the plugin model is among the tabular models: {names}"
    assert get_spec(linear_plugin).metadata["plugin"] == str(LINEAR_PLUGIN), \
        "the spec records which plugin registered it"


def test_broken_plugin_is_reported_and_nothing_else_breaks(broken_plugin: str,
                                                            linear_plugin: str) -> None:
    failures = load_plugins(broken_plugin)
    mine = [f for f in failures if f.source == broken_plugin]
    assert mine and "RuntimeError: weights file missing" in mine[0].message, \
        f"the failure and its error are remembered: {failures}"
    assert load_model(linear_plugin, device="cpu") is not None, "other plugins still load"
    assert any(s.name == "digits_cnn" for s in list_specs()), "built-ins are still listed"
    assert broken_plugin in [f.source for f in plugin_failures()], "listed on later calls too"


def test_a_builtin_name_cannot_be_taken() -> None:
    with pytest.raises(ModelLoadError, match="choose another name"):
        register_model("digits_cnn", nn.Linear(2, 2), "tabular", feature_names=["a", "b"])


def test_bad_arguments_get_a_reason() -> None:
    with pytest.raises(ModelLoadError, match="needs feature_names"):
        register_model("no_names", nn.Linear(2, 2), "tabular")
    with pytest.raises(ModelLoadError, match="needs input_size"):
        register_model("no_size", nn.Conv2d(3, 2, 3), "image")
    assert all(s.name not in ("no_names", "no_size") for s in list_specs()), "nothing registered"


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_image_model_gets_preprocess_normalisation_and_references() -> None:
    network = TinyCNN()
    references = torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    spec = register_model("tiny_cnn_plugin", network, "image", class_names=["a", "b", "c"],
                          reference_data=references, mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    try:
        loaded = load_model(spec.name, device="cpu")
        picture = Image.new("RGB", (40, 30), (255, 0, 0))
        inputs = loaded.preprocess(picture)
        assert tuple(inputs.shape) == (1, 3, 16, 16), f"resized to reference size: {inputs.shape}"
        assert float(inputs[0, 0].mean()) == pytest.approx(1.0), "pixels in [0, 1]"
        expected = network((inputs - 0.5) / 0.2)
        assert torch.allclose(loaded.forward(inputs), expected), "normalised inside the model"
        assert spec.representation_module == "model.head", spec.representation_module
        assert "dataset_mean" in spec.baselines, f"data-set mean baseline: {spec.baselines}"
        assert spec.reference_pool().labels.shape == (10,), "references labelled"
    finally:
        unregister_spec(spec.name)


def test_transformers_sequence_classifier_plugin() -> None:
    from transformers import BertConfig, BertForSequenceClassification

    from attribution_core.models.builtin_text import MODELS_DIR
    from attribution_core.models.word_tokenizer import WordTokenizer

    tokenizer = WordTokenizer.load(MODELS_DIR / get_spec("cue_transformer").metadata[
        "tokenizer_file"])
    config = BertConfig(vocab_size=len(tokenizer.vocabulary), hidden_size=16,
                        num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        num_labels=2, id2label={0: "negative", 1: "positive"})
    torch.manual_seed(0)
    network = BertForSequenceClassification(config)
    spec = register_model("tiny_bert_plugin", network, "text", tokenizer=tokenizer,
                          reference_data=["a good film", "a bad film", "the food was fine"])
    try:
        loaded = load_model(spec.name, device="cpu")
        encoded = loaded.preprocess("a good film")
        embeds = loaded.embed(encoded["input_ids"])
        logits = loaded.forward(embeds, attention_mask=encoded["attention_mask"])
        direct = network(input_ids=encoded["input_ids"],
                         attention_mask=encoded["attention_mask"]).logits
        assert torch.allclose(logits, direct, atol=1e-5), "embeddings path = token ids path"
        assert tuple(spec.class_names) == ("negative", "positive"), spec.class_names
        assert spec.reference_pool().extras["texts"][0] == "a good film", "texts kept for IG2"
    finally:
        unregister_spec(spec.name)


def _run(args: list[str], plugins: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ATTRIBUTION_MODELS": plugins, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300, check=False)


def test_models_command_lists_plugins_and_broken_ones(broken_plugin: str) -> None:
    done = _run(["attribution_core.models"], f"{LINEAR_PLUGIN},{broken_plugin}")
    assert done.returncode == 0, f"the listing works: {done.stderr[-500:]}"
    line = next((row for row in done.stdout.splitlines() if row.startswith("linear_credit")), "")
    assert "tabular" in line and "plugin" in line and "ready" in line, f"listed: {line!r}"
    assert f"{broken_plugin} failed to import: RuntimeError: weights file missing" in \
        done.stdout, f"the broken plugin and its error are listed:\n{done.stdout[-800:]}"


def test_explain_command_uses_a_plugin_model(tmp_path: Path, linear_plugin: str) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("income,debt,years_employed\n30,35,2\n80,5,20\n")
    out = tmp_path / "report"
    done = _run(["attribution_core", "explain", "--model", "linear_credit", "--input",
                 str(rows), "--methods", "IG", "--out", str(out)], str(LINEAR_PLUGIN))
    assert done.returncode == 0, f"explain ran: {done.stderr[-800:]}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["model"] == "linear_credit" and summary["n_cases"] == 2, summary
    maps = load_file(str(out / "evaluation_attributions.safetensors"))
    record = json.loads((out / "evaluation.json").read_text())
    mean_raw = np.asarray(load_model(linear_plugin, device="cpu").extras["train_mean_raw"])
    for case, row in zip(record["cases"], ([30, 35, 2], [80, 5, 20]), strict=True):
        expected = WEIGHTS[case["target"]] * (np.array(row, dtype=float) - mean_raw)
        got = maps[f"{case['case_id']}/IG"].double().numpy()
        assert np.allclose(got, expected, atol=1e-4), \
            f"{case['case_id']}: command-line IG {got} vs closed form {expected}"


class FakeEntryPoint:
    """What importlib.metadata gives for one entry of the attribution_core.models group."""

    def __init__(self, name: str, target: object) -> None:
        self.name, self.value, self._target = name, f"pkg.module:{name}", target

    def load(self) -> object:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def test_entry_points_register_models_and_broken_ones_are_listed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from attribution_core.models import plugin_discovery as plugins

    def register() -> None:
        register_model("entry_point_linear", nn.Linear(2, 2), "tabular",
                       feature_names=["a", "b"])

    entries = [FakeEntryPoint("good", register),
               FakeEntryPoint("bad", ImportError("No module named 'pkg'"))]
    monkeypatch.setattr(plugins, "_entry_points", lambda: entries)
    monkeypatch.setattr(plugins, "_ENTRY_POINTS_READ", False)
    try:
        failures = load_plugins("")
        assert "entry_point_linear" in [s.name for s in list_specs("tabular")], \
            "the entry point's function ran and registered its model"
        bad = [f for f in failures if "bad" in f.source]
        assert bad and "No module named 'pkg'" in bad[0].message, f"listed: {failures}"
    finally:
        unregister_spec("entry_point_linear")
        for entry in entries:
            forget_plugin(f"entry point {entry.name} ({entry.value})")


def test_a_plugin_without_reference_data_explains_with_ig_and_refuses_ig2_by_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from attribution_core.evaluation.cli import main

    network = nn.Linear(3, 2)
    with torch.no_grad():
        network.weight.copy_(torch.as_tensor(WEIGHTS))
        network.bias.zero_()
    register_model("no_reference_plugin", network, "tabular",
                   feature_names=["income", "debt", "years_employed"])
    try:
        rows = tmp_path / "rows.csv"
        rows.write_text("income,debt,years_employed\n30,35,2\n80,5,20\n")
        out = tmp_path / "report"
        status = main(["explain", "--model", "no_reference_plugin", "--input", str(rows),
                       "--methods", "IG", "--out", str(out)])
        captured = capsys.readouterr()
        assert status == 0, f"IG needs no reference pool: {captured.err[-500:]}"
        maps = load_file(str(out / "evaluation_attributions.safetensors"))
        record = json.loads((out / "evaluation.json").read_text())
        for case, row in zip(record["cases"], ([30, 35, 2], [80, 5, 20]), strict=True):
            expected = WEIGHTS[case["target"]] * np.array(row, dtype=float)  # from zeros
            got = maps[f"{case['case_id']}/IG"].double().numpy()
            assert np.allclose(got, expected, atol=1e-3), f"{case['case_id']}: {got}"
        status = main(["explain", "--model", "no_reference_plugin", "--input", str(rows),
                       "--methods", "IG,IG2", "--out", str(tmp_path / "again")])
        error = capsys.readouterr().err
        assert status == 2 and "IG2 needs" in error and "GradientSHAP" not in error, \
            f"only the asked-for method that needs references is named: {error!r}"
    finally:
        unregister_spec("no_reference_plugin")
