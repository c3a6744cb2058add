"""Write ``assets/samples`` from held-out data: ``python -m attribution_core.train.make_samples``.

Digits and shapes become PNGs (shapes with their ground-truth masks), tabular rows go into
``rows.json`` with raw feature values, example sentences into ``texts.json``. Everything is
drawn deterministically, so rerunning rewrites identical files.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
from PIL import Image

from attribution_core.datasets.splits import digits_split, tabular_split
from attribution_core.models.assets import SAMPLES_DIR

PER_MODEL = 6


def _distinct_label_rows(labels: np.ndarray, count: int) -> list[int]:
    """The first row of each label in turn, so the samples cover several classes."""
    chosen: list[int] = []
    for label in list(dict.fromkeys(labels.tolist())):
        chosen.append(int(np.flatnonzero(labels == label)[0]))
        if len(chosen) == count:
            break
    return chosen


def digits_samples() -> list[dict[str, Any]]:
    split = digits_split()
    folder = SAMPLES_DIR / "digits"
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for row in _distinct_label_rows(split.y_test, PER_MODEL):
        label = int(split.y_test[row])
        pixels = np.round(split.x_test[row, 0] * 255.0).astype(np.uint8)
        file = f"digits/digit_{label}_heldout{row}.png"
        Image.fromarray(pixels, mode="L").save(SAMPLES_DIR / file)
        entries.append({"file": file, "label": label, "label_name": str(label)})
    return entries


def shapes_samples() -> list[dict[str, Any]]:
    from attribution_core.datasets.shapes import generate_shapes
    from attribution_core.models.builtin_image import SHAPES_CLASSES, SHAPES_HELD_OUT

    data = generate_shapes(*SHAPES_HELD_OUT)
    folder = SAMPLES_DIR / "shapes"
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for row in [*_distinct_label_rows(data.labels, len(SHAPES_CLASSES)), 4, 5]:
        label = int(data.labels[row])
        pixels = np.round(data.images[row].transpose(1, 2, 0) * 255.0).astype(np.uint8)
        stem = f"shapes/{SHAPES_CLASSES[label]}_heldout{row}"
        Image.fromarray(pixels, mode="RGB").save(SAMPLES_DIR / f"{stem}.png")
        Image.fromarray(data.masks[row].astype(np.uint8) * 255, mode="L").save(
            SAMPLES_DIR / f"{stem}_mask.png")
        entries.append({"file": f"{stem}.png", "mask": f"{stem}_mask.png", "label": label,
                        "label_name": SHAPES_CLASSES[label]})
    return entries


def row_samples() -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, data in (("breast_cancer_mlp", "breast_cancer"), ("wine_mlp", "wine"),
                       ("diabetes_mlp", "diabetes")):
        split = tabular_split(data)  # type: ignore[arg-type]
        regression = data == "diabetes"
        picks = (list(range(PER_MODEL)) if regression else
                 _distinct_label_rows(split.y_test, len(split.class_names)))
        picks += [i for i in range(len(split.y_test)) if i not in picks][:PER_MODEL - len(picks)]
        rows[name] = [{
            "name": f"held-out row {i}",
            "label": float(split.y_test[i]) if regression else int(split.y_test[i]),
            "label_name": None if regression else split.class_names[int(split.y_test[i])],
            "values": dict(zip(split.feature_names, split.x_test[i].tolist(), strict=True)),
        } for i in picks]
    return rows


def _write(file_name: str, content: dict[str, Any]) -> None:
    path = SAMPLES_DIR / file_name
    existing = json.loads(path.read_text()) if path.is_file() else {}
    existing.update(content)
    path.write_text(json.dumps(existing, indent=1) + "\n")


def main() -> None:
    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    images: dict[str, Any] = {"digits_cnn": digits_samples()}
    with contextlib.suppress(ImportError):
        images["shapes_cnn"] = shapes_samples()
    _write("images.json", images)
    _write("rows.json", row_samples())
    try:
        from attribution_core.train.text_samples import text_samples
    except ImportError:
        pass
    else:
        _write("texts.json", text_samples())
    print(f"samples written to {SAMPLES_DIR}")


if __name__ == "__main__":
    main()
