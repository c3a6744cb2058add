"""IG2: completeness, agreement with a plain implementation of IG2.md, axioms, robustness,
representations (MLP, CNN, transformer encoder), caching and batching."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import pytest
import torch
from torch import nn

from attribution_core import IG2Attribution, ResultCache, ig2
from attribution_core.references import select_references
from tests.unit.models_for_tests import CountingModule, mlp, small_cnn


@pytest.fixture(autouse=True)
def float64_default():
    """Exact comparisons need float64; one thread, since these tiny models gain nothing from more
    and a shared, loaded machine makes thread hand-offs slow. Restore both afterwards."""
    previous, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(previous)
    torch.set_num_threads(threads)


def smooth_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.GELU(), nn.Linear(32, 16), nn.Softplus(),
                         nn.Linear(16, 3)).double().eval()


def smooth_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.Softplus(), nn.Conv2d(6, 8, 3, padding=1), nn.GELU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4),
    ).double().eval()


def class_contrast(model: nn.Module, shape: tuple[int, ...], seed: int, k: int = 6,
                   box: bool = False) -> tuple[torch.Tensor, torch.Tensor, int]:
    """An explicand, its predicted class, and k references the model puts in other classes
    (random models may predict one class everywhere: then the k lowest-scoring samples)."""
    generator = torch.Generator().manual_seed(seed)
    data = torch.rand(400, *shape, generator=generator) if box else \
        torch.randn(400, *shape, generator=generator)
    with torch.no_grad():
        logits = model(data)
    labels = logits.argmax(1)
    explicand_class = int(labels[0])
    if int((labels[1:] != explicand_class).sum()) >= k:
        chosen = select_references(data[1:], labels[1:], explicand_class, k=k, seed=seed)
        return data[:1], chosen.inputs, explicand_class
    lowest = torch.argsort(logits[1:, explicand_class])[:k] + 1
    return data[:1], data[lowest], explicand_class


# -- a plain implementation of IG2.md: one reference, one point at a time, float64 --------------

def plain_ig2(model: nn.Module, rep: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
              refs: torch.Tensor, target: int, n_steps: int, eta: float, rule: str,
              norm: str = "l2", clip: tuple[float, float] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(attributions of x [1, ...], GradCF [B, ...])."""

    def grad_f(z: torch.Tensor) -> torch.Tensor:
        z = z.detach().requires_grad_(True)
        return torch.autograd.grad(model(z)[0, target], z)[0]

    total = torch.zeros_like(x)
    ends = []
    for r in range(refs.shape[0]):
        rep_ref = rep(refs[r:r + 1]).detach().flatten()
        g = x.clone()
        for _ in range(n_steps):
            z = g.detach().requires_grad_(True)
            distance = ((rep(z).flatten() - rep_ref) ** 2).mean()
            d = torch.autograd.grad(distance, z)[0]
            size = d.norm() if norm == "l2" else d.abs().sum()
            g_next = g - eta * d / max(float(size), 1e-12)
            if clip is not None:
                g_next = g_next.clamp(*clip)
            if rule == "left":
                gradient = grad_f(g)
            elif rule == "middle":
                gradient = grad_f((g + g_next) / 2)
            else:
                gradient = (grad_f(g) + grad_f(g_next)) / 2
            total += gradient * (g - g_next)
            g = g_next
        ends.append(g)
    return total / refs.shape[0], torch.cat(ends)


@pytest.mark.parametrize("rule", ["trapezoid", "middle", "left"])
@pytest.mark.parametrize("case", ["mlp_l2", "mlp_l1", "cnn_clipped"])
def test_matches_plain_step_by_step_implementation(rule: str, case: str) -> None:
    if case.startswith("mlp"):
        model, norm, clip = mlp(seed=1), case[-2:], None
        x, refs, target = class_contrast(model, (10,), seed=1, k=3)
        eta = 0.05 if norm == "l2" else 0.2
    else:
        model, norm, clip = small_cnn(seed=2), "l2", (0.0, 1.0)
        x, refs, target = class_contrast(model, (1, 8, 8), seed=2, k=3, box=True)
        eta = 0.3  # large enough for the box to bind
    expected, ends = plain_ig2(model, model[:-1], x, refs, target, 12, eta, rule, norm, clip)
    result = ig2(model, x, refs, target=target, n_steps=12, step_size=eta, norm=norm, rule=rule,
                 clip=clip, batch_size=2)  # chunks smaller than the row count on purpose
    torch.testing.assert_close(result.attributions, expected, atol=1e-6, rtol=0,
                               msg=f"IG2 ({rule}, {case}) differs from the plain implementation")
    torch.testing.assert_close(result.counterfactuals[0], ends, atol=1e-9, rtol=0,
                               msg="GradCF differs from the plain implementation's path end")
    if clip is not None:
        assert bool((ends == 0).any() | (ends == 1).any()), "the test must exercise the box"


