"""Built-in tabular models: MLPs on breast cancer, wine (classification) and diabetes (regression).

The model input is the standardised feature row ``[B, F]`` (training mean and standard deviation
from the metadata); ``preprocess`` takes raw rows and ``postprocess`` maps back to raw values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache, partial
from typing import Any, cast

import numpy as np
import torch

from attribution_core.models.architectures import TabularMLP
from attribution_core.models.assets import (
    builtin_status,
    load_builtin_weights,
    read_metadata,
    weights_path,
)
from attribution_core.models.samples import row_samples
from attribution_core.models.spec import (
    LoadedModel,
    ModelLoadError,
    ModelSpec,
    OutputKind,
    ReferencePool,
)

TABULAR_BASELINES = ("mean", "median", "zeros", "reference_row")
IG2_STEP_SIZES = {"breast_cancer_mlp": 0.08, "wine_mlp": 0.06, "diabetes_mlp": 0.04}
TABULAR_MODELS = {  # model name -> (data set, title)
    "breast_cancer_mlp": ("breast_cancer", "Breast cancer MLP (Wisconsin diagnostic, binary)"),
    "wine_mlp": ("wine", "Wine MLP (3 cultivars)"),
    "diabetes_mlp": ("diabetes", "Diabetes progression MLP (regression)"),
}


class TabularCodec:
    """Raw feature rows <-> standardised model tensors, with the feature names checked."""

    def __init__(self, feature_names: Sequence[str], mean: Sequence[float],
                 std: Sequence[float]) -> None:
        self.feature_names = tuple(feature_names)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)

    def raw_array(self, row: Any) -> np.ndarray:
        """A mapping by feature name, a sequence or an array (1-D or ``[B, F]``) -> ``[B, F]``."""
        if isinstance(row, Mapping):
            missing = [name for name in self.feature_names if name not in row]
            unknown = [name for name in row if name not in self.feature_names]
            if missing or unknown:
                raise ModelLoadError(
                    f"Feature names do not match: missing {missing or 'none'}, "
                    f"unknown {unknown or 'none'}.")
            row = [row[name] for name in self.feature_names]
        try:
            values = np.asarray(row, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ModelLoadError(f"A feature row must hold numbers: {error}") from error
        if values.ndim == 1:
            values = values[None]
        if values.ndim != 2 or values.shape[1] != len(self.feature_names):
            raise ModelLoadError(f"Expected {len(self.feature_names)} features per row, got "
                                 f"shape {tuple(values.shape)}.")
        if not np.isfinite(values).all():
            raise ModelLoadError("A feature row holds NaN or infinite values.")
        return values

    def to_model(self, row: Any) -> torch.Tensor:
        return torch.tensor((self.raw_array(row) - self.mean) / self.std, dtype=torch.float32)

    def to_raw(self, tensor: torch.Tensor) -> np.ndarray:
        data = tensor.detach().cpu().double().numpy()
        return data * self.std + self.mean


@lru_cache(maxsize=3)
def tabular_pool(name: str) -> ReferencePool:
    from attribution_core.datasets.splits import tabular_split

    data, _ = TABULAR_MODELS[name]
    metadata = read_metadata(name)
    split = tabular_split(data)  # type: ignore[arg-type]
    codec = TabularCodec(split.feature_names, metadata["scaler_mean"], metadata["scaler_std"])
    label_dtype = torch.float32 if data == "diabetes" else torch.long
    return ReferencePool(codec.to_model(split.x_test),
                         torch.tensor(split.y_test, dtype=label_dtype),
                         {"split": "held-out", "raw": split.x_test})


def _loader(spec: ModelSpec, device: torch.device) -> LoadedModel:
    metadata = spec.metadata
    if "scaler_mean" not in metadata:
        raise ModelLoadError(f"Built-in model {spec.name!r} has no metadata; run "
                             f"`python -m attribution_core.train.{spec.name}`.")
    names = metadata["feature_names"]
    module = TabularMLP(len(names), 1 if spec.output_kind == "regression" else
                        len(spec.class_names))
    digest = load_builtin_weights(spec.name, module)
    module = module.to(device)
    codec = TabularCodec(names, metadata["scaler_mean"], metadata["scaler_std"])
    as_row = partial(torch.tensor, dtype=torch.float32)
    return LoadedModel(
        spec=spec, module=module, forward=module, weights_hash=digest, device=device,
        preprocess=codec.to_model, postprocess=codec.to_raw,
        extras={
            "feature_names": tuple(names), "units": tuple(metadata["units"]),
            "codec": codec,
            "train_mean_raw": np.asarray(metadata["train_mean_raw"]),
            "train_median_raw": np.asarray(metadata["train_median_raw"]),
            # Baselines in model space ([1, F]): the standardised training mean and median.
            "baseline_tensors": {
                "mean": as_row(metadata["train_mean_standardised"]).unsqueeze(0),
                "median": as_row(metadata["train_median_standardised"]).unsqueeze(0),
                "zeros": codec.to_model(np.zeros(len(names))),
            },
        },
    )


def tabular_spec(name: str) -> ModelSpec:
    _, title = TABULAR_MODELS[name]
    metadata = read_metadata(name)
    output_kind = cast(OutputKind, metadata.get("output_kind", "classification"))
    box = metadata.get("input_box")

    def loader(device: torch.device) -> LoadedModel:
        return _loader(spec, device)

    spec = ModelSpec(
        name=name, title=title, modality="tabular", output_kind=output_kind,
        class_names=tuple(metadata.get("class_names", ())), loader=loader,
        description=metadata.get("data", ""), weights_path=weights_path(name),
        weights_sha256=metadata.get("sha256"), default_baseline="mean",
        baselines=TABULAR_BASELINES, representation_module="head",
        input_box=(float(box[0]), float(box[1])) if box else None,
        ig2_step_size=IG2_STEP_SIZES[name],
        reference_pool=partial(tabular_pool, name), metadata=metadata,
        status=partial(builtin_status, name), samples=partial(row_samples, name),
    )
    return spec


def specs() -> list[ModelSpec]:
    return [tabular_spec(name) for name in TABULAR_MODELS]
