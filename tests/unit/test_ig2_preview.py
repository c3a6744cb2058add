"""IG2's preview: a quarter of the references (bf16 where the hardware has it), the exact run's
eta, labelled as a preview, and a summary of how far it was from the exact map."""

from __future__ import annotations

import pytest
import torch

from attribution_core import ig2
from attribution_core.methods.ig2 import auto_step_size
from attribution_core.methods.ig2_preview import preview_ig2, summarise_ig2_preview
from tests.unit.models_for_tests import CountingModule, mlp


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return torch.randn(1, 10, generator=generator), torch.randn(8, 10, generator=generator)


def test_fp32_preview_is_the_exact_run_on_a_quarter_of_the_references(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_PREVIEW_BF16", "0")
    model = CountingModule(mlp(seed=3).float())
    x, refs = _inputs()
    preview = preview_ig2(model, x, refs, torch.device("cpu"), target=1, n_steps=12)
    assert preview.kind == "fewer references" and preview.n_references == 2, preview.label
    assert "preview" in preview.label.lower() and "2 references" in preview.label, preview.label
    assert max(model.rows) == 2, f"only 2 of 8 references are walked: rows {model.rows}"
    eta = float(auto_step_size(x, refs.unsqueeze(0), 12, "l2")[0])
    same = ig2(model, x, refs[:2], target=1, n_steps=12, step_size=eta)
    torch.testing.assert_close(preview.result.attributions, same.attributions, atol=0, rtol=0,
                               msg="the preview walks paths as long as the exact run's")


def test_bf16_preview_is_close_and_summarised_against_the_exact_map(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_PREVIEW_BF16", "1")
    model = mlp(seed=3).float()
    x, refs = _inputs()
    preview = preview_ig2(model, x, refs, torch.device("cpu"), target=1, n_steps=12)
    assert preview.kind == "bf16" and "bf16" in preview.label, preview.label
    exact = ig2(model, x, refs, target=1, n_steps=12)
    summary = summarise_ig2_preview(preview, exact)
    assert summary is not None and summary.deviation is not None, "compared once exact is known"
    assert 0 < summary.deviation.relative_l2 < 1.5, \
        f"a quarter of the references, not another map: {summary.deviation}"
    assert summary.label == preview.label, "the summary keeps the label, never the map"
    assert not hasattr(summary, "result"), "the preview's map itself is not kept"
