"""A model without reference data is audited on uploaded cases: IG2's references are the other
cases, of another class by the model's own prediction, never the case itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from attribution_core.evaluation import EvaluationInputError, EvaluationSettings, RowItem
from attribution_core.evaluation.case_pool import with_case_pool
from attribution_core.evaluation.cases import image_cases, tabular_cases
from attribution_core.evaluation.runner import evaluate
from attribution_core.evaluation.types import ImageItem
from attribution_core.models.plugin_specs import build_spec


class Brightness(nn.Module):
    """Class 1 when the picture is bright, 0 when dark (logits +/- (mean - 0.5) * 20)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-20.0], [20.0]]))
            self.head.bias.copy_(torch.tensor([10.0, -10.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(1, 2, 3)).unsqueeze(1))


def _picture(level: int, seed: int) -> Image.Image:
    noise = np.random.default_rng(seed).integers(-20, 20, (12, 12, 3))
    return Image.fromarray(np.clip(level + noise, 0, 255).astype(np.uint8))


def test_uploaded_pictures_are_each_others_references() -> None:
    spec = build_spec("upload:test:brightness", Brightness(), "image", input_size=12,
                      class_names=["dark", "bright"], source="upload")
    loaded = spec.loader(torch.device("cpu"))
    items = [ImageItem(f"dark {i}", _picture(40, i)) for i in range(3)] + \
        [ImageItem(f"bright {i}", _picture(215, 10 + i)) for i in range(3)]
    unpooled = image_cases(loaded, items)  # builds: only methods that need references refuse
    with pytest.raises(EvaluationInputError, match="no reference pool"):
        evaluate(loaded, unpooled.cases, EvaluationSettings(methods=("IG2",), ig2_steps=8))
    pooled = with_case_pool(loaded, items)
    assert pooled.spec.reference_pool is not None and loaded.spec.reference_pool is None, \
        "the pool is on a copy of the spec, the model's own spec is unchanged"
    build = image_cases(pooled, items, n_references=2)
    assert len(build.cases) == 6 and not build.skipped, build.skipped
    for case in build.cases:
        refs = case.references
        assert refs is not None and refs.shape[0] == 2, f"{case.case_id}: two references"
        ref_classes = Brightness()(refs).argmax(dim=1)
        assert bool((ref_classes != case.target).all()), \
            f"{case.case_id}: references of the other class ({ref_classes}, {case.target})"
        same = (refs.reshape(2, -1) == case.inputs.reshape(1, -1)).all(dim=1)
        assert not bool(same.any()), f"{case.case_id}: a case is never its own reference"
    result = evaluate(pooled, build.cases, EvaluationSettings(
        methods=("IG", "IG2"), ig_steps=16, ig2_steps=8, ig2_references=2, curve_points=5))
    assert len(result.cases) == 6 and all(
        abs(c.outcome("IG").relative_delta) < 0.01 for c in result.cases), \
        "IG is complete on every uploaded picture"


def test_uploaded_rows_are_references_of_a_tabular_model_without_reference_data() -> None:
    linear = nn.Linear(2, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        linear.bias.zero_()
    spec = build_spec("upload:test:linear", linear, "tabular", feature_names=["a", "b"],
                      source="upload")
    loaded = spec.loader(torch.device("cpu"))
    rows = [RowItem(f"row {i}", {"a": a, "b": float(i)}) for i, a in
            enumerate([-2.0, -1.0, 1.0, 2.0])] + [RowItem("bad", {"a": 1.0})]
    build = tabular_cases(with_case_pool(loaded, rows), rows, n_references=1)
    assert len(build.cases) == 4 and len(build.skipped) == 1, "the incomplete row is named"
    for case in build.cases:
        reference_class = int(linear(case.references).argmax(dim=1)[0])
        assert reference_class != case.target, f"{case.case_id}: another class's row"


def test_a_model_with_reference_data_keeps_its_own() -> None:
    spec = build_spec("upload:test:with_refs", nn.Linear(2, 2), "tabular",
                      feature_names=["a", "b"], reference_data=np.random.default_rng(0).normal(
                          size=(20, 2)), source="upload")
    loaded = spec.loader(torch.device("cpu"))
    assert with_case_pool(loaded, [RowItem("x", {"a": 0.0, "b": 0.0})]) is loaded, \
        "its reference rows stay the references"
