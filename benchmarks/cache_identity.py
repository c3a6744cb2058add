"""Does the result cache ever serve a stale answer? The reviewer's scenarios, replayed against the
real cache (memory or disk, as the dashboard uses it), each checked against a fresh computation
made without any cache.

    python -m benchmarks.cache_identity [--quick] [--out FILE]

One JSON row per scenario: ``served_from_cache`` (whether the cache answered the second
request), ``stale_would_differ_by`` (how far the first computation's result is from the right
one: what a stale hit would have shown), ``max_abs_difference`` (served vs fresh) and
``served_stale`` (that difference above float noise). Every row should read served_stale false.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from attribution_core import ResultCache, integrated_gradients
from attribution_core.results import Attribution
from benchmarks.common import dump_report

NOISE = 1e-6  # relative: served and fresh are the same computation, bit for bit in practice


def _weights(module: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return module.eval()


def _net(activation: nn.Module, dropout: float = 0.0) -> nn.Module:
    return _weights(nn.Sequential(nn.Linear(6, 16), activation, nn.Dropout(dropout),
                                  nn.Linear(16, 2)), 11)


def _x() -> torch.Tensor:
    return torch.randn(3, 6, generator=torch.Generator().manual_seed(12))


def _row(case: str, scenario: str, first: Attribution, served: Attribution,
         fresh: Attribution) -> dict[str, Any]:
    scale = float(fresh.attributions.abs().max()) or 1.0
    difference = float((served.attributions - fresh.attributions).abs().max())
    stale = float((first.attributions - fresh.attributions).abs().max())
    return {"case": case, "scenario": scenario, "served_from_cache": bool(served.from_cache),
            "stale_would_differ_by": float(f"{stale:.4g}"),
            "max_abs_difference": float(f"{difference:.4g}"),
            "served_stale": difference > NOISE * scale}


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """The same dropout masks for the served and the fresh computation (the global RNG is
    restored afterwards)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def upload_config(folder: Path) -> dict[str, Any]:
    """1: the same safetensors MLP uploaded with another activation in its JSON config."""
    from attribution_core.models.onnx_models import parse_mlp_config, tabular_upload_spec

    holder = nn.Module()
    holder.layers = _weights(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), 3)
    data = save(holder.state_dict())
    row = torch.tensor([[0.5, -1.0, 2.0, 0.3]])

    def explain(activation: str, cache: ResultCache | None) -> Attribution:
        config = parse_mlp_config(json.dumps({"activation": activation,
                                              "feature_names": list("abcd")}).encode())
        loaded = tabular_upload_spec(data, "mlp.safetensors", config=config).loader(
            torch.device("cpu"))
        return integrated_gradients(loaded.forward, row, target=0, n_steps=32, cache=cache,
                                    model_key=loaded.weights_hash)

    first = explain("relu", ResultCache(disk_dir=folder))
    served = explain("tanh", ResultCache(disk_dir=folder))  # another session, same disk
    return _row("1", "uploaded MLP, same weights, JSON config relu -> tanh, shared disk cache",
                first, served, explain("tanh", None))


def structure(kind: str) -> dict[str, Any]:
    """2: what is not a parameter: the training flag, a layer's type, a layer's setting."""
    before, after = {
        "training": (_net(nn.ReLU(), 0.5), _net(nn.ReLU(), 0.5).train()),
        "relu_to_tanh": (_net(nn.ReLU()), _net(nn.Tanh())),
        "softplus_beta": (_net(nn.Softplus(beta=1.0)), _net(nn.Softplus(beta=10.0))),
    }[kind]
    cache = ResultCache()
    # A fixed batch size: no memory probe, so both train-mode runs draw the same masks.
    with _seeded(0):
        first = integrated_gradients(before, _x(), target=0, n_steps=16, cache=cache,
                                     batch_size=64)
    with _seeded(1):
        served = integrated_gradients(after, _x(), target=0, n_steps=16, cache=cache,
                                      batch_size=64)
    with _seeded(1):
        fresh = integrated_gradients(after, _x(), target=0, n_steps=16, batch_size=64)
    what = {"training": "dropout model, eval then train mode",
            "relu_to_tanh": "same weights, ReLU -> Tanh",
            "softplus_beta": "same weights, Softplus beta 1 -> 10"}[kind]
    return _row("2", what, first, served, fresh)


