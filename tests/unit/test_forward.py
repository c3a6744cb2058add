"""module_behind: the one answer to "which nn.Module is behind this forward callable"."""

from __future__ import annotations

import functools

import torch
from torch import nn

from attribution_core.forward import module_behind


class _Plain:
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_module_behind_each_form() -> None:
    model = nn.Linear(2, 2)
    assert module_behind(model) is model, "a module is its own module"
    assert module_behind(model.forward) is model, "a bound method's owner is the module"
    assert module_behind(nn.Sequential(model).forward) is not model, \
        "the owner is the outer module, not the first layer inside it"
    assert module_behind(functools.partial(model, torch.zeros(1, 2))) is None, \
        "a partial does not say which module it calls (the cache needs model_key=)"
    assert module_behind(lambda x: model(x)) is None, "a lambda over a module is not one"
    assert module_behind(_Plain().forward) is None, "a bound method of a non-module is not one"
    assert module_behind(torch.tanh) is None, "a builtin function is not a module"


def test_every_user_answers_through_module_behind() -> None:
    """The engine, the cache and IG2's probe agree on the module behind a bound method."""
    from attribution_core.devices import model_device
    from attribution_core.fingerprints import fingerprint_model

    model = nn.Linear(2, 2).double()
    assert model_device(model.forward, torch.device("meta")) == torch.device("cpu"), \
        "the engine finds the bound method's module and its device"
    assert model_device(lambda x: model(x), torch.device("meta")) == torch.device("meta"), \
        "a lambda falls back to the given device"
    assert fingerprint_model(model.forward).endswith(fingerprint_model(model).split("|")[-1]), \
        "the cache fingerprints the bound method's module weights"
