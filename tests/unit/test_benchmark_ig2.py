"""benchmarks.ig2's contenders compute what they claim: the reference code's structure gives
our left-rule attributions with 2T + 1 calls per explicand, and the limit walks its rows."""

from __future__ import annotations

import pytest
import torch

from attribution_core import ig2
from attribution_core.methods.ig2 import auto_step_size
from benchmarks.ig2_setup import Workload, limit_rows, reference_code_ig2
from tests.unit.models_for_tests import CountingModule, mlp

pytestmark = pytest.mark.usefixtures("float64_default")


def _workload() -> tuple[Workload, CountingModule]:
    model = CountingModule(mlp(seed=5))
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 10, generator=generator)
    refs = torch.randn(2, 3, 10, generator=generator)
    layer = model.inner[4]  # the last Linear: its input is IG2's default representation
    work = Workload("mlp", model, model, layer, "inner.4:input", x, refs, [0, 2])
    return work, model


@pytest.mark.parametrize("parameter_gradients", [True, False])
def test_reference_code_structure_matches_our_left_rule(parameter_gradients: bool) -> None:
    work, model = _workload()
    steps = 7
    eta = auto_step_size(work.x, work.refs, steps, "l2")
    before = model.calls
    naive = reference_code_ig2(work, steps, eta, parameter_gradients)
    assert model.calls - before == 2 * (2 * steps + 1), "2T + 1 calls per explicand"
    ours = ig2(model, work.x, work.refs, representation=work.representation,
               target=work.targets, n_steps=steps, rule="left")
    torch.testing.assert_close(naive, ours.attributions, atol=1e-10, rtol=0,
                               msg="the reference code's structure and ours (left) agree")
    assert all(p.grad is None for p in model.parameters()), "no gradient is left behind"
    assert all(p.requires_grad for p in model.parameters()), "requires_grad is restored"


def test_limit_walks_exactly_its_rows_in_its_batches() -> None:
    work, model = _workload()
    before = len(model.rows)
    limit_rows(work, 14, 4, backward_passes=2)
    assert model.rows[before:] == [4, 4, 4, 2], f"14 rows in batches of 4: {model.rows}"
