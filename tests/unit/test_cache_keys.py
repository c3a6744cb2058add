"""Cache keys that cannot collide or go stale, and a cache that survives its disk failing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from attribution_core import ResultCache, ig2, integrated_gradients
from attribution_core.cache import result_bytes
from attribution_core.fingerprints import callable_identity, fingerprint_model
from tests.unit.models_for_tests import mlp


class TwoForwards(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = mlp(seed=2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.layer(x)

    def doubled(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return 2 * self.layer(x)


class Normalised(nn.Module):
    """Mean/std as non-persistent buffers: not in the state dict, yet they change f."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp(seed=5)
        self.register_buffer("mean", torch.zeros(10, dtype=torch.float64), persistent=False)
        self.register_buffer("std", torch.ones(10, dtype=torch.float64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x - self.mean) / self.std)


class WithArray(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = mlp(seed=6)

    def forward(self, x: torch.Tensor, offsets: object = None) -> torch.Tensor:
        shift = torch.as_tensor(np.asarray(offsets).reshape(-1)[:10], dtype=x.dtype)
        return self.inner(x + shift)


@pytest.fixture()
def x() -> torch.Tensor:
    return torch.randn(2, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4))


def test_two_bound_methods_of_one_module_do_not_share_an_entry(x: torch.Tensor) -> None:
    model, cache = TwoForwards(), ResultCache()
    plain = integrated_gradients(model.forward, x, target=0, n_steps=8, cache=cache)
    doubled = integrated_gradients(model.doubled, x, target=0, n_steps=8, cache=cache)
    assert not doubled.from_cache, "m.doubled must not hit m.forward's entry"
    torch.testing.assert_close(doubled.attributions, 2 * plain.attributions,
                               msg="m.doubled's attributions are twice m.forward's")


def test_two_callable_representations_do_not_share_an_entry(x: torch.Tensor) -> None:
    model, cache = mlp(seed=3), ResultCache()
    refs = torch.randn(3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    first_layer = lambda z: model[0](z)  # noqa: E731
    second_layer = lambda z: model[2](torch.relu(model[0](z)))  # noqa: E731
    assert callable_identity(first_layer) != callable_identity(second_layer), \
        "two lambdas with different code must have different identities"
    a = ig2(model, x, refs, representation=first_layer, target=0, n_steps=6, cache=cache)
    b = ig2(model, x, refs, representation=second_layer, target=0, n_steps=6, cache=cache)
    assert not b.from_cache, "a different representation callable must miss"
    assert not torch.equal(a.attributions, b.attributions), "and give a different result"


def test_long_arrays_differing_in_the_middle_do_not_collide(x: torch.Tensor) -> None:
    model, cache = WithArray(), ResultCache()
    offsets = np.zeros(5000)
    other = offsets.copy()
    other[2500] = 1.0  # repr() of both arrays is the same: "[0. 0. 0. ... 0. 0. 0.]"
    assert repr(offsets) == repr(other), "the premise: repr elides the middle"
    integrated_gradients(model, x, target=0, n_steps=8, cache=cache,
                         forward_kwargs={"offsets": [offsets]})
    again = integrated_gradients(model, x, target=0, n_steps=8, cache=cache,
                                 forward_kwargs={"offsets": [other]})
    assert not again.from_cache, "arrays nested in kwargs are hashed by content"


def test_in_place_data_edit_is_noticed(x: torch.Tensor) -> None:
    model, cache = mlp(seed=7), ResultCache()
    before = integrated_gradients(model, x, target=0, n_steps=8, cache=cache)
    with torch.no_grad():
        model[0].weight.data.mul_(1.5)  # bumps no version counter
    after = integrated_gradients(model, x, target=0, n_steps=8, cache=cache)
    assert not after.from_cache, "a .data edit changes the fingerprint"
    assert not torch.equal(before.attributions, after.attributions), "and the result"


def test_non_persistent_buffers_are_fingerprinted(x: torch.Tensor) -> None:
    model, cache = Normalised(), ResultCache()
    first = fingerprint_model(model)
    integrated_gradients(model, x, target=0, n_steps=8, cache=cache)
    model.mean.fill_(0.3)
    assert fingerprint_model(model) != first, "a non-persistent buffer is part of the model"
    again = integrated_gradients(model, x, target=0, n_steps=8, cache=cache)
    assert not again.from_cache, "so changing it misses"


def test_uncacheable_kwargs_skip_the_cache_with_a_warning(x: torch.Tensor) -> None:
    model, cache = WithArray(), ResultCache()

    class Opaque:
        def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
            return np.zeros(10)

    with pytest.warns(UserWarning, match="cannot be hashed by content"):
        result = integrated_gradients(model, x, target=0, n_steps=8, cache=cache,
                                      forward_kwargs={"offsets": Opaque()})
    assert len(cache) == 0 and not result.from_cache, "nothing stored under a guessed key"


def test_memory_and_disk_hits_come_back_as_computed(x: torch.Tensor, tmp_path: Path) -> None:
    model = mlp(seed=8)
    computed = integrated_gradients(model, x, target=0, n_steps=8,
                                    cache=ResultCache(disk_dir=tmp_path))
    from_disk = integrated_gradients(model, x, target=0, n_steps=8,
                                     cache=ResultCache(disk_dir=tmp_path))
    assert from_disk.from_cache, "a fresh cache over the same folder hits on disk"
    for name in ("attributions", "delta", "f_inputs", "baselines"):
        value = getattr(from_disk, name)
        assert value.device == x.device and value.dtype == getattr(computed, name).dtype, \
            f"{name} comes back on the caller's device with its dtype"


def test_disk_failures_fall_back_to_memory(x: torch.Tensor, tmp_path: Path) -> None:
    model = mlp(seed=9)
    folder = tmp_path / "cache"
    cache = ResultCache(disk_dir=folder)
    folder.rmdir()  # gone after start-up
    first = integrated_gradients(model, x, target=0, n_steps=8, cache=cache)
    again = integrated_gradients(model, x, target=0, n_steps=8, cache=cache)
    assert again.from_cache, "the memory tier still serves"
    assert torch.equal(first.attributions, again.attributions), "identical result"
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        read_only = ResultCache(disk_dir=locked)
        integrated_gradients(model, x, target=1, n_steps=8, cache=read_only)
        assert read_only.disk_error is not None, "a failed write is recorded, not raised"
    unusable = tmp_path / "a-file"
    unusable.write_text("not a folder")
    broken = ResultCache(disk_dir=unusable)
    assert broken.disk_error is not None, "an unusable folder is reported at start-up"
    result = integrated_gradients(model, x, target=2, n_steps=8, cache=broken)
    assert torch.isfinite(result.attributions).all(), "and the explanation still runs"


def test_memory_tier_is_bounded_by_bytes(x: torch.Tensor) -> None:
    model = mlp(seed=10)
    one = integrated_gradients(model, x, target=0, n_steps=8)
    budget = int(result_bytes(one) * 2.5)
    cache = ResultCache(memory_items=100, memory_bytes=budget)
    for target in range(3):
        integrated_gradients(model, x, target=target, n_steps=8, cache=cache)
    assert len(cache) == 2 and cache.held_bytes <= budget, \
        f"{len(cache)} entries, {cache.held_bytes} bytes held for a budget of {budget}"
