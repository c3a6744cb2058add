"""The exact fast path equals fp32 eager; the preview is labelled, never cached, and falls back
to a coarse fp32 run where the hardware has no bf16 units."""

from __future__ import annotations

import threading

import pytest
import torch
import torchvision
from torch import nn

from attribution_core import ResultCache, integrated_gradients
from attribution_core.devices import frozen_parameters
from attribution_core.preview import (
    PREVIEW_VARIABLE,
    bf16_preview_supported,
    preview_deviation,
    preview_ig,
    preview_steps,
)
from attribution_core.quadrature import quadrature
from attribution_core.tuning import compile_for_attribution, prefer_channels_last


class TinyEncoder(nn.Module):
    """A 2-layer BERT over embeddings with an attention mask, mean-pooled to 2 classes."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        torch.manual_seed(0)
        config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, vocab_size=50)
        self.encoder = BertModel(config, add_pooling_layer=False).eval()
        self.head = nn.Linear(32, 2)

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask)
        return self.head(hidden.last_hidden_state.mean(1))


def _eager_ig(model: nn.Module, x: torch.Tensor, n_steps: int, target: int,
              **kwargs: torch.Tensor) -> torch.Tensor:
    """Textbook IG, one step at a time, parameters requiring grad: the fp32 eager answer."""
    rule = quadrature("gausslegendre", n_steps)
    total = torch.zeros_like(x)
    for alpha, weight in zip(rule.alphas, rule.step_sizes, strict=True):
        point = (alpha * x).detach().requires_grad_(True)
        output = model(point, **kwargs)[:, target].sum()
        (grad,) = torch.autograd.grad(output, point)
        total += weight * grad
    return total * x


def _models() -> list[tuple[str, nn.Module, torch.Tensor, dict[str, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(1)
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 64, 10)).eval()
    resnet = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    return [
        ("cnn", cnn, torch.rand(2, 1, 8, 8, generator=generator), {}),
        ("text_encoder", TinyEncoder(), 0.5 * torch.randn(1, 6, 32, generator=generator),
         {"attention_mask": torch.ones(1, 6, dtype=torch.long)}),
        ("resnet18", resnet, torch.rand(1, 3, 64, 64, generator=generator), {}),
    ]


@pytest.mark.parametrize("case", _models(), ids=lambda case: case[0])
def test_fast_exact_path_equals_fp32_eager(case: tuple) -> None:
    name, model, x, kwargs = case
    expected = _eager_ig(model, x, 8, 1, **kwargs)
    ours = integrated_gradients(model, x, target=1, n_steps=8, forward_kwargs=kwargs)
    error = float((ours.attributions - expected).norm() / expected.norm())
    assert error < 1e-5, f"{name}: the frozen-parameter path is {error:.2e} from fp32 eager"
    assert all(p.requires_grad for p in model.parameters()), \
        f"{name}: parameters require grad again after the run"


def test_channels_last_path_equals_fp32_eager() -> None:
    _name, model, x, _kwargs = _models()[2]
    expected = _eager_ig(model, x, 8, 1)
    model.to(memory_format=torch.channels_last)
    ours = integrated_gradients(model, x.contiguous(memory_format=torch.channels_last),
                                target=1, n_steps=8)
    error = float((ours.attributions - expected).norm() / expected.norm())
    assert error < 1e-5, f"channels_last changes the exact answer by {error:.2e}"
    adopted = prefer_channels_last(model, x.repeat(4, 1, 1, 1), target=1, repeats=1)
    assert isinstance(adopted, bool), "the measurement decides, either way"


def test_frozen_parameters_is_reference_counted_across_threads() -> None:
    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # a user's own choice must survive
    inside = threading.Barrier(2)
    release_second = threading.Event()
    seen_inside: list[bool] = []

    def hold(release: threading.Event | None) -> None:
        with frozen_parameters(model):
            inside.wait()
            seen_inside.append(not any(p.requires_grad for p in model.parameters()))
            if release is not None:
                release.wait(timeout=30)

    first = threading.Thread(target=hold, args=(None,))
    second = threading.Thread(target=hold, args=(release_second,))
    first.start()
    second.start()
    first.join()
    assert not model.weight.requires_grad, "still frozen while the second thread is inside"
    release_second.set()
    second.join()
    assert seen_inside == [True, True], "frozen inside for both"
    assert model.weight.requires_grad and not model.bias.requires_grad, \
        "the last one out restores what the first one found"


@pytest.mark.parametrize("forced, kind", [("1", "bf16"), ("0", "coarse")])
def test_preview_kind_follows_the_hardware_switch(monkeypatch: pytest.MonkeyPatch, forced: str,
                                                  kind: str) -> None:
    monkeypatch.setenv(PREVIEW_VARIABLE, forced)
    _name, model, x, _kwargs = _models()[0]
    assert bf16_preview_supported("cpu") is (forced == "1"), "the switch decides"
    preview = preview_ig(model, x, None, 1, 64, torch.device("cpu"))
    assert preview.kind == kind and preview.n_steps == preview_steps(64) == 16, preview.label
    assert "Preview" in preview.label and preview.result.attributions.dtype == torch.float32
    exact = integrated_gradients(model, x, target=1, n_steps=64)
    deviation = preview_deviation(preview.result.attributions, exact.attributions)
    assert deviation.relative_l2 < 0.1 and deviation.rank_correlation > 0.9, \
        f"a {kind} preview is close but not equal: {deviation}"


def test_preview_never_reaches_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever cache a preview could reach (a shared one, a module-level memo), it reads and
    writes none: every ResultCache's get and put are watched, and a repeated preview must
    call the model again."""
    monkeypatch.setenv(PREVIEW_VARIABLE, "1")
    _name, model, x, _kwargs = _models()[0]
    touched: list[str] = []
    for name in ("get", "put"):
        original = getattr(ResultCache, name)
        monkeypatch.setattr(ResultCache, name, lambda self, *args, _name=name, _original=original:
                            (touched.append(_name), _original(self, *args))[1])
    calls: list[int] = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        preview_ig(model, x, None, 1, 64, torch.device("cpu"))
        first = len(calls)
        preview_ig(model, x, None, 1, 64, torch.device("cpu"))
    finally:
        handle.remove()
    assert not touched, f"a preview never reads or writes a cache: {touched}"
    assert first > 0 and len(calls) == 2 * first, \
        f"a repeated preview is computed again, not served ({first} then {len(calls) - first})"


