"""The image page's baseline check reads the model's outputs by its declared kind: a model that
already outputs probabilities (an uploaded ONNX classifier) is not softmaxed a second time."""

from __future__ import annotations

import torch
from torch import nn

from attribution_core.models.spec import LoadedModel, ModelSpec
from dashboard.image.logic import check_baseline


class Fixed(nn.Module):
    """Ten outputs that do not depend on the image: 0.948 for class 3, the rest shared."""

    def __init__(self, probabilities: bool) -> None:
        super().__init__()
        values = torch.full((10,), 0.052 / 9)
        values[3] = 0.948
        self.register_buffer("values", values if probabilities else values.log())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.values.expand(x.shape[0], -1) + 0 * x.flatten(1).sum(1, keepdim=True)


def _loaded(probabilities: bool) -> LoadedModel:
    spec = ModelSpec(name="fixed", title="Fixed", modality="image",
                     output_kind="classification", class_names=tuple(map(str, range(10))),
                     loader=lambda device: None,  # type: ignore[arg-type, return-value]
                     metadata={"outputs_probabilities": probabilities})
    module = Fixed(probabilities)
    return LoadedModel(spec=spec, module=module, forward=module, weights_hash="h",
                       device=torch.device("cpu"))


def test_a_confident_baseline_of_a_probability_model_is_not_neutral() -> None:
    check = check_baseline(_loaded(probabilities=True), torch.zeros(1, 1, 4, 4), target=0)
    assert check.predicted_class == 3, "class 3 is the baseline's prediction"
    assert abs(check.predicted_probability - 0.948) < 1e-6, \
        f"the model's own probability is shown, got {check.predicted_probability:.3f}"
    assert not check.neutral, "a 0.948-confident baseline is not neutral"


def test_logits_are_still_softmaxed() -> None:
    check = check_baseline(_loaded(probabilities=False), torch.zeros(1, 1, 4, 4), target=0)
    assert abs(check.predicted_probability - 0.948) < 1e-5 and not check.neutral, \
        f"log-probabilities as logits give back 0.948, got {check.predicted_probability:.3f}"
