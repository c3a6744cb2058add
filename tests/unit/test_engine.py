"""Engine: device choice, batch planning, out-of-memory back-off, target selection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attribution_core import integrated_gradients, pick_device
from attribution_core.devices import describe_device, device_lock
from attribution_core.engine import CPU_MAX_ROWS, GradientEngine
from attribution_core.model_outputs import select_target
from tests.unit.models_for_tests import mlp, small_cnn


def test_device_is_cuda_when_present_else_cpu() -> None:
    device = pick_device()
    expected = "cuda" if torch.cuda.is_available() else device.type
    assert device.type == expected, f"CUDA must win when present, got {device}"
    if not torch.cuda.is_available():
        assert device.type in ("cpu", "mps"), "without CUDA, MPS or the CPU"
        with pytest.raises(RuntimeError, match="CUDA"):
            pick_device("cuda")
    assert describe_device(torch.device("cpu")).startswith("CPU"), "CPU label for people"


class FlakyMemory(nn.Module):
    """Raises an out-of-memory error for chunks above ``limit`` rows, like a full GPU."""

    def __init__(self, inner: nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit, self.refused = inner, limit, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit and torch.is_grad_enabled():
            self.refused += 1
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_out_of_memory_halves_the_batch_and_gives_the_same_result() -> None:
    inner = small_cnn(seed=1)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    reference = integrated_gradients(inner, x, target=0, n_steps=16, batch_size=32)
    flaky = FlakyMemory(inner, limit=10)
    res = integrated_gradients(flaky, x, target=0, n_steps=16, batch_size=32)
    assert flaky.refused >= 1, "the test must actually hit the memory error"
    assert torch.allclose(res.attributions, reference.attributions, atol=1e-13), (
        "back-off must not change the result"
    )


def test_other_errors_are_not_swallowed() -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("shape mismatch in layer 3")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        integrated_gradients(Broken(), torch.randn(1, 3), target=0, n_steps=4)


def test_batch_plan_fits_memory_and_caps() -> None:
    engine = GradientEngine(small_cnn(), 1, torch.device("cpu"), target=torch.tensor([0]))
    plan = engine.plan_batch(torch.randn(1, 1, 8, 8, dtype=torch.float64), torch.tensor([0]))
    assert 1 <= plan.rows <= CPU_MAX_ROWS, f"rows must be within [1, cap], got {plan.rows}"
    assert plan.bytes_per_row > 8 * 8 * 8, "activation bytes of one row are measured"
    assert plan.rows * plan.bytes_per_row <= max(plan.budget_bytes, plan.bytes_per_row), (
        "a planned batch fits the memory budget"
    )


def test_automatic_batch_size_matches_fixed() -> None:
    model, x = mlp(seed=6), torch.randn(3, 10, dtype=torch.float64)
    auto = integrated_gradients(model, x, target=2, n_steps=40)
    fixed = integrated_gradients(model, x, target=2, n_steps=40, batch_size=13)
    assert torch.allclose(auto.attributions, fixed.attributions, atol=1e-13), "same result"


def test_select_target_shapes() -> None:
    logits = torch.arange(6.0).view(3, 2)
    assert torch.equal(select_target(logits, torch.tensor([1, 0, 1])), torch.tensor([1.0, 2, 5])
                       ), "gathers one column per row"
    assert torch.equal(select_target(torch.ones(3, 1), None), torch.ones(3)), "[B, 1] is scalar"
    with pytest.raises(ValueError, match="target"):
        select_target(logits, None)

    class WithLogits:
        def __init__(self, logits: torch.Tensor) -> None:
            self.logits = logits

    assert torch.equal(select_target(WithLogits(logits), torch.tensor([0, 0, 0])),
                       torch.tensor([0.0, 2, 4])), "Hugging Face outputs expose .logits"
    with pytest.raises(TypeError, match="expected a tensor"):
        select_target("nonsense", None)


def test_device_lock_is_reentrant_and_cpu_is_free() -> None:
    with device_lock(torch.device("cpu")), device_lock(torch.device("cpu")):
        pass
    with device_lock(torch.device("cuda:0")), device_lock(torch.device("cuda:0")):
        pass  # the accelerator lock is an RLock: nested use in one thread must not deadlock


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    model, x = small_cnn(seed=3), torch.randn(4, 1, 8, 8, dtype=torch.float64)
    cpu = integrated_gradients(model, x, target=1, n_steps=32)
    gpu = integrated_gradients(model.cuda(), x.cuda(), target=1, n_steps=32)
    assert gpu.attributions.device.type == "cuda", "results stay on the input's device"
    assert torch.allclose(gpu.attributions.cpu(), cpu.attributions, atol=1e-10), "CUDA == CPU"
