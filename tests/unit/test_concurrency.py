"""Shared-server soak: threads hammering one model give exactly the results of solo runs.

Dashboard sessions are threads of one process over one loaded model. IG2 hooks that model for
its whole path walk, so another thread's forward pass (or a deep copy made meanwhile) must never
feed its capture. Bounded in time: N threads x a few seconds.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable

import pytest
import torch
from torch import nn

from attribution_core import ig2, integrated_gradients

SOAK_SECONDS = 4.0
THREADS_PER_KIND = 2


class TwoHeads(nn.Module):
    """A small float32 CNN whose representation layer (``head``) IG2 hooks."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(11)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(3)
        self.hidden = nn.Linear(36, 16)
        self.head = nn.Linear(16, 5)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.head(torch.tanh(self.hidden(self.pool(h).flatten(1))))


@pytest.fixture(scope="module")
def shared() -> TwoHeads:
    return TwoHeads().eval()


def _inputs(seed: int, rows: int) -> torch.Tensor:
    return torch.rand(rows, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _ig(model: nn.Module) -> torch.Tensor:
    return integrated_gradients(model, _inputs(1, 2), target=3, n_steps=16,
                                batch_size=8).attributions


def _ig_auto(model: nn.Module) -> torch.Tensor:
    return integrated_gradients(model, _inputs(2, 1), target=1, n_steps="auto",
                                batch_size=16).attributions


def _ig2(model: nn.Module) -> torch.Tensor:
    return ig2(model, _inputs(3, 2), _inputs(4, 3), target=2, n_steps=12, batch_size=4,
               clip=(0.0, 1.0)).attributions


def test_concurrent_runs_equal_solo_runs(shared: TwoHeads) -> None:
    jobs: dict[str, Callable[[nn.Module], torch.Tensor]] = {
        "ig": _ig, "ig_auto": _ig_auto, "ig2": _ig2}
    solo = {name: job(shared) for name, job in jobs.items()}
    stop_at = time.monotonic() + SOAK_SECONDS
    runs = {name: 0 for name in jobs}
    wrong: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def explain(name: str) -> None:
        try:
            while time.monotonic() < stop_at:
                value = jobs[name](shared)
                with lock:
                    runs[name] += 1
                    if not torch.equal(value, solo[name]):
                        wrong.append(f"{name}: max diff {float((value - solo[name]).abs().max())}")
        except BaseException as error:  # reported below, never swallowed
            errors.append(error)

    def plain_forwards() -> None:
        try:
            batch = _inputs(9, 34)  # a row count no explanation uses
            while time.monotonic() < stop_at:
                with torch.no_grad():
                    shared(batch)
        except BaseException as error:
            errors.append(error)

    def deep_copies() -> None:
        try:
            while time.monotonic() < stop_at:
                duplicate = copy.deepcopy(shared)  # may inherit a live IG2 hook
                with torch.no_grad():
                    duplicate(_inputs(10, 7))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=explain, args=(name,))
               for name in jobs for _ in range(THREADS_PER_KIND)]
    threads += [threading.Thread(target=plain_forwards) for _ in range(2)]
    threads.append(threading.Thread(target=deep_copies))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SOAK_SECONDS + 60)
    assert not errors, f"no run may raise under concurrency: {errors[:3]!r}"
    assert all(count > 0 for count in runs.values()), f"every kind of run must have run: {runs}"
    assert not wrong, f"{len(wrong)} of {sum(runs.values())} concurrent runs differ: {wrong[:3]}"


def test_ig2_hook_ignores_other_threads_and_copies(shared: TwoHeads) -> None:
    """While IG2 walks, a forward of the same module in another thread and of a deep copy in
    this one happen between IG2's own calls: neither may reach its capture."""
    baseline = _ig2(shared)
    interference = threading.Event()

    class Meddling(nn.Module):
        """Forward = the shared model, after another thread and a copy have run it."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x)
            worker = threading.Thread(target=lambda: self.inner(_inputs(12, 5)))
            worker.start()
            worker.join()
            copy.deepcopy(self.inner)(_inputs(13, 6))
            interference.set()
            return out

    meddling = Meddling(shared)
    result = ig2(meddling, _inputs(3, 2), _inputs(4, 3), representation="inner.head:input",
                 target=2, n_steps=12, batch_size=4, clip=(0.0, 1.0)).attributions
    assert interference.is_set(), "the other thread and the copy must have run meanwhile"
    assert torch.equal(result, baseline), "foreign forward passes must not reach IG2's capture"
