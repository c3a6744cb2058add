"""Bundled example inputs (``assets/samples``): images, sentences and table rows per model.

Index files: ``images.json`` ({model: [{file, label, label_name, mask?}]}), ``texts.json``
({model: [{text, label, label_name, decisive_words?}]}) and ``rows.json``
({model: [{name, label, label_name, values: {feature: raw value}}]}). They are written by
``python -m attribution_core.train.make_samples`` from held-out data.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from attribution_core.models.assets import SAMPLES_DIR
from attribution_core.models.spec import Sample


@lru_cache(maxsize=4)
def _index(file_name: str) -> dict[str, list[dict[str, Any]]]:
    path = SAMPLES_DIR / file_name
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def image_samples(model_name: str) -> list[Sample]:
    """PIL images (mask as a bool array in ``extras["mask"]`` where the index has one)."""
    samples = []
    for entry in _index("images.json").get(model_name, []):
        with Image.open(SAMPLES_DIR / entry["file"]) as handle:
            image = handle.copy()
        extras: dict[str, Any] = {"file": entry["file"]}
        if "mask" in entry:
            with Image.open(SAMPLES_DIR / entry["mask"]) as handle:
                extras["mask"] = np.asarray(handle.convert("L")) > 127
        samples.append(Sample(entry["file"].rsplit("/", 1)[-1], image, entry["label"],
                              entry.get("label_name"), extras))
    return samples


def text_samples(model_name: str) -> list[Sample]:
    return [Sample(f"text_{i}", entry["text"], entry.get("label"), entry.get("label_name"),
                   {k: v for k, v in entry.items()
                    if k not in ("text", "label", "label_name")})
            for i, entry in enumerate(_index("texts.json").get(model_name, []))]


def row_samples(model_name: str) -> list[Sample]:
    return [Sample(entry["name"], dict(entry["values"]), entry.get("label"),
                   entry.get("label_name"))
            for entry in _index("rows.json").get(model_name, [])]


def clear_sample_index() -> None:
    """Forget the cached indexes (after ``make_samples`` rewrote them)."""
    _index.cache_clear()
