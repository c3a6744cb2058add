"""The one IG / IG2 run flow (``attribution_core.explain_flow``): the same numbers as calling
the methods step by step, only exact runs cached, the preview handed over before the exact
run, and progress events in the order a page announces them."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from attribution_core import ResultCache, ig2, integrated_gradients, with_convergence
from attribution_core.explain_flow import (
    Ig2Progress,
    Ig2Request,
    IgProgress,
    IgRequest,
    run_ig,
    run_ig2,
)
from attribution_core.methods.ig2 import trust_summary
from tests.unit.models_for_tests import CountingModule, mlp


def _problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 10, generator=generator, dtype=torch.float64)
    return mlp(seed=5), x, torch.zeros_like(x)


def test_ig_flow_equals_the_methods_called_step_by_step() -> None:
    model, x, base = _problem()
    request = IgRequest(model, x, baselines=base, target=[1, 2], n_steps=32,
                        method="riemann_trapezoid", ladder=(4, 8, 16))
    outcome = run_ig(request)
    exact = integrated_gradients(model, x, base, target=[1, 2], n_steps=32,
                                 method="riemann_trapezoid")
    ladder = [integrated_gradients(model, x, base, target=[1, 2], n_steps=s,
                                   method="riemann_trapezoid") for s in (4, 8, 16)]
    expected = with_convergence(exact, ladder[-1])
    torch.testing.assert_close(outcome.result.attributions, expected.attributions, rtol=0,
                               atol=0, msg="the exact map is integrated_gradients' own")
    assert outcome.result.convergence is not None, "a ladder gives the map its convergence"
    torch.testing.assert_close(outcome.result.convergence, expected.convergence, rtol=0, atol=0,
                               msg="convergence against the nearest coarser run (16 steps)")
    assert outcome.result.convergence_reference_steps == 16, "the nearest coarser run is 16"
    assert [r.steps for r in outcome.ladder] == [4, 8, 16], "the ladder's runs in order"
    for run, direct in zip(outcome.ladder, ladder, strict=True):
        assert run.relative_delta == tuple(direct.relative_delta.tolist()), \
            f"ladder point at {run.steps} steps is that run's relative error"
        assert run.n_evaluations == int(direct.n_evaluations[0]), "evaluations of that run"
    assert outcome.preview is None, "no preview without a hook"


def test_no_ladder_leaves_the_result_without_a_convergence_estimate() -> None:
    model, x, base = _problem()
    outcome = run_ig(IgRequest(model, x, baselines=base, target=0, n_steps=16))
    assert outcome.result.convergence is None and outcome.ladder == (), \
        "nothing to compare against: no estimate is claimed"


def test_only_exact_runs_are_cached_and_a_second_run_is_served_from_the_cache() -> None:
    model, x, base = _problem()
    counted = CountingModule(model)
    cache = ResultCache(memory_items=32)
    request = IgRequest(counted, x, baselines=base, target=0, n_steps=16, ladder=(4, 4, 8))
    seen: list[Any] = []
    first = run_ig(request, cache=cache, on_preview=seen.append)
    assert len(seen) == 1 and first.preview is not None, "the hook got the preview"
    assert len(cache._memory) == 3, \
        f"exact + two distinct ladder runs stored, never the preview: {len(cache._memory)}"
    calls = counted.calls
    second = run_ig(request, cache=cache)
    assert counted.calls == calls, "every run of the second flow is a cache hit"
    assert second.result.from_cache, "the exact result comes from the cache"
    torch.testing.assert_close(second.result.convergence, first.result.convergence, rtol=0,
                               atol=0, msg="the same convergence from cached runs")
    assert [r.steps for r in second.ladder] == [4, 4, 8], "repeats are kept, as asked"


def test_preview_is_handed_over_before_the_exact_run_and_events_come_in_order() -> None:
    model, x, base = _problem()
    log: list[str] = []

    def on_event(event: IgProgress) -> None:
        if event.done is None:
            log.append(f"{event.stage}:{event.steps}@{event.offset}/{event.span}")

    run_ig(IgRequest(model, x, baselines=base, target=0, n_steps=16, ladder=(4, 8)),
           progress=on_event, on_preview=lambda _p: log.append("hook"))
    assert log == ["preview:16@0/28", "hook", "exact:16@0/28", "ladder:4@16/28",
                   "ladder:8@20/28"], f"preview, hook, exact, ladder in order: {log}"


def test_row_events_report_the_engine_rows_of_each_run() -> None:
    model, x, base = _problem()
    rows: list[tuple[str, int, int]] = []
    run_ig(IgRequest(model, x, baselines=base, target=0, n_steps=16, ladder=(8,)),
           progress=lambda e: rows.append((e.stage, e.done, e.total))
           if e.done is not None and e.total is not None else None)
    last = {stage: (done, total) for stage, done, total in rows}
    assert set(last) == {"exact", "ladder"}, f"rows of both runs are reported: {rows}"
    assert last["exact"][0] == last["exact"][1] and last["ladder"][0] == last["ladder"][1], \
        f"each run ends with all its rows done: {last}"


@pytest.mark.parametrize(("n_steps", "ladder"), [("auto", (4,)), (16, (8, 4)), (16, (16,)),
                                                 (16, (0, 8))])
def test_a_ladder_that_is_not_coarser_and_ascending_is_refused(n_steps: Any,
                                                               ladder: tuple[int, ...]) -> None:
    model, x, base = _problem()
    with pytest.raises(ValueError, match="ladder"):
        run_ig(IgRequest(model, x, baselines=base, target=0, n_steps=n_steps, ladder=ladder))


def test_ig2_flow_equals_ig2_with_halving_and_caches_only_the_exact_run() -> None:
    model, x, _base = _problem()
    refs = torch.randn(4, 10, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    cache = ResultCache(memory_items=32)
    events: list[Ig2Progress] = []
    seen: list[Any] = []
    outcome = run_ig2(Ig2Request(model, x[:1], refs, target=1, n_steps=8),
                      cache=cache, progress=events.append, on_preview=seen.append)
    direct = ig2(model, x[:1], refs, target=1, n_steps=8, halving=True)
    torch.testing.assert_close(outcome.result.attributions, direct.attributions, rtol=0,
                               atol=0, msg="the exact map is ig2's own (with halving)")
    torch.testing.assert_close(outcome.result.convergence, direct.convergence, rtol=0, atol=0,
                               msg="the convergence estimate with its half-steps companions")
    assert outcome.trust == trust_summary(direct), "the trust summary of that result"
    assert len(seen) == 1 and outcome.preview is not None, "preview handed over, summarised"
    assert len(cache._memory) == 1, "only the exact run is stored, never the preview"
    assert events[0].stage == "preview" and events[0].n_references == 4, \
        f"the preview is announced first: {events[:1]}"
    paths = [e for e in events if e.stage == "paths"]
    assert paths and paths[-1].done == paths[-1].total, "the exact run's rows end complete"
