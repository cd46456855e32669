"""Physically remove the units a sparse model no longer uses, so the decoded model is smaller and faster too.

A unit (an output channel of a conv, an output feature of a linear layer) is *dead* when every weight that
reads it downstream is zero: removing it, with its row and its consumers' columns, changes nothing. A unit
whose own weights are all zero still outputs a constant (its bias, through the activation and pooling that
follow); that constant's contribution is first folded into each consumer's bias and the consumer's weights
for it zeroed, which makes the unit dead. Which consumer columns read which unit is Torch-Pruning's
dependency graph (the same one :mod:`lepton.compress.structured` prunes with); the constant each consumer
sees is read off a forward pass on real inputs and checked to be constant there.

Units coupled to others (residual adds, depthwise convs, concatenation) or passing through an op
Torch-Pruning does not track are left alone. The shrunk model is compared with the sparse one on the check
inputs; if they disagree the sparse model is returned unchanged, with the reason.

    small, report = remove_dead_units(sparse_model, x_check[:256])
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch_pruning as tp
from pydantic import BaseModel, ConfigDict
from torch import nn

from lepton.compress.structured import PRUNABLE, _coupled, _group_of, _run_order, _width

TOLERANCE = 1e-4  # max |shrunk - sparse| over the check outputs, relative to their largest magnitude


class ShrinkReport(BaseModel):
    """What :func:`remove_dead_units` removed: units per layer, constants folded, and the check."""

    model_config = ConfigDict(extra="forbid")

    removed: dict[str, int]
    folded: dict[str, int]
    widths: dict[str, list[int]]
    max_rel_diff: float
    note: str = ""


def _consumers(dg: object, module: nn.Module, unit: int, names: dict[nn.Module, str]) -> list[tuple[str, list[int]]]:
    """The conv / linear layers reading ``unit`` of ``module``, each with the input indices it reads it at."""
    out = []
    for dep, idxs in _group_of(dg, module, [unit]).items:
        target = dep.target.module
        if dep.handler.__name__ == "prune_in_channels" and isinstance(target, PRUNABLE) and target in names:
            out.append((names[target], [int(i) for i in idxs]))
    return out


def _columns(layer: nn.Module, idxs: list[int]) -> torch.Tensor:
    """The consumer weights that read input indices ``idxs`` (a conv's in-channels, a linear's columns)."""
    return layer.weight[:, idxs]


@contextmanager
def _capture_inputs(model: nn.Module, layers: dict[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    seen: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_pre_hook(lambda _m, args, n=n: seen.__setitem__(n, args[0].detach()))
        for n, m in layers.items()
    ]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def _fold_constant(consumer: nn.Module, idxs: list[int], x: torch.Tensor) -> bool:
    """Fold the constant inputs ``x[:, idxs]`` of ``consumer`` into its bias and zero their weights; False (and
    nothing changed) unless they are constant over the batch and every position and the fold is exact."""
    cols = x[:, idxs]
    flat = cols.transpose(0, 1).reshape(len(idxs), -1)
    value = flat[:, 0]
    if not bool((flat == value[:, None]).all()):
        return False
    if bool((value == 0).all()):
        consumer.weight[:, idxs] = 0
        return True
    if consumer.bias is None:
        return False
    if isinstance(consumer, nn.Linear):
        consumer.bias += consumer.weight[:, idxs] @ value
    elif isinstance(consumer, nn.Conv2d) and consumer.groups == 1 and all(p == 0 for p in consumer.padding):
        consumer.bias += (consumer.weight[:, idxs] * value.view(1, -1, 1, 1)).sum((1, 2, 3))
    else:  # zero padding (or groups) makes the constant's contribution differ at the borders
        return False
    consumer.weight[:, idxs] = 0
    return True


def remove_dead_units(model: nn.Module, check_inputs: torch.Tensor) -> tuple[nn.Module, ShrinkReport]:
    """A copy of ``model`` without the units no weight reads (after folding constant units into the next bias).

    Args:
        model: a sparse network (e.g. after variational sparsification); left unchanged.
        check_inputs: a batch of real inputs: the constants are read off it, and the shrunk copy must compute
            what ``model`` computes on it (to ``TOLERANCE`` of the outputs' scale).

    Returns:
        ``(shrunk_copy, ShrinkReport)``; the copy is ``model``'s own copy, unshrunk, if the check failed.
    """
    original = model
    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    names = {m: n for n, m in modules.items()}
    order = list(dict.fromkeys(_run_order(model, check_inputs[:1])))
    candidates = order[:-1]  # the classifier's outputs are the model's outputs
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=check_inputs[:1])
    single = {}
    for name in candidates:
        roots, opaque = _coupled(_group_of(dg, modules[name], list(range(_width(modules[name])))), names)
        if roots == [name] and not opaque and getattr(modules[name], "groups", 1) == 1:
            single[name] = modules[name]
    layers = {n: modules[n] for n in order}
    with torch.no_grad():
        reference = model(check_inputs)
    folded: dict[str, int] = {}
    for name, layer in single.items():
        empty = (layer.weight.flatten(1) == 0).all(1).nonzero().flatten().tolist()
        if not empty:
            continue
        with _capture_inputs(model, layers) as seen, torch.no_grad():  # afresh: upstream folds moved biases
            model(check_inputs)
        for unit in empty:
            reads = _consumers(dg, layer, unit, names)
            live = [(c, idxs) for c, idxs in reads if bool((_columns(modules[c], idxs) != 0).any())]
            if live and all(_fold_constant(modules[c], idxs, seen[c]) for c, idxs in live):
                folded[name] = folded.get(name, 0) + 1
    removed: dict[str, int] = {}
    widths: dict[str, list[int]] = {}
    for name, layer in single.items():
        n = _width(layer)
        dead = [
            u
            for u in range(n)
            if all(not bool((_columns(modules[c], idxs) != 0).any()) for c, idxs in _consumers(dg, layer, u, names))
        ]
        dead = dead[: n - 1]  # keep one unit: a layer of width 0 is not a layer
        if dead:
            with torch.no_grad():
                _group_of(dg, layer, dead).prune()
            removed[name] = len(dead)
        widths[name] = [n, _width(layer)]
    with torch.no_grad():
        out = model(check_inputs)
    scale = float(reference.abs().max()) or 1.0
    diff = float((out - reference).abs().max()) / scale if out.shape == reference.shape else float("inf")
    if diff > TOLERANCE:
        kept = copy.deepcopy(original)
        return kept, ShrinkReport(
            removed={},
            folded={},
            widths={},
            max_rel_diff=diff,
            note=f"not shrunk: the shrunk model's outputs differ by {diff:.2e} of their scale on the check inputs",
        )
    model.train(original.training)
    return model, ShrinkReport(removed=removed, folded=folded, widths=widths, max_rel_diff=diff)
