"""Dashboard building blocks without a page: exports, figures, reference choice, settings."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dashboard.image import logic
from dashboard.image.ig2 import select_references
from dashboard.widgets import exports, figures

pytestmark = pytest.mark.app


def test_png_colours_match_the_screen_scale() -> None:
    values = np.array([[-2.0, 0.0, 2.0]])
    rgb = exports.colourise(values, 2.0, "signed", "Red-blue (diverging)")
    assert rgb[0, 0, 2] > rgb[0, 0, 0], "the negative end of RdBu_r is blue"
    assert rgb[0, 2, 0] > rgb[0, 2, 2], "the positive end is red"
    assert abs(int(rgb[0, 1, 0]) - int(rgb[0, 1, 2])) < 20, "zero is neutral (near white)"
    png = exports.heatmap_png(values, 2.0, "signed", "Red-blue (diverging)")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and min(image.size) >= exports.MIN_PNG_SIDE, image.size
    assert image.size[0] == 3 * image.size[1], "enlarged without changing the aspect ratio"


def test_png_overlay_blends_with_the_picture() -> None:
    values = np.zeros((4, 4))
    picture = np.zeros((4, 4, 3), dtype=np.uint8)
    png = exports.heatmap_png(values, 1.0, "positive", "Greys", picture, opacity=0.0)
    blended = np.asarray(Image.open(io.BytesIO(png)))
    assert blended.max() == 0, "opacity 0 shows only the (black) picture"


def test_npy_and_csv_hold_every_value() -> None:
    attributions = torch.arange(24, dtype=torch.float64).reshape(1, 2, 3, 4) / 7
    loaded = np.load(io.BytesIO(exports.attributions_npy(attributions)), allow_pickle=False)
    assert np.array_equal(loaded, attributions.numpy()), ".npy round-trips exactly"
    lines = exports.attributions_csv(attributions).strip().split("\n")
    assert lines[0] == "channel,row,column,attribution", lines[0]
    assert len(lines) == 1 + 24, "one line per channel and pixel"
    channel, row, column, value = lines[-1].split(",")
    assert (channel, row, column) == ("1", "2", "3"), "last line is the last pixel"
    assert float(value) == pytest.approx(23 / 7), "values keep their precision"


def test_record_is_plain_json() -> None:
    text = exports.run_record({"delta": torch.tensor([0.5]), "steps": np.int64(3), "x": 1})
    assert json.loads(text) == {"delta": [0.5], "steps": 3, "x": 1}, text


def test_convergence_figure_stays_on_the_data_range() -> None:
    figure = figures.convergence_figure([37, 75, 150, 300], [0.05, 0.01, 0.003, 0.001],
                                        ["smaller"] * 3 + ["this run"], 300)
    assert not figure.layout.shapes, "no shapes (they take log10 coordinates on log axes)"
    xs = np.concatenate([np.asarray(trace.x, dtype=float) for trace in figure.data])
    assert xs.max() < 1000 and xs.min() > 10, f"every trace stays near the data: {xs}"


@pytest.mark.parametrize("relative, colour", [(0.001, "green"), (0.02, "amber"), (0.2, "red"),
                                              (float("nan"), "red")])
def test_completeness_colours(relative: float, colour: str) -> None:
    assert figures.completeness_colour(relative) == colour, f"{relative} -> {colour}"


def test_references_are_seeded_and_of_other_classes() -> None:
    labels = torch.arange(100) % 10
    first = select_references(labels, None, 3, 8, "other classes", seed=1)
    again = select_references(labels, None, 3, 8, "other classes", seed=1)
    other = select_references(labels, None, 3, 8, "other classes", seed=2)
    assert torch.equal(first, again) and not torch.equal(first, other), "seeded"
    assert len(first) == 8 and bool((labels[first] != 3).all()), "never the target class"


def test_relevant_references_come_from_the_next_likely_classes() -> None:
    labels = torch.arange(100) % 10
    probs = torch.tensor([0.0, 0.05, 0.6, 0.0, 0.2, 0.0, 0.1, 0.0, 0.04, 0.01])
    chosen = select_references(labels, probs, 2, 8, "relevant", seed=0)
    assert set(labels[chosen].tolist()) <= {4, 6, 1}, "2nd to 4th most likely classes"


def test_run_key_ignores_nothing_but_view_options() -> None:
    settings = logic.ImageSettings()
    base = logic.run_key("m", "w", "x", "b", settings)
    assert base == logic.run_key("m", "w", "x", "b", logic.ImageSettings()), "stable"
    for changed in (logic.ImageSettings(n_steps=65), logic.ImageSettings(target=1),
                    logic.ImageSettings(method="both"), logic.ImageSettings(seed=5)):
        assert logic.run_key("m", "w", "x", "b", changed) != base, f"{changed} is an input"
    assert logic.run_key("m", "w", "y", "b", settings) != base, "the image is an input"
    assert logic.run_key("m", "w", "x", "c", settings) != base, "the baseline is an input"


def test_model_input_is_contiguous_even_from_a_channels_last_preprocess() -> None:
    from attribution_core.models.spec import LoadedModel, ModelSpec

    def channels_last(_picture: Image.Image) -> torch.Tensor:
        return torch.rand(1, 8, 8, 3).permute(0, 3, 1, 2)  # what pil_to_tensor-style code gives

    spec = ModelSpec(name="fake", title="fake", modality="image", output_kind="classification",
                     class_names=("a", "b"), loader=lambda device: None)  # type: ignore
    module = torch.nn.Identity()
    loaded = LoadedModel(spec=spec, module=module, forward=module, weights_hash="h",
                         device=torch.device("cpu"), preprocess=channels_last)
    tensor = logic.model_input(loaded, Image.new("RGB", (8, 8)))
    assert tensor.is_contiguous() and tensor.shape == (1, 3, 8, 8), "core-ready layout"


def test_run_key_ignores_options_the_method_does_not_use() -> None:
    ig = logic.ImageSettings(method="IG")
    assert logic.run_key("m", "w", "x", "b", ig) == logic.run_key(
        "m", "w", "x", "b", logic.ImageSettings(method="IG", ig2_steps=99)), "IG ignores IG2"
    ig2 = logic.ImageSettings(method="IG2")
    assert logic.run_key("m", "w", "x", "b", ig2) == logic.run_key(
        "m", "w", "x", "other", logic.ImageSettings(method="IG2", n_steps=9)), "IG2 ignores IG"
    both = logic.ImageSettings(method="both")
    assert logic.run_key("m", "w", "x", "b", both) != logic.run_key(
        "m", "w", "x", "b", logic.ImageSettings(method="both", ig2_steps=99)), "both uses all"


def test_single_case_scales_share_output_units_and_isolate_saliency() -> None:
    import math

    from attribution_core.evaluation.types import CaseOutcome, MethodOutcome
    from dashboard.evaluate.figures import case_limits

    def outcome(method: str, scores: list[float]) -> MethodOutcome:
        curve = np.zeros(2)
        return MethodOutcome(method, np.array(scores), curve, curve, 0.0, 1.0, 0.0, 0.0,
                             *(math.nan,) * 4, 0.1, 1)

    case = CaseOutcome("c", 0, None, 0, 1.0, 0.0, np.linspace(0, 1, 2), np.zeros(2),
                       np.zeros(2), 0.5, 0.5,
                       (outcome("IG", [0.5, -2.0]), outcome("IG2", [1.0, 0.1]),
                        outcome("Saliency", [300.0, 40.0])), math.nan)
    limits = case_limits(case, ["IG", "IG2", "Saliency"], percentile=100.0)
    assert limits["IG"] == limits["IG2"] == 2.0, f"IG and IG2 share one scale: {limits}"
    assert limits["Saliency"] == 300.0, f"saliency has its own scale: {limits}"