def autocast() -> dict[str, Any]:
    """2: the caller's autocast state: a bf16 call, then an fp32 call."""
    model, cache = _net(nn.Tanh()), ResultCache()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = integrated_gradients(model, _x(), target=0, n_steps=16, cache=cache)
    served = integrated_gradients(model, _x(), target=0, n_steps=16, cache=cache)
    return _row("2", "bf16 autocast call, then an fp32 call", first, served,
                integrated_gradients(model, _x(), target=0, n_steps=16))


def in_place_edit() -> dict[str, Any]:
    """3: a caller edits the returned map in place; the next request must not see the edit."""
    model, cache = _net(nn.Tanh()), ResultCache()
    first = integrated_gradients(model, _x(), target=0, n_steps=16, cache=cache)
    first.attributions.mul_(0.0)  # what a page that normalises a map in place would do
    hit = integrated_gradients(model, _x(), target=0, n_steps=16, cache=cache)
    hit.attributions.add_(1.0)
    served = integrated_gradients(model, _x(), target=0, n_steps=16, cache=cache)
    return _row("3", "returned maps edited in place (computed one, then a hit)", first, served,
                integrated_gradients(model, _x(), target=0, n_steps=16))


def rule_change(folder: Path) -> dict[str, Any]:
    """4: the auto rule's constant changes (and, as test_rule_versions demands, its version)."""
    from attribution_core.methods import _ig_estimate
    from attribution_core.rule_fingerprints import mismatch
    from attribution_core.rule_versions import RULE_VERSIONS

    kind = "integrated_gradients.auto"
    model = _net(nn.Tanh())

    def run(cache: ResultCache | None) -> Attribution:
        return integrated_gradients(model, _x(), target=0, n_steps="auto", tolerance=0.01,
                                    cache=cache)

    first = run(ResultCache(disk_dir=folder))
    version, safety = RULE_VERSIONS[kind], _ig_estimate.AUTO_SAFETY
    try:
        _ig_estimate.AUTO_SAFETY = safety * 0.5
        caught = mismatch(kind) is not None  # the unbumped change fails the rule test
        RULE_VERSIONS[kind] = version + 1
        served = run(ResultCache(disk_dir=folder))  # a new process over the same disk
        fresh = run(None)
    finally:
        _ig_estimate.AUTO_SAFETY, RULE_VERSIONS[kind] = safety, version
    row = _row("4", "auto rule constant halved, version bumped, same disk cache", first,
               served, fresh)
    row["unbumped_change_caught_by_fingerprint"] = caught
    return row


def preview_then_exact() -> dict[str, Any]:
    """9: a bf16 preview on the page, then the exact run through the shared cache."""
    from attribution_core import preview as fast_paths

    model, cache = _net(nn.Tanh()), ResultCache()
    writes: list[str] = []
    original = ResultCache.put
    previous = os.environ.get(fast_paths.PREVIEW_VARIABLE)
    os.environ[fast_paths.PREVIEW_VARIABLE] = "1"
    try:
        ResultCache.put = lambda self, key, result: (writes.append(key),  # type: ignore
                                                     original(self, key, result))[1]
        preview = fast_paths.preview_ig(model, _x(), None, 0, 64, torch.device("cpu"))
        preview_writes = len(writes)
        served = integrated_gradients(model, _x(), target=0, n_steps=64, cache=cache)
    finally:
        ResultCache.put = original  # type: ignore[method-assign]
        if previous is None:
            os.environ.pop(fast_paths.PREVIEW_VARIABLE, None)
        else:
            os.environ[fast_paths.PREVIEW_VARIABLE] = previous
    row = _row("9", "bf16 preview, then the exact run with the shared cache", preview.result,
               served, integrated_gradients(model, _x(), target=0, n_steps=64))
    row["cache_writes_by_the_preview"] = preview_writes
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the same rows (all are small)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as upload_disk, tempfile.TemporaryDirectory() as rules:
        rows = [upload_config(Path(upload_disk)), structure("training"),
                structure("relu_to_tanh"), structure("softplus_beta"), autocast(),
                in_place_edit(), rule_change(Path(rules)), preview_then_exact()]
    report = {"benchmark": "cache_identity", "rows": rows,
              "served_stale": sum(row["served_stale"] for row in rows)}
    print(dump_report(report, args.out))
    return report


if __name__ == "__main__":
    main()
