"""Shapes scenes on four backgrounds and the image suite's mask metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attribution_core.datasets.shapes import BACKGROUNDS, TARGET_COLOUR, generate_shapes
from attribution_core.validity.image_suite import _fit


def test_dark_is_the_default_background() -> None:
    default, dark = generate_shapes(8, 3), generate_shapes(8, 3, "dark")
    assert np.array_equal(default.images, dark.images), \
        "background='dark' should draw exactly the scenes the bundled model was trained on"


@pytest.mark.parametrize("background", BACKGROUNDS)
def test_every_background_keeps_the_mask_on_the_red_shape(background: str) -> None:
    scenes = generate_shapes(12, 4, background)
    red = np.asarray(TARGET_COLOUR).reshape(3, 1)
    for image, mask in zip(scenes.images, scenes.masks, strict=True):
        pixels = image.reshape(3, -1)[:, mask.reshape(-1)]
        assert mask.any(), f"{background}: every scene has a deciding shape"
        assert np.abs(pixels - red).max() <= 0.051, \
            f"{background}: the masked pixels should be the red shape's"


def test_backgrounds_differ_as_named() -> None:
    def background_level(kind: str) -> float:
        scenes = generate_shapes(16, 5, kind)
        return float(scenes.images.transpose(1, 0, 2, 3)[:, ~scenes.masks].mean())

    assert background_level("dark") < 0.2 < background_level("textured") < 0.8 \
        < background_level("bright"), "dark, textured (mid grey) and bright canvases"
    noisy = generate_shapes(4, 5, "noisy").images
    assert noisy.std() > 0.15, "the noisy canvas should carry strong pixel noise"
    with pytest.raises(ValueError, match="bright"):
        generate_shapes(1, 0, "purple")


def test_mask_metrics_separate_a_right_map_from_a_random_one() -> None:
    scenes = generate_shapes(20, 6)
    masks = torch.from_numpy(scenes.masks)
    right = _fit(masks.double(), masks)
    random = _fit(torch.randn(masks.shape, generator=torch.Generator().manual_seed(0),
                              dtype=torch.float64), masks)
    assert np.all(right["mask_share"] == 1.0) and np.all(right["pointing_game"] == 1.0), \
        "a map on the mask only should score 1 on both"
    assert random["mask_share"].mean() < 0.15 and random["pointing_game"].mean() < 0.3, \
        f"a random map should score about the mask's area share, got {random}"
