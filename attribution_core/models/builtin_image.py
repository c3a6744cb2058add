"""Built-in image models: the digits CNN (real 8x8 digits) and the shapes CNN (generated scenes).

Both take pixels in [0, 1] (``[B, C, H, W]``), so the black baseline is zeros and the IG2 input
box is [0, 1]. The reference pools are the held-out splits (labels included).
"""

from __future__ import annotations

from functools import lru_cache, partial

import torch
from torch import nn

from attribution_core.models.architectures import DigitsCNN, ShapesCNN
from attribution_core.models.assets import (
    builtin_status,
    load_builtin_weights,
    read_metadata,
    weights_path,
)
from attribution_core.models.imaging import pil_to_unit_tensor, unit_tensor_to_display
from attribution_core.models.samples import image_samples
from attribution_core.models.spec import LoadedModel, ModelSpec, ReferencePool

IMAGE_BASELINES = ("black", "white", "blurred", "uniform_noise", "dataset_mean")
SHAPES_CLASSES = ("circle", "square", "triangle", "cross")
SHAPES_HELD_OUT = (2000, 1)  # (count, generator seed) of the shapes held-out set


@lru_cache(maxsize=1)
def digits_pool() -> ReferencePool:
    from attribution_core.datasets.splits import digits_split

    split = digits_split()
    return ReferencePool(
        torch.tensor(split.x_test, dtype=torch.float32),
        torch.tensor(split.y_test, dtype=torch.long),
        {"split": "held-out", "dataset_mean": torch.tensor(
            split.x_train.mean(axis=0, keepdims=True), dtype=torch.float32)},
    )


@lru_cache(maxsize=1)
def shapes_pool() -> ReferencePool:
    from attribution_core.datasets.shapes import generate_shapes

    data = generate_shapes(*SHAPES_HELD_OUT)
    return ReferencePool(
        torch.from_numpy(data.images[:500]), torch.from_numpy(data.labels[:500]).long(),
        {"split": "held-out", "masks": torch.from_numpy(data.masks[:500]),
         "dataset_mean": torch.from_numpy(data.images.mean(axis=0, keepdims=True))},
    )


def _load(spec: ModelSpec, module: nn.Module, size: tuple[int, int], channels: int,
          invert_if_light: bool, pool: ReferencePool, device: torch.device) -> LoadedModel:
    digest = load_builtin_weights(spec.name, module)
    module = module.to(device)
    return LoadedModel(
        spec=spec, module=module, forward=module, weights_hash=digest, device=device,
        preprocess=partial(pil_to_unit_tensor, size=size, channels=channels,
                           invert_if_light=invert_if_light),
        postprocess=unit_tensor_to_display,
        extras={"input_size": size, "channels": channels,
                "dataset_mean": pool.extras["dataset_mean"]},
    )


def digits_spec() -> ModelSpec:
    name = "digits_cnn"
    metadata = read_metadata(name)

    def loader(device: torch.device) -> LoadedModel:
        return _load(spec, DigitsCNN(10), (8, 8), 1, True, digits_pool(), device)

    spec = ModelSpec(
        name=name, title="Handwritten digits CNN (8x8, scikit-learn digits)",
        modality="image", output_kind="classification",
        class_names=tuple(str(d) for d in range(10)), loader=loader,
        description=("Small CNN on scikit-learn's 8x8 handwritten digits (real data, pixels "
                     "scaled to [0, 1]). Dark-on-light uploads are inverted automatically."),
        weights_path=weights_path(name), weights_sha256=metadata.get("sha256"),
        default_baseline="black", baselines=IMAGE_BASELINES, representation_module="head",
        input_box=(0.0, 1.0), ig2_step_size=0.03, reference_pool=digits_pool,
        metadata=metadata, status=partial(builtin_status, name),
        samples=partial(image_samples, name),
    )
    return spec


def shapes_spec() -> ModelSpec:
    name = "shapes_cnn"
    metadata = read_metadata(name)

    def loader(device: torch.device) -> LoadedModel:
        return _load(spec, ShapesCNN(len(SHAPES_CLASSES)), (32, 32), 3, False, shapes_pool(),
                     device)

    spec = ModelSpec(
        name=name, title="Shapes CNN (32x32 generated scenes, ground-truth masks)",
        modality="image", output_kind="classification", class_names=SHAPES_CLASSES,
        loader=loader,
        description=("CNN on generated 32x32 RGB scenes: the class is the kind of the single "
                     "red shape; the other shapes are distractors. The generator returns the "
                     "red shape's mask, the ground truth for localisation checks."),
        weights_path=weights_path(name), weights_sha256=metadata.get("sha256"),
        default_baseline="black", baselines=IMAGE_BASELINES, representation_module="head",
        input_box=(0.0, 1.0), ig2_step_size=0.15, reference_pool=shapes_pool,
        metadata=metadata, status=partial(builtin_status, name),
        samples=partial(image_samples, name),
    )
    return spec


def specs() -> list[ModelSpec]:
    return [digits_spec(), shapes_spec()]