@pytest.mark.parametrize("rule", ["trapezoid", "middle"])
@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_second_order_rules_are_complete_at_default_settings(rule: str, family: str) -> None:
    for seed in range(3):
        if family == "mlp":
            model = smooth_mlp(seed)
            x, refs, target = class_contrast(model, (10,), seed)
        else:
            model = smooth_cnn(seed)
            x, refs, target = class_contrast(model, (1, 8, 8), seed, box=True)
        result = ig2(model, x, refs, target=target, rule=rule)
        gap = float(result.f_inputs - result.f_counterfactuals)
        assert abs(gap) > 1e-3, f"seed {seed}: the path must change f for the check to mean much"
        assert float(result.relative_delta) < 1e-3, \
            f"{family} seed {seed} {rule}: relative completeness error {result.relative_delta}"
        expected = (result.attributions.sum() - gap).abs()
        assert torch.isclose(result.delta.abs(), expected), "delta = sum(attr) - (f(x) - f(CF))"


def test_left_rule_error_shrinks_with_the_step_size() -> None:
    model = smooth_mlp(4)
    x, refs, target = class_contrast(model, (10,), seed=4)
    errors = []
    for eta, steps in ((0.2, 16), (0.1, 32), (0.05, 64), (0.025, 128)):  # same path length
        result = ig2(model, x, refs, target=target, n_steps=steps, step_size=eta, rule="left")
        errors.append(float(result.delta.abs()))
    assert all(a > b for a, b in itertools.pairwise(errors)), \
        f"left-rule error must fall with eta: {errors}"
    assert errors[-1] < errors[0] / 4, f"first-order rule: ~8x smaller for eta/8, got {errors}"
    trapezoid = ig2(model, x, refs, target=target, n_steps=16, step_size=0.2)
    assert float(trapezoid.delta.abs()) < errors[0] / 10, "trapezoid beats left at the same eta"


def test_relu_models_complete_to_small_error_with_small_steps() -> None:
    """ReLU kinks make the trapezoid error first order in eta; small steps still give < 1e-3."""
    model = mlp(seed=0)
    x, refs, target = class_contrast(model, (10,), seed=0)
    result = ig2(model, x, refs, target=target, n_steps=64, step_size=0.003)
    assert float(result.relative_delta) < 1e-3, f"relative error {result.relative_delta}"
    cnn = small_cnn(seed=0)
    x, refs, target = class_contrast(cnn, (1, 8, 8), seed=0, box=True)
    result = ig2(cnn, x, refs, target=target, n_steps=64, step_size=0.01, clip=(0, 1))
    assert float(result.relative_delta) < 1e-3, f"CNN relative error {result.relative_delta}"


# -- axioms ------------------------------------------------------------------------------------

def test_dummy_feature_gets_exactly_zero() -> None:
    model = mlp(seed=3)
    with torch.no_grad():
        model[0].weight[:, 4] = 0.0  # the model ignores feature 4
    x, refs, target = class_contrast(model, (10,), seed=3)
    for rule in ("trapezoid", "middle", "left"):
        result = ig2(model, x, refs, target=target, n_steps=16, rule=rule)
        assert float(result.attributions[0, 4]) == 0.0, f"{rule}: dummy feature attributed"
        assert float(result.attributions.abs().sum()) > 0, "other features do get attribution"


