"""Structured (filter / channel) pruning that physically removes channels, so parameters, MACs and
latency all drop; the dependency bookkeeping (conv -> next conv, conv -> flatten -> linear) is
Torch-Pruning's dependency graph, not ours.

    small = prune_channels(model, torch.zeros(1, 1, 28, 28), 0.5)   # a pruned copy
    fit(small, batches, cfg)                                          # fine-tune it
    spec = spec_for(small, ModelSpec("lenet5"))                       # rebuildable from the registry
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
import torch_pruning as tp
from torch import nn

from lepton.errors import ConfigError
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


def prune_channels(
    model: nn.Module,
    example_input: torch.Tensor,
    ratio: float | Mapping[str, float],
    *,
    importance: Importance = "l1",
    ignored_layers: Sequence[str] | None = None,
) -> nn.Module:
    """A copy of ``model`` with the least important output channels of its conv / linear layers removed.

    Each pruned layer keeps ``max(1, round((1 - r) * n))`` of its ``n`` output channels, ``r`` being
    ``ratio`` (a float for every layer, or ``{layer: r}``; unlisted layers keep their width); the
    layers that consume those channels lose the matching inputs. The final classifier (the last
    conv / linear layer a forward pass runs) and ``ignored_layers`` keep all their outputs.
    ``model`` itself is left untouched.
    """
    if importance not in IMPORTANCES:
        raise ConfigError(
            f"The 'importance' parameter of prune_channels must be one of {sorted(IMPORTANCES)}. "
            f"Got {importance!r} instead."
        )
    model = copy.deepcopy(model)
    modules = dict(model.named_modules())
    order = _run_order(model, example_input)
    if not order:
        raise ConfigError(f"{type(model).__name__} runs no Conv or Linear layer, so it has no channels to prune.")
    classifier = order[-1]
    ignored = set(ignored_layers or ())
    unknown = sorted(ignored - set(modules))
    if unknown:
        raise ConfigError(f"ignored_layers names unknown modules {unknown}; the layers are {order}.")
    prunable = [n for n in dict.fromkeys(order) if n != classifier and n not in ignored]
    if isinstance(ratio, Mapping):
        bad = sorted(set(ratio) - set(prunable))
        if bad:
            raise ConfigError(
                f"the ratio dict names {bad}, which cannot be pruned here (unknown, ignored or the "
                f"final classifier {classifier!r}); the prunable layers are {prunable}."
            )
        ratios = {n: _check_ratio(r, f"prune_channels for layer {n!r}") for n, r in ratio.items()}
    else:
        r = _check_ratio(ratio, "prune_channels")
        ratios = {n: r for n in prunable}
    # Torch-Pruning keeps int(n * (1 - r')) channels; choose r' so that it keeps exactly round((1 - r) * n).
    exact: dict[nn.Module, float] = {}
    for name, r in ratios.items():
        n = _width(modules[name])
        keep = max(1, round((1.0 - r) * n))
        exact[modules[name]] = 1.0 - (keep + 0.5) / n
    pruner = tp.pruner.BasePruner(
        model,
        example_input,
        IMPORTANCES[importance](),
        pruning_ratio=0.0,
        pruning_ratio_dict=exact,
        ignored_layers=[modules[classifier], *(modules[n] for n in sorted(ignored))],
    )
    pruner.step()
    return model


def spec_for(model: nn.Module, base_spec: ModelSpec) -> ModelSpec:
    """The spec of a (channel-pruned) LeNet-family ``model``: ``base_spec`` with its widths read off the
    layers, checked by rebuilding it and comparing every parameter shape."""
    if base_spec.name not in WIDTHS:
        raise ConfigError(
            f"spec_for knows the widths of {sorted(WIDTHS)}, not {base_spec.name!r}; save a pruned "
            "custom model with a factory that takes its widths as arguments."
        )
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
    )
    rebuilt = {k: tuple(v.shape) for k, v in spec.build().state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if rebuilt != actual:
        diff = sorted(k for k in rebuilt.keys() | actual.keys() if rebuilt.get(k) != actual.get(k))
        raise ConfigError(
            f"spec_for: rebuilding {spec.to_dict()} does not reproduce the model's parameters "
            f"(differs at {diff}); was the model changed beyond its layer widths?"
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
