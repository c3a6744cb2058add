"""Training scripts reproduce usable models from their seeds (small budgets; slow ones marked)."""

from __future__ import annotations

import pytest
import torch

from attribution_core.train.common import TrainConfig
from attribution_core.train.tabular import train_tabular


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_digits_cnn_small_budget_is_accurate() -> None:
    from attribution_core.train.digits_cnn import train

    _, metrics = train(TrainConfig(seed=0, epochs=8, batch_size=64, lr=3e-3))
    assert metrics["accuracy"] > 0.93, f"8 epochs should pass 93% held-out, got {metrics}"


@pytest.mark.parametrize(("data", "epochs", "floor"), [
    ("breast_cancer", 10, 0.9), ("wine", 20, 0.9), ("diabetes", 20, 0.25)])
def test_tabular_small_budget_reaches_floor(data: str, epochs: int, floor: float) -> None:
    config = TrainConfig(seed=0, epochs=epochs, batch_size=32, lr=1e-3, weight_decay=1e-2)
    _, metrics, preprocessing = train_tabular(data, config)  # type: ignore[arg-type]
    score = metrics.get("accuracy", metrics.get("r2"))
    assert score is not None and score > floor, f"{data}: {metrics} below {floor}"
    assert len(preprocessing["feature_names"]) == len(preprocessing["scaler_mean"]), "scaler"


def test_same_seed_gives_identical_weights_and_other_seed_differs() -> None:
    config = TrainConfig(seed=3, epochs=3, batch_size=32, lr=1e-3)
    first, _, _ = train_tabular("wine", config)
    second, _, _ = train_tabular("wine", config)
    other, _, _ = train_tabular("wine", TrainConfig(seed=4, epochs=3, batch_size=32, lr=1e-3))
    assert _same_weights(first, second), "a seed must reproduce the weights exactly"
    assert not _same_weights(first, other), "another seed should give other weights"


@pytest.mark.slow
def test_shapes_cnn_small_budget_reaches_floor() -> None:
    from attribution_core.train.shapes_cnn import train

    _, metrics = train(TrainConfig(seed=0, epochs=5, batch_size=64, lr=2e-3), n_train=2000)
    assert metrics["accuracy"] > 0.95, f"shapes small budget: {metrics}"


@pytest.mark.slow
def test_cue_transformer_small_budget_learns_negation() -> None:
    from attribution_core.train.cue_transformer import train

    model, tokenizer, metrics = train(TrainConfig(seed=0, epochs=8, batch_size=64, lr=3e-3),
                                      n_train=2000)
    assert metrics["accuracy"] > 0.9, f"cue transformer small budget: {metrics}"
    batch = tokenizer(["the food was not good .", "the food was good ."])
    with torch.no_grad():
        predicted = model(model.embed(batch["input_ids"]), batch["attention_mask"]).argmax(1)
    assert predicted.tolist() == [0, 1], "negation must flip the cue"
