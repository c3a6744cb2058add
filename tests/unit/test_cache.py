"""Result cache: hits without model calls, misses on any change, survives corrupt entries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attribution_core import ResultCache, fingerprint_model, integrated_gradients
from tests.unit.models_for_tests import CountingModule, mlp


@pytest.fixture()
def model() -> CountingModule:
    return CountingModule(mlp(seed=3))


@pytest.fixture()
def x() -> torch.Tensor:
    return torch.randn(2, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4))


def test_hit_returns_identical_arrays_without_a_forward_call(model, x, tmp_path: Path) -> None:
    cache = ResultCache(disk_dir=tmp_path)
    first = integrated_gradients(model, x, target=1, n_steps=16, cache=cache)
    calls = model.calls
    second = integrated_gradients(model, x, target=1, n_steps=16, cache=cache)
    assert model.calls == calls, "a cache hit must not call the model"
    assert second.from_cache and not first.from_cache, "the result says where it came from"
    assert torch.equal(first.attributions, second.attributions), "identical attributions"
    assert torch.equal(first.delta, second.delta), "identical completeness figures"


def test_disk_hit_from_a_new_process_cache(model, x, tmp_path: Path) -> None:
    first = integrated_gradients(model, x, target=1, n_steps="auto", cache=ResultCache(
        disk_dir=tmp_path))
    calls = model.calls
    again = integrated_gradients(model, x, target=1, n_steps="auto", cache=ResultCache(
        disk_dir=tmp_path))
    assert model.calls == calls, "a fresh cache over the same folder hits on disk"
    assert torch.equal(first.attributions, again.attributions), "disk round trip is exact"
    assert all(torch.equal(a, b) for a, b in zip(first.alphas, again.alphas, strict=True)), (
        "per-explicand grids survive the round trip")
    assert torch.equal(first.convergence_relative_delta, again.convergence_relative_delta), (
        "the convergence history survives the round trip")
    assert again.n_steps == "auto" and again.quadrature == "adaptive_trapezoid", "metadata kept"


@pytest.mark.parametrize("change", [
    {"target": 2}, {"n_steps": 17}, {"method": "riemann_middle"}, {"baselines": 0.5},
    {"n_steps": "auto"}, {"inputs": "perturbed"}, {"batch_size": None},
])
def test_any_parameter_change_misses(model, x, change: dict) -> None:
    cache = ResultCache()
    base_args = {"target": 1, "n_steps": 16, "method": "gausslegendre", "baselines": None}
    integrated_gradients(model, x, cache=cache, **base_args)
    calls = model.calls
    args = {**base_args, **change}
    inputs = x + 1e-9 if args.pop("inputs", None) == "perturbed" else x
    args.pop("batch_size", None)
    integrated_gradients(model, inputs, cache=cache, batch_size=5, **args)
    if change == {"batch_size": None}:
        assert model.calls == calls, "batch size does not change the result: it must hit"
    else:
        assert model.calls > calls, f"changing {change} must miss the cache"


def test_changed_weights_miss(model, x) -> None:
    cache = ResultCache()
    integrated_gradients(model, x, target=1, n_steps=8, cache=cache)
    calls = model.calls
    with torch.no_grad():
        model.inner[0].weight[0, 0] += 1e-6
    integrated_gradients(model, x, target=1, n_steps=8, cache=cache)
    assert model.calls > calls, "an in-place weight change must change the model's key"


def test_corrupt_disk_entry_is_ignored_and_replaced(model, x, tmp_path: Path) -> None:
    integrated_gradients(model, x, target=1, n_steps=8, cache=ResultCache(disk_dir=tmp_path))
    (entry,) = list(tmp_path.glob("*.safetensors"))
    entry.write_bytes(b"\x00garbage" * 10)
    calls = model.calls
    res = integrated_gradients(model, x, target=1, n_steps=8, cache=ResultCache(disk_dir=tmp_path))
    assert model.calls > calls and not res.from_cache, "a corrupt entry is a miss, not a crash"
    assert torch.isfinite(res.attributions).all(), "the recomputed result is sound"


def test_memory_lru_and_disk_bound(model, x, tmp_path: Path) -> None:
    cache = ResultCache(memory_items=2, disk_dir=tmp_path, disk_bytes=3000)
    for steps in (4, 5, 6):
        integrated_gradients(model, x, target=1, n_steps=steps, cache=cache)
    assert len(cache) == 2, "memory keeps the most recent entries only"
    total = sum(p.stat().st_size for p in tmp_path.glob("*.safetensors"))
    assert total <= 3000, f"disk store must stay within its bound, holds {total} bytes"


def test_plain_callable_needs_a_model_key(x) -> None:
    inner = mlp()
    with pytest.raises(ValueError, match="model_key"):
        integrated_gradients(lambda z: inner(z), x, target=0, cache=ResultCache())
    res = integrated_gradients(lambda z: inner(z), x, target=0, cache=ResultCache(),
                               model_key="mlp-v1")
    assert res.attributions.shape == x.shape, "with a model key, callables are cached"


def test_fingerprint_depends_on_weights_only() -> None:
    assert fingerprint_model(mlp(seed=1)) == fingerprint_model(mlp(seed=1)), "same weights"
    assert fingerprint_model(mlp(seed=1)) != fingerprint_model(mlp(seed=2)), "other weights"
