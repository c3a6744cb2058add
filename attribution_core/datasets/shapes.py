"""Procedurally generated shape scenes with a ground-truth mask of the class-deciding object.

Each 32x32 RGB scene holds exactly one red shape (the class-deciding object; the class is its
kind: circle, square, triangle or cross) and one to three distractor shapes of any kind in
green, blue or grey, on a dark noisy background (``background="dark"``, the default; the
validity suite also draws "bright", "textured" and "noisy" ones, see ``BACKGROUNDS``). Shapes
never overlap (bounding boxes are kept one pixel apart), so the mask of the red shape is
exactly the set of red pixels: the ground truth for localisation checks (does the attribution
fall on the object that decides?).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 32
KINDS = ("circle", "square", "triangle", "cross")
TARGET_COLOUR = (0.9, 0.1, 0.1)
DISTRACTOR_COLOURS = ((0.1, 0.8, 0.15), (0.15, 0.3, 0.95), (0.6, 0.6, 0.6))
BACKGROUND = 0.08
NOISE = 0.03
COLOUR_JITTER = 0.05
BACKGROUNDS = ("dark", "bright", "textured", "noisy")
BRIGHT = 0.85
NOISY_MEAN, NOISY_SD = 0.5, 0.2


@dataclass(frozen=True)
class ShapesData:
    """``images [N, 3, 32, 32]`` float32 in [0, 1], ``labels [N]`` int64 (index into KINDS),
    ``masks [N, 32, 32]`` bool: the pixels of the class-deciding (red) shape."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


def shape_mask(kind: int, centre: tuple[int, int], radius: int, size: int = SIZE) -> np.ndarray:
    """Boolean mask of one shape of ``kind`` with the given centre (row, col) and half-size."""
    rows, cols = np.mgrid[0:size, 0:size]
    dy, dx = rows - centre[0], cols - centre[1]
    if KINDS[kind] == "circle":
        return dy ** 2 + dx ** 2 <= radius ** 2 + 0.5
    if KINDS[kind] == "square":
        side = max(radius - 1, 2)  # a square of the same half-size looks much bigger
        return (np.abs(dy) <= side) & (np.abs(dx) <= side)
    if KINDS[kind] == "triangle":
        # Apex at the top row of the box, base at the bottom; width grows linearly downwards.
        height = 2 * radius
        progress = (dy + radius) / height
        return (dy >= -radius) & (dy <= radius) & (np.abs(dx) <= progress * radius + 0.25)
    bar = max(radius // 3, 1)
    return (((np.abs(dy) <= radius) & (np.abs(dx) <= bar))
            | ((np.abs(dx) <= radius) & (np.abs(dy) <= bar)))


def _place(rng: np.random.Generator, radius: int, boxes: list[tuple[int, int, int, int]]
           ) -> tuple[int, int] | None:
    """A centre whose bounding box keeps a one-pixel gap from every box placed so far."""
    for _ in range(50):
        row = int(rng.integers(radius + 1, SIZE - radius - 1))
        col = int(rng.integers(radius + 1, SIZE - radius - 1))
        box = (row - radius - 1, row + radius + 1, col - radius - 1, col + radius + 1)
        if all(box[1] < b[0] or b[1] < box[0] or box[3] < b[2] or b[3] < box[2] for b in boxes):
            boxes.append(box)
            return row, col
    return None


def _paint(image: np.ndarray, mask: np.ndarray, colour: tuple[float, ...],
           rng: np.random.Generator) -> None:
    jittered = np.clip(np.asarray(colour) + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, 3), 0, 1)
    image[:, mask] = jittered[:, None]


def _background(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A [3, SIZE, SIZE] canvas: dark or bright with light noise, grey stripes of random
    frequency, angle and phase (textured), or strong grey-level noise."""
    if kind == "dark":
        return np.clip(BACKGROUND + rng.normal(0, NOISE, (3, SIZE, SIZE)), 0, 1)
    if kind == "bright":
        return np.clip(BRIGHT + rng.normal(0, NOISE, (3, SIZE, SIZE)), 0, 1)
    if kind == "textured":
        rows, cols = np.mgrid[0:SIZE, 0:SIZE]
        angle, frequency = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(frequency * (np.cos(angle) * cols + np.sin(angle) * rows) + phase)
        grey = 0.5 + 0.3 * wave + rng.normal(0, NOISE, (SIZE, SIZE))
        return np.clip(np.broadcast_to(grey, (3, SIZE, SIZE)), 0, 1).copy()
    if kind == "noisy":
        grey = rng.normal(NOISY_MEAN, NOISY_SD, (SIZE, SIZE))
        return np.clip(np.broadcast_to(grey, (3, SIZE, SIZE)), 0, 1).copy()
    raise ValueError(f"Unknown background {kind!r}; choose one of {', '.join(BACKGROUNDS)}.")


def generate_shapes(n: int, seed: int, background: str | tuple[str, ...] = "dark"
                    ) -> ShapesData:
    """``n`` scenes drawn from ``np.random.default_rng(seed)`` (same seed, same scenes).

    ``background``: one kind for every scene, or a tuple of kinds taken in turn."""
    kinds = (background,) if isinstance(background, str) else tuple(background)
    rng = np.random.default_rng(seed)
    images = np.empty((n, 3, SIZE, SIZE), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    for i in range(n):
        image = _background(rng, kinds[i % len(kinds)])
        boxes: list[tuple[int, int, int, int]] = []
        label = int(rng.integers(len(KINDS)))
        radius = int(rng.integers(4, 7))
        centre = _place(rng, radius, boxes)
        assert centre is not None, "an empty canvas always has room for the first shape"
        target = shape_mask(label, centre, radius)
        _paint(image, target, TARGET_COLOUR, rng)
        for _ in range(int(rng.integers(1, 4))):
            d_radius = int(rng.integers(3, 6))
            d_centre = _place(rng, d_radius, boxes)
            if d_centre is None:
                continue  # a crowded scene keeps fewer distractors
            d_mask = shape_mask(int(rng.integers(len(KINDS))), d_centre, d_radius)
            colour = DISTRACTOR_COLOURS[int(rng.integers(len(DISTRACTOR_COLOURS)))]
            _paint(image, d_mask, colour, rng)
        images[i] = image
        labels[i] = label
        masks[i] = target
    return ShapesData(images, labels, masks)
