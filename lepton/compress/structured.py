"""Structured (filter / channel) pruning that physically removes channels, so parameters, MACs and
latency all drop; the dependency bookkeeping (conv -> next conv, conv -> flatten -> linear) is
Torch-Pruning's dependency graph, not ours.

    small = prune_channels(model, torch.zeros(1, 1, 28, 28), 0.5)   # a pruned copy
    fit(small, batches, cfg)                                          # fine-tune it
    spec = spec_for(small, ModelSpec("lenet5"))                       # rebuildable from the registry
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
import torch_pruning as tp
from pydantic import BaseModel, ConfigDict
from torch import nn

from lepton.errors import ConfigError
from lepton.models.graph import build_graph, capture
from lepton.models.normalize import attach_input_norm, input_norm_of
from lepton.models.registry import ModelSpec, resolve_factory
from lepton.utils.checks import check_float, check_int
from lepton.utils.timing import latency, torch_threads

Importance = Literal["l1", "l2", "group_l2", "fpgm"]

IMPORTANCES: dict[str, Callable[[], Any]] = {
    # Li et al. 2017: L1 norm of each filter of the layer being pruned
    "l1": lambda: tp.importance.MagnitudeImportance(p=1, group_reduction="first", normalizer=None),
    "l2": lambda: tp.importance.MagnitudeImportance(p=2, group_reduction="first", normalizer=None),
    # Torch-Pruning's default: L2 over every coupled weight (the filter and the next layer's inputs)
    "group_l2": lambda: tp.importance.MagnitudeImportance(p=2, group_reduction="mean", normalizer="mean"),
    # He et al. 2019: filters closest to the geometric median are the most redundant
    "fpgm": lambda: tp.importance.FPGMImportance(),
}

WIDTHS: dict[str, tuple[str, ...]] = {
    "lenet5": ("conv1", "conv2", "fc1"),
    "lenet5-classic": ("conv1", "conv2", "fc1", "fc2"),
    "lenet-300-100": ("fc1", "fc2"),
}
"""The width arguments of each registry model: the out-channels of the module of the same name."""


PRUNABLE = (nn.modules.conv._ConvNd, nn.Linear)


def _width(m: nn.Module) -> int:
    return m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features


@torch.no_grad()
def _run_order(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names of the conv / linear modules in the order one forward pass calls them."""
    order: list[str] = []
    names = {m: n for n, m in model.named_modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))}
    handles = [m.register_forward_hook(lambda m, _i, _o: order.append(names[m])) for m in names]
    was_training = model.training
    try:
        model.eval()
        model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return order


def _check_ratio(ratio: Any, owner: str) -> float:
    return float(
        check_float(
            ratio,
            "ratio",
            0,
            1,
            hi_open=True,
            owner=owner,
            hint="It is a fraction of channels; 0.5 removes half of them.",
        )
    )


# Ops whose channel bookkeeping Torch-Pruning gets right: elementwise maps, pools and global means over
# the spatial axes, the flatten in front of a classifier, linear layers on [..., features] inputs, concat.
# Any other op in a group (channel zero-padding, transposes, slicing, indexing, ...) makes the group's
# channels untouchable: its layers keep their full width (see ChannelReport.kept_full).
TRACKED_OPS = frozenset(
    "Add Sub Mul Div Neg Clone Relu Relu6 Hardtanh Gelu Silu Sigmoid Tanh LeakyRelu Elu Hardswish Hardsigmoid "
    "Softplus Mish NativeDropout MaxPool2DWithIndices MaxPool1DWithIndices AvgPool2D AvgPool1D "
    "AdaptiveAvgPool2D AdaptiveMaxPool2D Mean T Addmm Mm Bmm View UnsafeView ReshapeAlias Cat".split()
)


class ChannelGroup(BaseModel):
    """Layers whose output channels are coupled (a residual add, a depthwise conv) and pruned together."""

    model_config = ConfigDict(extra="forbid")

    layers: list[str]
    before: int
    after: int


class ChannelReport(BaseModel):
    """What :func:`prune_channels_with_report` did: the pruned groups, and each layer kept at full width with why."""

    model_config = ConfigDict(extra="forbid")

    importance: str
    groups: list[ChannelGroup]
    kept_full: dict[str, str]


def _op_name(node: Any) -> str:
    return re.sub(r"Backward\d*$", "", type(node.grad_fn).__name__) if node.grad_fn is not None else "?"


def _group_of(dg: Any, module: nn.Module, idxs: list[int]) -> Any:
    return dg.get_pruning_group(module, dg.get_pruner_of_module(module).prune_out_channels, idxs)


def _coupled(group: Any, names: dict[nn.Module, str]) -> tuple[list[str], list[str]]:
    """The conv / linear layers whose outputs a group prunes, and the untracked ops it passes through."""
    roots, opaque = [], []
    for dep, _ in group.items:
        target = dep.target.module
        if target in names:
            if isinstance(target, PRUNABLE) and dep.handler.__name__ == "prune_out_channels":
                roots.append(names[target])
        elif _op_name(dep.target) not in TRACKED_OPS:
            opaque.append(_op_name(dep.target))
    return list(dict.fromkeys(roots)), sorted(set(opaque))