def test_symmetric_features_with_equal_values_get_equal_attributions() -> None:
    model = smooth_mlp(5)
    with torch.no_grad():
        model[0].weight[:, 1] = model[0].weight[:, 0]  # f(.., a, b, ..) = f(.., b, a, ..)
    x, refs, target = class_contrast(model, (10,), seed=5)
    x[0, 1] = x[0, 0]
    result = ig2(model, x, refs, target=target, n_steps=32)
    a, b = result.attributions[0, 0], result.attributions[0, 1]
    assert torch.isclose(a, b, rtol=1e-10, atol=1e-14), f"symmetric features differ: {a} vs {b}"
    assert abs(float(a)) > 1e-8, "the symmetric features must carry attribution for the test"


class ReorderedMlp(nn.Module):
    """The same function as ``mlp`` with other internals: first layer scaled by 2 (undone after
    the ReLU), penultimate units permuted (D is a mean over units, so it is unchanged)."""

    def __init__(self, source: nn.Sequential, permutation: torch.Tensor) -> None:
        super().__init__()
        self.first = nn.Linear(10, 32)
        self.second = nn.Linear(32, 16)
        self.head = nn.Linear(16, 3)
        with torch.no_grad():
            self.first.weight.copy_(2 * source[0].weight)
            self.first.bias.copy_(2 * source[0].bias)
            self.second.weight.copy_(0.5 * source[2].weight[permutation])
            self.second.bias.copy_(source[2].bias[permutation])
            self.head.weight.copy_(source[4].weight[:, permutation])
            self.head.bias.copy_(source[4].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.second(torch.relu(self.first(x)))))


def test_implementation_invariance() -> None:
    model = mlp(seed=6)
    twin = ReorderedMlp(model, torch.randperm(16, generator=torch.Generator().manual_seed(0)))
    x, refs, target = class_contrast(model, (10,), seed=6)
    torch.testing.assert_close(twin(refs), model(refs), msg="the twin computes the same function")
    first = ig2(model, x, refs, target=target, n_steps=32)
    second = ig2(twin.double(), x, refs, target=target, n_steps=32)
    torch.testing.assert_close(first.attributions, second.attributions, atol=1e-9, rtol=1e-7,
                               msg="functionally identical networks must agree")


# -- robustness ----------------------------------------------------------------------------------

def test_reference_equal_to_input_and_dead_gradients_give_no_nan() -> None:
    model = mlp(seed=7)
    x = torch.randn(1, 10, generator=torch.Generator().manual_seed(7))
    refs = torch.cat([x, torch.randn(2, 10, generator=torch.Generator().manual_seed(8))])
    result = ig2(model, x, refs, target=0, n_steps=8, step_size=0.1)
    assert bool(torch.isfinite(result.attributions).all()), "NaN with a reference equal to x"
    assert torch.equal(result.counterfactuals[0, 0], x[0]), "a zero distance gradient: no move"
    assert float(result.distance_trace[0, 0].abs().max()) == 0.0, "distance to itself is 0"
    dead = mlp(seed=7)
    with torch.no_grad():
        dead[0].bias.fill_(-1e3)  # every first-layer ReLU is off: all gradients vanish
    for rule in ("trapezoid", "middle", "left"):
        result = ig2(dead, x, refs, target=0, n_steps=8, step_size=0.1, rule=rule)
        assert bool(torch.isfinite(result.attributions).all()), f"{rule}: NaN with dead ReLUs"
        assert float(result.attributions.abs().sum()) == 0.0, "no gradient, no attribution"
        assert bool(torch.isfinite(result.relative_delta).all()), "relative delta stays finite"


def test_deterministic_for_a_fixed_seed() -> None:
    model = mlp(seed=9)
    generator = torch.Generator().manual_seed(9)
    data = torch.randn(50, 10, generator=generator)
    labels = model(data).argmax(1)

    def run() -> IG2Attribution:
        chosen = select_references(data[1:], labels[1:], int(labels[0]), k=4, seed=3)
        return ig2(model, data[:1], chosen.inputs, target=int(labels[0]), n_steps=10)

    first, second = run(), run()
    assert torch.equal(first.attributions, second.attributions), "same seed, same attributions"
    assert torch.equal(first.references, second.references), "same seed, same references"