def test_frozen_parameters_of_a_wrapper_and_its_backbone_at_once() -> None:
    """Two sessions, one explaining a wrapper, one its backbone, in both interleavings: every
    parameter requires grad again once both are out."""
    for order in ("wrapper first out", "backbone first out"):
        backbone = nn.Linear(3, 3)
        wrapper = nn.Sequential(backbone, nn.Linear(3, 2))
        both_in = threading.Barrier(2)
        first_out = threading.Event()
        leaving_first = wrapper if order == "wrapper first out" else backbone

        def hold(module: nn.Module, leaving_first: nn.Module = leaving_first,
                 both_in: threading.Barrier = both_in, first_out: threading.Event = first_out
                 ) -> None:
            with frozen_parameters(module):
                both_in.wait(timeout=30)
                if module is not leaving_first:
                    first_out.wait(timeout=30)
            if module is leaving_first:
                first_out.set()

        threads = [threading.Thread(target=hold, args=(m,)) for m in (wrapper, backbone)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        frozen = [name for name, p in wrapper.named_parameters() if not p.requires_grad]
        assert not frozen, f"{order}: still frozen for good: {frozen}"


def test_deviation_of_identical_maps() -> None:
    values = torch.randn(5, 5, generator=torch.Generator().manual_seed(0))
    same = preview_deviation(values, values, k=10)
    assert same.relative_l2 == 0 and same.rank_correlation == pytest.approx(1.0) and \
        same.top_k_overlap == 1.0, f"identical maps deviate by nothing: {same}"


def test_compile_falls_back_cleanly() -> None:
    class Unsupported(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no such kernel")

    compiled, seconds, why = compile_for_attribution(Unsupported(), torch.ones(1, 2))
    assert compiled is None and why and seconds >= 0, "a failure means eager, with a reason"


@pytest.mark.slow
def test_compiled_model_gives_the_exact_answer() -> None:
    _name, model, x, _kwargs = _models()[0]
    compiled, seconds, why = compile_for_attribution(model, x.repeat(8, 1, 1, 1), target=1)
    if compiled is None:  # no C compiler on this machine: the fallback is what is promised
        assert why, "a failed compile says why"
        return
    expected = integrated_gradients(model, x, target=1, n_steps=8, batch_size=8).attributions
    ours = integrated_gradients(compiled, x, target=1, n_steps=8, batch_size=8).attributions
    error = float((ours - expected).norm() / expected.norm())
    assert error < 1e-5, f"torch.compile changes the exact answer by {error:.2e}"
    assert seconds > 0, "the compile time is measured"


def test_thread_count_is_chosen_by_measurement() -> None:
    from attribution_core.tuning import best_thread_count

    before = torch.get_num_threads()
    calls: list[int] = []
    try:
        chosen, measured = best_thread_count(lambda: calls.append(torch.get_num_threads()),
                                             [1, before], repeats=1)
        assert set(measured) == {1, before} and chosen in measured, measured
        assert torch.get_num_threads() == chosen, "the fastest count is left in effect"
        assert calls.count(1) >= 2, "each candidate is warmed up and timed at its own count"
    finally:
        torch.set_num_threads(before)
