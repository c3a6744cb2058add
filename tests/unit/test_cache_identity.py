"""A cached result is served only for the same computation: same structure (layer types,
extra_repr, training flag), same numerical context (autocast), same rule version; and what the
cache hands out is a copy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from attribution_core import ResultCache, integrated_gradients
from attribution_core.rule_versions import RULE_VERSIONS


def _net(activation: nn.Module, dropout: float = 0.0) -> nn.Sequential:
    generator = torch.Generator().manual_seed(11)
    net = nn.Sequential(nn.Linear(6, 16), activation, nn.Dropout(dropout), nn.Linear(16, 2))
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return net.eval()


def _x() -> torch.Tensor:
    return torch.randn(3, 6, generator=torch.Generator().manual_seed(12))


def _same_weights(source: nn.Module, target: nn.Module) -> nn.Module:
    target.load_state_dict(source.state_dict())
    return target


@pytest.mark.parametrize("model_key", [None, "weights-sha"], ids=["fingerprint", "model_key"])
@pytest.mark.parametrize("swap", ["relu_to_tanh", "softplus_beta"])
def test_another_layer_with_the_same_weights_misses(swap: str, model_key: str | None) -> None:
    first, second = {
        "relu_to_tanh": (nn.ReLU(), nn.Tanh()),
        "softplus_beta": (nn.Softplus(beta=1.0), nn.Softplus(beta=10.0)),
    }[swap]
    before = _net(first)
    after = _same_weights(before, _net(second))
    cache = ResultCache()
    integrated_gradients(before, _x(), target=0, n_steps=16, cache=cache, model_key=model_key)
    served = integrated_gradients(after, _x(), target=0, n_steps=16, cache=cache,
                                  model_key=model_key)
    fresh = integrated_gradients(after, _x(), target=0, n_steps=16, model_key=model_key)
    assert not served.from_cache, f"{swap}: the same weights in another structure must miss"
    torch.testing.assert_close(served.attributions, fresh.attributions,
                               msg=f"{swap}: the served map is the new model's own")


def test_training_mode_is_part_of_the_model() -> None:
    model = _net(nn.ReLU(), dropout=0.5)
    cache = ResultCache()
    integrated_gradients(model, _x(), target=0, n_steps=8, cache=cache)
    model.train()
    served = integrated_gradients(model, _x(), target=0, n_steps=8, cache=cache)
    assert not served.from_cache, "a dropout model in training mode is another computation"


def test_autocast_state_is_part_of_the_key() -> None:
    model = _net(nn.Tanh())
    cache = ResultCache()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = integrated_gradients(model, _x(), target=0, n_steps=16, cache=cache)
    served = integrated_gradients(model, _x(), target=0, n_steps=16, cache=cache)
    fresh = integrated_gradients(model, _x(), target=0, n_steps=16)
    assert not served.from_cache, "an fp32 call is never served a bf16 result"
    assert not torch.equal(low.attributions, fresh.attributions), \
        "the premise: bf16 autocast changes the numbers"
    torch.testing.assert_close(served.attributions, fresh.attributions,
                               msg="the fp32 call gets the fp32 map")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        again = integrated_gradients(model, _x(), target=0, n_steps=16, cache=cache)
    assert again.from_cache and torch.equal(again.attributions, low.attributions), \
        "the same bf16 call still hits"


def test_a_call_counter_does_not_defeat_the_cache() -> None:
    from tests.unit.models_for_tests import CountingModule, mlp

    model, cache = CountingModule(mlp(seed=4)), ResultCache()
    x = _x().double().repeat(1, 2)[:, :10]
    integrated_gradients(model, x, target=0, n_steps=8, cache=cache)
    again = integrated_gradients(model, x, target=0, n_steps=8, cache=cache)
    assert again.from_cache, "ints and lists (counters) are not configuration"


@pytest.mark.parametrize("tier", ["memory", "disk"])
def test_results_handed_out_are_copies(tier: str, tmp_path: Path) -> None:
    model = _net(nn.Tanh())
    cache = ResultCache(disk_dir=tmp_path if tier == "disk" else None)
    computed = integrated_gradients(model, _x(), target=0, n_steps=8, cache=cache)
    truth = computed.attributions.clone()
    computed.attributions.mul_(0)  # the caller edits what it computed
    if tier == "disk":
        cache = ResultCache(disk_dir=tmp_path)  # a new process over the same folder
    first = integrated_gradients(model, _x(), target=0, n_steps=8, cache=cache)
    assert first.from_cache and torch.equal(first.attributions, truth), \
        "editing the computed result did not rewrite the entry"
    first.attributions.add_(1.0)
    first.alphas[0].mul_(0)
    second = integrated_gradients(model, _x(), target=0, n_steps=8, cache=cache)
    assert torch.equal(second.attributions, truth), "editing a hit did not rewrite the entry"
    assert float(second.alphas[0].max()) > 0, "tuples of tensors are copies too"


def test_a_bumped_rule_version_misses_on_disk(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    model = _net(nn.Tanh())
    integrated_gradients(model, _x(), target=0, n_steps="auto", tolerance=0.05,
                         cache=ResultCache(disk_dir=tmp_path))
    hit = integrated_gradients(model, _x(), target=0, n_steps="auto", tolerance=0.05,
                               cache=ResultCache(disk_dir=tmp_path))
    assert hit.from_cache, "the premise: the same rule hits on disk"
    monkeypatch.setitem(RULE_VERSIONS, "integrated_gradients.auto",
                        RULE_VERSIONS["integrated_gradients.auto"] + 1)
    after = integrated_gradients(model, _x(), target=0, n_steps="auto", tolerance=0.05,
                                 cache=ResultCache(disk_dir=tmp_path))
    assert not after.from_cache, "a result of an older rule is never served"
    fixed = integrated_gradients(model, _x(), target=0, n_steps=8,
                                 cache=ResultCache(disk_dir=tmp_path))
    assert not fixed.from_cache, "the fixed rule has its own version and key"


def test_every_cached_kind_has_a_version() -> None:
    from attribution_core.cache import make_key

    with pytest.raises(ValueError, match="RULE_VERSIONS"):
        make_key("a_new_method", "model", {}, {})
