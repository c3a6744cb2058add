"""Decoding, validation, preprocessing, baselines and region ranking of attribution_core images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from attribution_core.modalities import image as mi
from tests.app import image_files as files

RGB_NORMALISED = mi.ImagePreprocessing(size=(8, 8), channels=3, mean=(0.5, 0.4, 0.3),
                                       std=(0.2, 0.25, 0.3))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_accepted_format_decodes_to_eight_bit(fmt: str) -> None:
    data = files.encode(files.gradient_image(40, 30), fmt)
    decoded = mi.decode_image(data)
    assert decoded.image.mode in ("RGB", "L"), f"{fmt} decoded to {decoded.image.mode}"
    assert decoded.image.size == (40, 30), f"{fmt} changed the size to {decoded.image.size}"


@pytest.mark.parametrize("builder, words", [
    (files.truncated_png, "truncated"),
    (files.text_file_as_png, "not an image"),
    (files.one_pixel_png, "1x1"),
    (lambda: b"", "empty"),
])
def test_bad_files_raise_a_clear_error(builder: object, words: str) -> None:
    with pytest.raises(mi.ImageInputError) as caught:
        mi.decode_image(builder())  # type: ignore[operator]
    assert words in str(caught.value), f"message {caught.value!s} should mention {words!r}"


def test_decompression_bomb_is_rejected_from_the_header() -> None:
    data = files.bomb_png(12000)
    assert len(data) < 2_000_000, "the test file itself should be small"
    with pytest.raises(mi.ImageInputError) as caught:
        mi.decode_image(data)
    limit = f"{mi.MAX_PIXELS / 1e6:.0f} MP"
    assert "12000x12000" in str(caught.value) and limit in str(caught.value), str(caught.value)


def test_pixel_cap_is_configurable() -> None:
    with pytest.raises(mi.ImageInputError, match="limit"):
        mi.decode_image(files.png_bytes(100, 100), max_pixels=5_000)
    assert mi.decode_image(files.png_bytes(100, 100), max_pixels=10_000).image.size == (100, 100)


def test_animated_gif_uses_the_first_frame() -> None:
    decoded = mi.decode_image(files.animated_gif())
    red, green, blue = decoded.image.convert("RGB").getpixel((5, 5))
    assert red > 200 and green < 50 and blue < 50, f"first frame is red, got {(red, green, blue)}"
    assert any("first frame" in note for note in decoded.notes), f"notes: {decoded.notes}"


def test_cmyk_jpeg_becomes_rgb() -> None:
    decoded = mi.decode_image(files.cmyk_jpeg())
    assert decoded.source_mode == "CMYK" and decoded.image.mode == "RGB", decoded
    red, green, blue = decoded.image.getpixel((16, 16))
    assert red > 200 and green < 60 and blue < 60, f"CMYK red should stay red: {(red, green, blue)}"


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    decoded = mi.decode_image(files.sixteen_bit_png())
    values = np.asarray(decoded.image)
    assert decoded.image.mode == "L", f"mode {decoded.image.mode}"
    assert values[0, 0] == 0 and values[0, -1] == 255, f"ends of the ramp: {values[0, [0, -1]]}"
    assert 100 < values[0, 16] < 160, f"the middle of a 16-bit ramp is mid-grey: {values[0, 16]}"


def test_transparency_is_composited_on_white() -> None:
    decoded = mi.decode_image(files.rgba_png())
    assert decoded.image.getpixel((5, 5)) == (255, 255, 255), "transparent pixels become white"
    assert decoded.image.getpixel((0, 0)) == (0, 0, 0), "opaque black stays black"


def test_exif_orientation_is_honoured() -> None:
    decoded = mi.decode_image(files.rotated_jpeg())
    assert decoded.image.size == (30, 40), f"orientation 6 swaps the sides: {decoded.image.size}"
    # Rotating 90° clockwise brings the original's left column (red = 0) to the top row.
    top_row_red = np.asarray(decoded.image)[0, :, 0]
    assert top_row_red.max() < 40, f"top row should come from the dark-red left edge: {top_row_red}"


def test_model_tensor_and_display_round_trip() -> None:
    image = files.gradient_image(8, 8)
    tensor = mi.to_model_tensor(image, RGB_NORMALISED, dtype=torch.float64)
    assert tensor.shape == (1, 3, 8, 8), f"shape {tuple(tensor.shape)}"
    back = mi.to_display_array(tensor, RGB_NORMALISED)
    assert np.abs(back.astype(int) - np.asarray(image).astype(int)).max() <= 1, "round trip"


def test_fit_crops_to_the_aspect_ratio_before_resizing() -> None:
    wide = Image.new("L", (30, 10), 0)
    wide.paste(255, (10, 0, 20, 10))  # a white centre square between black sides
    prep = mi.ImagePreprocessing(size=(4, 4), channels=1)
    tensor = mi.to_model_tensor(wide, prep, dtype=torch.float64)
    assert float(tensor.min()) > 0.99, "fit keeps only the centre square, which is white"


def test_black_and_white_baselines_are_normalised_pixels() -> None:
    x = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    black = mi.make_baseline("black", x, RGB_NORMALISED)
    white = mi.make_baseline("white", x, RGB_NORMALISED)
    expected_black = -torch.tensor([0.5, 0.4, 0.3], dtype=torch.float64) / torch.tensor(
        [0.2, 0.25, 0.3], dtype=torch.float64)
    assert torch.allclose(black[0, :, 0, 0], expected_black), "black is (0 - mean) / std"
    assert torch.allclose(RGB_NORMALISED.denormalise(white), torch.ones_like(white)), "white"


def test_inverted_models_get_a_black_baseline_that_looks_black() -> None:
    prep = mi.ImagePreprocessing(size=(8, 8), channels=1, invert=True)
    black = mi.make_baseline("black", torch.zeros(1, 1, 8, 8), prep)
    shown = mi.to_display_array(black, prep)
    assert shown.max() == 0, "with inverted pixels the black baseline still displays black"


def test_noise_baseline_is_seeded() -> None:
    x = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    first = mi.make_baseline("noise", x, RGB_NORMALISED, seed=3)
    again = mi.make_baseline("noise", x, RGB_NORMALISED, seed=3)
    other = mi.make_baseline("noise", x, RGB_NORMALISED, seed=4)
    assert torch.equal(first, again), "same seed, same noise"
    assert not torch.equal(first, other), "another seed, other noise"
    pixels = RGB_NORMALISED.denormalise(first)
    assert float(pixels.min()) >= 0 and float(pixels.max()) <= 1, "noise stays in pixel range"


def test_blur_keeps_constant_images_and_smooths_edges() -> None:
    flat = torch.full((1, 16, 16), 0.7, dtype=torch.float64)
    assert torch.allclose(mi.gaussian_blur(flat, 2.0), flat), "blur of a constant is constant"
    edge = torch.zeros(1, 16, 16, dtype=torch.float64)
    edge[..., 8:] = 1.0
    blurred = mi.gaussian_blur(edge, 1.5)
    assert 0.2 < float(blurred[0, 5, 7]) < 0.8, "the edge is smoothed"
    assert float(blurred.sum()) == pytest.approx(float(edge.sum()), rel=0.05), "mass kept"


def test_uploaded_baseline_needs_an_image() -> None:
    with pytest.raises(mi.ImageInputError, match="baseline"):
        mi.make_baseline("uploaded", torch.zeros(1, 3, 8, 8), RGB_NORMALISED)
    uploaded = mi.make_baseline("uploaded", torch.zeros(1, 3, 8, 8), RGB_NORMALISED,
                                uploaded=Image.new("RGB", (20, 20), (255, 255, 255)))
    assert torch.allclose(RGB_NORMALISED.denormalise(uploaded), torch.ones(1, 3, 8, 8)), "white"


def test_views_and_shared_limit() -> None:
    values = np.array([[-2.0, 1.0], [0.5, 4.0]])
    assert apply_min(mi.apply_view(values, "positive")) == 0.0, "positive drops negatives"
    assert mi.apply_view(values, "absolute")[0, 0] == 2.0, "absolute takes magnitudes"
    weak = values / 100
    limit = mi.shared_limit([values, weak], 100.0)
    assert limit == 4.0, f"one scale for both maps, set by the stronger: {limit}"
    assert mi.shared_limit([np.zeros((2, 2))], 99.0) == 1.0, "all-zero maps still get a scale"


def apply_min(values: np.ndarray) -> float:
    return float(values.min())


def test_ranked_regions_sum_and_order() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(16, 16))
    values[0:2, 14:16] += 10.0  # the top-right cell of an 8x8 grid dominates
    regions = mi.ranked_regions(values, grid=8)
    assert len(regions) == 64, f"8x8 grid: {len(regions)}"
    top = regions[0]
    assert (top.top, top.left) == (0, 14), f"strongest cell first: {top}"
    assert top.label == "rows 0-1, columns 14-15", f"label names the pixels: {top.label}"
    single = mi.ranked_regions(np.eye(8), grid=8)[0]
    assert single.label == f"row {single.top}, column {single.left}", single.label
    assert sum(abs(r.share) for r in regions) == pytest.approx(1.0), "|shares| sum to 1"
    assert sum(r.attribution for r in regions) == pytest.approx(values.sum()), "cells tile the map"
    magnitudes = [abs(r.attribution) for r in regions]
    assert magnitudes == sorted(magnitudes, reverse=True), "ranked by magnitude"
    assert len(mi.ranked_regions(values, top_k=5)) == 5, "top_k limits the list"


def test_input_box_matches_normalisation() -> None:
    lo, hi = RGB_NORMALISED.input_box()
    assert torch.allclose(lo.flatten(), torch.tensor([-2.5, -1.6, -1.0], dtype=torch.float64))
    assert torch.allclose(hi.flatten(), torch.tensor([2.5, 2.4, 2 + 1 / 3], dtype=torch.float64))