def test_early_stop_freezes_rows_and_keeps_completeness() -> None:
    model = smooth_mlp(10)
    x, refs, target = class_contrast(model, (10,), seed=10, k=4)
    result = ig2(model, x, refs, target=target, n_steps=200, step_size=0.1, early_stop=True)
    steps = result.steps_taken[0]
    assert bool((steps < 200).any()), f"a long path of big steps must stop early: {steps}"
    for r, stop in enumerate(steps.tolist()):
        trace = result.distance_trace[0, r]
        assert bool((trace[1:stop] < trace[:stop - 1]).all()), "distance fell until the stop"
        assert bool((trace[stop:] == trace[stop]).all()), "the trace is frozen after the stop"
    assert float(result.relative_delta) < 1e-3, f"completeness kept: {result.relative_delta}"


def test_clip_box_with_per_channel_tensor_bounds() -> None:
    model = smooth_cnn(11)
    x, refs, target = class_contrast(model, (1, 8, 8), seed=11, box=True)
    lo, hi = torch.full((1, 1, 1), 0.2), torch.full((1, 1, 1), 0.8)
    x = x.clamp(0.2, 0.8)
    result = ig2(model, x, refs, target=target, n_steps=20, step_size=0.5, clip=(lo, hi))
    cf = result.counterfactuals
    assert float(cf.min()) >= 0.2 and float(cf.max()) <= 0.8, "GradCF must stay in the box"
    assert float(result.relative_delta) < 1e-2, "clipped segments still integrate correctly"


# -- representations -----------------------------------------------------------------------------

def test_representation_by_name_matches_default_for_mlp_and_runs_for_cnn() -> None:
    model = mlp(seed=12)
    x, refs, target = class_contrast(model, (10,), seed=12, k=3)
    default = ig2(model, x, refs, target=target, n_steps=10)
    named = ig2(model, x, refs, target=target, n_steps=10, representation="3")
    assert default.representation == "4:input", f"default: input of last Linear, got "\
        f"{default.representation}"
    assert torch.equal(default.attributions, named.attributions), \
        "the output of module '3' is the input of the last Linear"
    shallow = ig2(model, x, refs, target=target, n_steps=10, representation="1")
    assert not torch.equal(shallow.attributions, default.attributions), "another layer differs"
    cnn = smooth_cnn(12)
    x, refs, target = class_contrast(cnn, (1, 8, 8), seed=12, box=True, k=3)
    conv = ig2(cnn, x, refs, target=target, n_steps=20, representation="2", clip=(0, 1))
    assert conv.representation == "2", "the chosen layer is recorded"
    assert bool((conv.distance_trace[..., -1] < conv.distance_trace[..., 0]).all()), \
        "descending the conv-feature distance brings every path closer to its reference"
    with pytest.raises(ValueError, match="No module named"):
        ig2(cnn, x, refs, target=target, representation="nope")


