"""CUDA: the same numbers as the CPU, results on the caller's device, a context that survives
bad requests, concurrent sessions that do not disturb each other.

Every test needs a CUDA device (marker ``cuda``); they are skipped, with the reason, where none
is present. Float64 fixtures, so "equal" means equal to rounding, not "close".
"""

from __future__ import annotations

import threading

import pytest
import torch

from attribution_core import (
    ResultCache,
    gradient_shap,
    ig2,
    integrated_gradients,
    pick_device,
    saliency,
    smoothgrad,
)
from tests.unit.models_for_tests import mlp, small_cnn

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().cpu() - b.detach().cpu()).abs().max())


def test_the_core_picks_cuda_when_present() -> None:
    assert pick_device().type == "cuda", "with a GPU present the default device is CUDA"


@pytest.mark.parametrize("n_steps", [32, "auto"])
def test_ig_on_cuda_equals_ig_on_cpu(n_steps: int | str) -> None:
    model, x = small_cnn(seed=4), torch.randn(3, 1, 8, 8, dtype=torch.float64,
                                             generator=torch.Generator().manual_seed(0))
    cpu = integrated_gradients(model, x, target=[0, 1, 2], n_steps=n_steps)
    gpu = integrated_gradients(model.cuda(), x.cuda(), target=[0, 1, 2], n_steps=n_steps)
    model.cpu()
    assert gpu.attributions.device.type == "cuda", "the result stays on the input's device"
    assert _max_difference(gpu.attributions, cpu.attributions) < 1e-10, \
        f"CUDA and CPU maps differ (n_steps={n_steps})"
    assert torch.equal(gpu.n_evaluations.cpu(), cpu.n_evaluations), \
        "auto spends the same evaluations on both devices"
    assert _max_difference(gpu.delta, cpu.delta) < 1e-10, "the same completeness error"


def test_ig2_on_cuda_equals_ig2_on_cpu() -> None:
    model = mlp(seed=5, n_in=12, n_out=3)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 12, dtype=torch.float64, generator=generator)
    references = torch.randn(4, 12, dtype=torch.float64, generator=generator)
    cpu = ig2(model, x, references, target=[0, 2], n_steps=16)
    gpu = ig2(model.cuda(), x.cuda(), references.cuda(), target=[0, 2], n_steps=16)
    model.cpu()
    assert gpu.attributions.device.type == "cuda", "IG2's result stays on the input's device"
    assert _max_difference(gpu.attributions, cpu.attributions) < 1e-9, "IG2: CUDA == CPU"
    assert _max_difference(gpu.counterfactuals, cpu.counterfactuals) < 1e-9, \
        "the same GradCF counterfactuals"


def test_comparison_methods_on_cuda_equal_the_cpu() -> None:
    model = small_cnn(seed=6)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=generator)
    baselines = torch.randn(5, 1, 8, 8, dtype=torch.float64, generator=generator)
    runs = {
        "saliency": lambda m, d: saliency(m, x.to(d), target=1),
        "smoothgrad": lambda m, d: smoothgrad(m, x.to(d), target=1, n_samples=4, seed=3),
        "gradient_shap": lambda m, d: gradient_shap(m, x.to(d), baselines.to(d), target=1,
                                                    n_samples=6, seed=3),
    }
    for name, run in runs.items():
        cpu = run(model, "cpu")
        gpu = run(model.cuda(), "cuda")
        model.cpu()
        assert _max_difference(gpu.attributions, cpu.attributions) < 1e-9, \
            f"{name}: CUDA == CPU (noise drawn from a private CPU generator on both)"


def test_cache_hits_come_back_on_the_callers_device() -> None:
    model, x = mlp(seed=7), torch.randn(2, 10, dtype=torch.float64)
    cache = ResultCache()
    stored = integrated_gradients(model.cuda(), x.cuda(), target=1, n_steps=16, cache=cache)
    model.cpu()
    hit = integrated_gradients(model, x, target=1, n_steps=16, cache=cache)
    assert hit.from_cache, "the same model, input and settings hit the cache across devices"
    assert hit.attributions.device.type == "cpu", "a CPU caller gets CPU tensors from the cache"
    assert _max_difference(hit.attributions, stored.attributions) == 0.0, "the same numbers"
    back = integrated_gradients(model.cuda(), x.cuda(), target=1, n_steps=16, cache=cache)
    model.cpu()
    assert back.attributions.device.type == "cuda", "a CUDA caller gets CUDA tensors"


def test_an_out_of_range_target_is_refused_before_the_gpu_sees_it() -> None:
    model, x = mlp(seed=8).cuda(), torch.randn(2, 10, dtype=torch.float64, device="cuda")
    with pytest.raises(ValueError, match="out of range"):
        integrated_gradients(model, x, target=3, n_steps=8)
    # A device-side assert would have broken the context for every session; it still works.
    result = integrated_gradients(model, x, target=2, n_steps=8)
    torch.cuda.synchronize()
    assert torch.isfinite(result.attributions).all(), "the CUDA context survives the refusal"


def test_concurrent_sessions_on_one_gpu_get_the_numbers_they_get_alone() -> None:
    model = small_cnn(seed=9).cuda()
    inputs = [torch.randn(2, 1, 8, 8, dtype=torch.float64, device="cuda",
                          generator=torch.Generator(device="cuda").manual_seed(i))
              for i in range(4)]
    alone = [integrated_gradients(model, x, target=1, n_steps="auto").attributions
             for x in inputs]
    together: list[torch.Tensor | None] = [None] * len(inputs)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            together[index] = integrated_gradients(model, inputs[index], target=1,
                                                   n_steps="auto").attributions
        except BaseException as error:  # reported below, with the thread's index
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"a concurrent run failed: {errors!r}"
    for index, (single, shared) in enumerate(zip(alone, together, strict=True)):
        assert shared is not None and torch.equal(single, shared), \
            f"session {index}: the concurrent result differs from the one computed alone"