@torch.no_grad()
def _verify(pruned: nn.Module, example_input: torch.Tensor, out_shape: torch.Size, groups: list[ChannelGroup]) -> None:
    """Raise unless the pruned model runs and gives outputs of the original shape, in eager mode and,
    when torch.fx can trace it, from its captured graph too (which catches widths frozen into constants)."""
    was_training = pruned.training
    pruned.eval()
    try:
        out = pruned(example_input)
        if out.shape != out_shape:
            raise RuntimeError(f"output shape {list(out.shape)} instead of {list(out_shape)}")
        try:
            graph = capture(pruned)
        except ConfigError:
            return  # not traceable: the eager check above is all there is
        rebuilt = build_graph(graph)  # the graph holds no input normalization (the spec does): attach it alike
        norm = input_norm_of(pruned)
        if norm is not None:
            attach_input_norm(rebuilt, norm.stats())
        rebuilt.load_state_dict(pruned.state_dict())
        if not torch.allclose(rebuilt.eval()(example_input), out, atol=1e-5, rtol=1e-4):
            raise RuntimeError("its captured graph computes something else")
    except RuntimeError as e:
        pruned_layers = [g.layers for g in groups]
        raise ConfigError(
            f"prune_channels: the pruned model is inconsistent ({' '.join(str(e).split())[:200]}); an op "
            f"Torch-Pruning does not track couples some of the pruned groups {pruned_layers}. Keep them at "
            "full width with ignored_layers=[...]."
        ) from None
    finally:
        pruned.train(was_training)


def prune_channels_with_report(
    model: nn.Module,
    example_input: torch.Tensor,
    ratio: float | Mapping[str, float],
    *,
    importance: Importance = "l1",
    ignored_layers: Sequence[str] | None = None,
) -> tuple[nn.Module, ChannelReport]:
    """A copy of ``model`` with the least important output channels of its conv / linear layers removed,
    and a report of what was pruned and what was kept at full width.

    Layers whose output channels are coupled (through residual adds, BatchNorm, depthwise convs, concat)
    form one group, pruned together with the same channel indices (Torch-Pruning's dependency graph);
    each group keeps ``max(1, round((1 - r) * n))`` of its ``n`` channels. A group that reaches the final
    classifier's outputs, an ignored layer's outputs, or an op Torch-Pruning cannot track (a channel
    ``F.pad``, a transpose, slicing: anything outside :data:`TRACKED_OPS`) keeps its full width, and
    ``kept_full`` says which op. The pruned model is then checked: it must run on ``example_input``,
    give outputs of the original shape, and (if torch.fx traces it) compute the same from its
    captured graph. ``model`` itself is left untouched.

    Args:
        model: the network to prune (any ``nn.Module`` that runs on ``example_input``).
        example_input: one batch of inputs, e.g. ``torch.zeros(1, 1, 28, 28)``.
        ratio: fraction of channels removed, for every prunable layer, or ``{layer: r}`` (unlisted
            groups keep their width; layers of one group must not get different ratios).
        importance: how channels are ranked ("l1", "l2", "group_l2", "fpgm").
        ignored_layers: layers whose output width must not change.

    Returns:
        ``(pruned_copy, ChannelReport)``.
    """
    if importance not in IMPORTANCES:
        raise ConfigError(
            f"The 'importance' parameter of prune_channels must be one of {sorted(IMPORTANCES)}. "
            f"Got {importance!r} instead."
        )
    model = copy.deepcopy(model)
    was_training = model.training
    model.eval()
    modules = dict(model.named_modules())
    names = {m: n for n, m in modules.items()}
    order = _run_order(model, example_input)
    if not order:
        raise ConfigError(f"{type(model).__name__} runs no Conv or Linear layer, so it has no channels to prune.")
    classifier = order[-1]
    ignored = set(ignored_layers or ())
    unknown = sorted(ignored - set(modules))
    if unknown:
        raise ConfigError(f"ignored_layers names unknown modules {unknown}; the layers are {order}.")
    candidates = [n for n in dict.fromkeys(order) if n != classifier and n not in ignored]
    if isinstance(ratio, Mapping):
        bad = sorted(set(ratio) - set(candidates))
        if bad:
            raise ConfigError(
                f"the ratio dict names {bad}, which cannot be pruned here (unknown, ignored or the "
                f"final classifier {classifier!r}); the prunable layers are {candidates}."
            )
        ratios = {n: _check_ratio(r, f"prune_channels for layer {n!r}") for n, r in ratio.items()}
    else:
        r = _check_ratio(ratio, "prune_channels")
        ratios = {n: r for n in candidates}
    with torch.no_grad():
        out_shape = model(example_input).shape
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    imp = IMPORTANCES[importance]()
    kept_full: dict[str, str] = {}
    plan: list[tuple[str, list[str], float]] = []
    seen: set[str] = set()
    for name in candidates:
        if name in seen:
            continue
        n = _width(modules[name])
        roots, opaque = _coupled(_group_of(dg, modules[name], list(range(n))), names)
        seen.update(roots)
        members = [m for m in roots if m in ratios]
        blocked = sorted(set(roots) - set(candidates))
        reason = (
            f"coupled with {', '.join(blocked)} (the classifier or an ignored layer)"
            if blocked
            else f"its channels reach {', '.join(opaque)}, which Torch-Pruning does not track"
            if opaque
            else ""
        )
        if reason:
            named = sorted(set(members) & set(ratio)) if isinstance(ratio, Mapping) else []
            if named:
                raise ConfigError(f"the ratio dict names {named}, which cannot be pruned: {reason}.")
            kept_full.update({m: reason for m in roots if m in candidates} or {name: reason})
            continue
        group_ratios = {ratios[m] for m in members}
        if len(group_ratios) > 1:
            raise ConfigError(
                f"layers {members} share their output channels (pruned together) but the ratio dict gives "
                f"them different ratios {sorted(group_ratios)}; give them one ratio."
            )
        if group_ratios:
            plan.append((name, roots, group_ratios.pop()))
    groups = []
    for name, roots, r in plan:
        module = modules[name]
        n = _width(module)
        keep = max(1, round((1.0 - r) * n))
        if keep < n:
            scores = imp(_group_of(dg, module, list(range(n))))
            drop = sorted(torch.argsort(scores)[: n - keep].tolist())
            _group_of(dg, module, drop).prune()
        groups.append(ChannelGroup(layers=roots, before=n, after=keep))
    _verify(model, example_input, out_shape, groups)
    model.train(was_training)
    return model, ChannelReport(importance=importance, groups=groups, kept_full=kept_full)


