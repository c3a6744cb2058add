"""The shapes generator's ground truth: masks cover exactly the object that decides the label."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from attribution_core.datasets.shapes import BACKGROUND, KINDS, generate_shapes, shape_mask
from attribution_core.models import load_model


def _red_pixels(image: np.ndarray) -> np.ndarray:
    """Pixels coloured like the class-deciding object (independent of the generator's mask)."""
    red, green, blue = image
    return (red > 0.6) & (green < 0.35) & (blue < 0.35)


@pytest.fixture(scope="module")
def scenes():
    return generate_shapes(300, 12345)


def test_generator_is_deterministic() -> None:
    first, second = generate_shapes(20, 7), generate_shapes(20, 7)
    assert np.array_equal(first.images, second.images), "same seed must give the same scenes"
    assert np.array_equal(first.masks, second.masks), "same seed must give the same masks"
    assert not np.array_equal(first.images, generate_shapes(20, 8).images), "seed is used"


def test_masks_are_exactly_the_red_object(scenes) -> None:
    for i in range(len(scenes.labels)):
        mask, image = scenes.masks[i], scenes.images[i]
        assert mask.any(), f"scene {i}: empty mask"
        assert np.array_equal(mask, _red_pixels(image)), (
            f"scene {i}: mask and red pixels differ in {np.sum(mask != _red_pixels(image))} px")
        _, components = ndimage.label(mask)
        assert components == 1, f"scene {i}: the mask has {components} parts, not one object"
        # Just outside the object is background or another object, never more of the object.
        ring = ndimage.binary_dilation(mask) & ~mask
        assert not _red_pixels(image)[ring].any(), f"scene {i}: red pixels around the mask"


def test_mask_geometry_matches_the_label(scenes) -> None:
    """Re-drawing each kind at the mask's centre: only the labelled kind reproduces the mask."""
    for i in range(60):
        mask, label = scenes.masks[i], int(scenes.labels[i])
        rows, cols = np.nonzero(mask)
        matches = []
        for kind in range(len(KINDS)):
            for radius in range(3, 8):
                for centre in {(int(np.rint(rows.mean())), int(np.rint(cols.mean()))),
                               ((rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2)}:
                    if np.array_equal(shape_mask(kind, centre, radius), mask):
                        matches.append(kind)
        assert matches and set(matches) == {label}, f"scene {i}: kinds {matches} vs {label}"


def test_the_masked_object_decides_the_prediction(scenes) -> None:
    model = load_model("shapes_cnn", "cpu")
    images = torch.from_numpy(scenes.images[:100].copy())
    masks = torch.from_numpy(scenes.masks[:100])
    labels = torch.from_numpy(scenes.labels[:100])
    with torch.no_grad():
        clean = model.forward(images).argmax(1)
        erased = images.clone()
        erased.permute(1, 0, 2, 3)[:, masks] = BACKGROUND  # paint the red object as background
        confidence_clean = model.forward(images).softmax(1).gather(1, labels[:, None])
        confidence_erased = model.forward(erased).softmax(1).gather(1, labels[:, None])
        distractors = (images.amax(1) > 0.3) & ~masks  # every other painted object
        without_distractors = images.clone()
        without_distractors.permute(1, 0, 2, 3)[:, distractors] = BACKGROUND
        kept = model.forward(without_distractors).argmax(1)
    assert float((clean == labels).double().mean()) > 0.95, "the model should read the scenes"
    assert float((kept == labels).double().mean()) > 0.95, "distractors should not decide"
    drop = float((confidence_clean - confidence_erased).mean())
    assert drop > 0.5, f"erasing the masked object should destroy the evidence (drop {drop})"