class TinyTextEncoder(nn.Module):
    """Embeddings [B, L, E] + attention mask -> class logits via a 1-layer transformer encoder."""

    def __init__(self, embed_dim: int = 8, n_out: int = 3) -> None:
        super().__init__()
        torch.manual_seed(13)
        layer = nn.TransformerEncoderLayer(embed_dim, nhead=2, dim_feedforward=16, dropout=0.0,
                                           activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(embed_dim, n_out)

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(embeds, src_key_padding_mask=attention_mask == 0)
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.head(pooled)


@pytest.mark.parametrize("representation", [None, "encoder"])
def test_transformer_text_model_with_attention_mask(representation: str | None) -> None:
    model = TinyTextEncoder().double().eval()
    generator = torch.Generator().manual_seed(13)
    embeds = torch.randn(2, 5, 8, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    refs = torch.randn(2, 3, 5, 8, generator=generator)  # per-explicand references
    ref_mask = torch.ones(2, 3, 5, dtype=torch.long)
    result = ig2(model, embeds, refs, representation=representation, target=[0, 2], n_steps=32,
                 step_size=0.05, forward_kwargs={"attention_mask": mask},
                 reference_kwargs={"attention_mask": ref_mask})
    assert result.counterfactuals.shape == (2, 3, 5, 8), "GradCF per explicand and reference"
    assert float(result.attributions[0, 3:].abs().max()) == 0.0, "padding gets no attribution"
    assert bool(torch.isfinite(result.attributions).all()), "no NaN through attention"
    assert bool((result.distance_trace[..., -1] < result.distance_trace[..., 0]).all()), \
        "every path approaches its reference's representation"
    assert float(result.relative_delta.max()) < 1e-3, f"complete: {result.relative_delta}"
    with torch.no_grad():
        f_ref = model(refs.reshape(6, 5, 8), attention_mask=ref_mask.reshape(6, 5))
    expected = f_ref.gather(1, torch.tensor([0, 0, 0, 2, 2, 2]).view(-1, 1)).view(2, 3)
    torch.testing.assert_close(result.f_references, expected,
                               msg="references are evaluated with their own attention masks")


# -- cache and batching ----------------------------------------------------------------------------

def test_cache_hit_is_identical_with_zero_forward_calls(tmp_path) -> None:
    counting = CountingModule(mlp(seed=14))
    x, refs, target = class_contrast(counting.inner, (10,), seed=14, k=3)
    cache = ResultCache(disk_dir=tmp_path)
    first = ig2(counting, x, refs, target=target, n_steps=6, cache=cache, batch_size=64)
    calls = counting.calls
    hit = ig2(counting, x, refs, target=target, n_steps=6, cache=cache, batch_size=64)
    assert counting.calls == calls, "a cache hit must not call the model"
    assert hit.from_cache and not first.from_cache, "the hit is flagged, the first run is not"
    for item in dataclasses.fields(IG2Attribution):
        value = getattr(first, item.name)
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, getattr(hit, item.name)), f"{item.name} differs on a hit"
    from_disk = ResultCache(disk_dir=tmp_path).get(next(iter(cache._memory)))
    assert from_disk is not None and torch.equal(from_disk.distance_trace, first.distance_trace),\
        "the disk store round-trips an IG2 result"
    ig2(counting, x, refs, target=target, n_steps=6, step_size=0.02, cache=cache, batch_size=64)
    assert counting.calls > calls, "a changed parameter must miss"


@pytest.mark.parametrize("rule", ["trapezoid", "left", "middle"])
def test_forward_calls_batch_all_references_per_point(rule: str) -> None:
    counting = CountingModule(mlp(seed=15))
    x = torch.randn(2, 10, generator=torch.Generator().manual_seed(15))
    refs = torch.randn(3, 10, generator=torch.Generator().manual_seed(16))
    progress: list[tuple[int, int]] = []
    result = ig2(counting, x, refs, target=1, n_steps=5, rule=rule, batch_size=64,
                 progress=lambda done, total: progress.append((done, total)))
    path_rows = [6, 12, 12, 12, 12, 12] if rule == "middle" else [6] * 6
    assert counting.rows == [6, *path_rows], \
        f"one call for the references, then one per path point: {counting.rows}"
    assert result.forward_calls == 7 < 2 * 5 + 1, "fewer calls than the reference code's 2T+1"
    assert progress[-1][0] == progress[-1][1], "progress ends complete"
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(progress)), "monotone"
    chunked = CountingModule(mlp(seed=15))
    again = ig2(chunked, x, refs, target=1, n_steps=5, rule=rule, batch_size=4)
    assert max(chunked.rows) <= 4, "batch_size caps the rows of every call"
    torch.testing.assert_close(again.attributions, result.attributions, atol=1e-12, rtol=0,
                               msg="chunking must not change the result")


def test_argument_errors() -> None:
    model = mlp()
    x, refs = torch.randn(1, 10), torch.randn(2, 10)
    with pytest.raises(ValueError, match="rule"):
        ig2(model, x, refs, target=0, rule="right")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="norm"):
        ig2(model, x, refs, target=0, norm="linf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="do not match"):
        ig2(model, x, torch.randn(2, 9), target=0)
    with pytest.raises(ValueError, match="step_size"):
        ig2(model, x, refs, target=0, step_size=-1.0)
    with pytest.raises(ValueError, match="representation"):
        ig2(lambda z: model(z), x, refs, target=0)