def prune_channels(
    model: nn.Module,
    example_input: torch.Tensor,
    ratio: float | Mapping[str, float],
    *,
    importance: Importance = "l1",
    ignored_layers: Sequence[str] | None = None,
) -> nn.Module:
    """The pruned copy of :func:`prune_channels_with_report`, without the report."""
    return prune_channels_with_report(
        model, example_input, ratio, importance=importance, ignored_layers=ignored_layers
    )[0]


def spec_for(model: nn.Module, base_spec: ModelSpec) -> ModelSpec:
    """The spec that rebuilds ``model`` (e.g. channel-pruned) from ``base_spec``, the spec it was built from.

    A registry LeNet keeps its name with its widths read off the layers (``{"conv1": 10, ...}``); any other
    model whose shapes no longer match ``base_spec`` carries its architecture as a graph
    (:meth:`ModelSpec.with_graph`). Either way the result is checked by rebuilding it and comparing
    every parameter shape.

    Args:
        model: the (pruned, folded) model to describe.
        base_spec: the spec of the model it came from.

    Returns:
        A spec whose ``build()`` has exactly ``model``'s parameter names and shapes.
    """
    if base_spec.name in WIDTHS and base_spec.graph is None and not base_spec.tt:
        expected = resolve_factory(base_spec.name)
        if type(model) is not expected:
            raise ConfigError(
                f"spec_for: the model is a {type(model).__name__} but the spec names {base_spec.name!r} "
                f"({expected.__name__}); pass the spec the model was built from."
            )
        modules = dict(model.named_modules())
        spec = ModelSpec(
            base_spec.name,
            base_spec.input_shape,
            base_spec.num_classes,
            {**base_spec.kwargs, **{w: _width(modules[w]) for w in WIDTHS[base_spec.name]}},
            normalize=base_spec.normalize,
        )
    else:
        spec = base_spec.with_graph(model)
    rebuilt = {k: tuple(v.shape) for k, v in spec.build().state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if rebuilt != actual:
        diff = sorted(k for k in rebuilt.keys() | actual.keys() if rebuilt.get(k) != actual.get(k))
        raise ConfigError(
            f"spec_for: rebuilding {spec.name!r} does not reproduce the model's parameters "
            f"(differs at {diff[:5]}); was the model changed beyond its layer widths?"
        )
    return spec


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch: int = 1,
    threads: int = 1,
    repeats: int = 50,
    warmup: int = 10,
) -> dict[str, float | int]:
    """Wall-clock time of one forward pass on ``batch`` zero inputs of ``input_shape`` (C, H, W), on
    ``threads`` intra-op threads (the previous setting is restored): p50 / p90 / mean in ms."""
    for name, value, low in (
        ("batch", batch, 1),
        ("threads", threads, 1),
        ("repeats", repeats, 1),
        ("warmup", warmup, 0),
    ):
        check_int(value, name, low, owner="measure_latency")
    x = torch.zeros(batch, *input_shape)
    was_training = model.training
    model.eval()
    try:
        with torch_threads(threads):
            t = latency(lambda: model(x), repeats, warmup=warmup)
    finally:
        model.train(was_training)
    return {
        "batch": batch,
        "threads": threads,
        "repeats": repeats,
        "p50_ms": t.p50_ms,
        "p90_ms": t.p90_ms,
        "mean_ms": t.mean_ms,
    }
