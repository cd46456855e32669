"""BatchNorm folding: every BatchNorm fed by a conv (or a linear layer) is merged into that layer's weights.

At inference a BatchNorm is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) * gamma + beta``;
when ``x`` is the output of a conv used nowhere else, scaling the conv's filter ``c`` by
``s_c = gamma_c / sqrt(var_c + eps)`` and setting its bias to ``(b_c - mean_c) * s_c + beta_c`` gives the
same output without the BatchNorm, which becomes ``nn.Identity``. Depthwise and grouped convs fold the
same way (their output channel is still dim 0 of the weight); a conv without a bias gains one.

    folded = fold_batchnorm(model)   # a copy; the model's running statistics are what gets folded
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from lepton.errors import ConfigError

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _calls(graph: fx.Graph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            counts[node.target] = counts.get(node.target, 0) + 1
    return counts


def fold_pairs(model: nn.Module, example_input: torch.Tensor | None = None) -> list[tuple[str, str]]:
    """``(layer, norm)`` pairs that :func:`fold_batchnorm` merges: a BatchNorm with running statistics
    whose only input is a conv or linear layer's output that goes nowhere else, each module called once.

    A linear layer folds only into a BatchNorm1d over its last axis, i.e. when its output is 2-D; that
    needs ``example_input`` to know (without it, linear + BatchNorm1d pairs are left alone).
    """
    try:
        gm = fx.symbolic_trace(model)
        if example_input is not None:
            with torch.no_grad():
                ShapeProp(gm.eval()).propagate(example_input)
    except Exception as e:  # noqa: BLE001 - fx raises many types on untraceable Python control flow
        raise ConfigError(
            f"fold_batchnorm: torch.fx cannot trace {type(model).__name__} ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:160]}); BatchNorm is folded only in traceable models."
        ) from None
    modules = dict(gm.named_modules())
    calls = _calls(gm.graph)
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], NORMS):
            continue
        norm, src = modules[node.target], node.args[0] if node.args else None
        if norm.running_mean is None or not isinstance(src, fx.Node) or src.op != "call_module":
            continue
        layer = modules[src.target]
        if not isinstance(layer, (*CONVS, nn.Linear)) or len(src.users) != 1 or calls[src.target] != 1:
            continue
        if calls[node.target] != 1 or len(node.args) != 1 or node.kwargs:
            continue
        if isinstance(layer, nn.Linear):
            meta = src.meta.get("tensor_meta")
            if meta is None or len(meta.shape) != 2:
                continue
        pairs.append((src.target, node.target))
    return pairs


@torch.no_grad()
def _fold(layer: nn.Module, norm: nn.Module) -> None:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps) if norm.affine else None
    if scale is None:
        scale = 1 / torch.sqrt(norm.running_var + norm.eps)
    shift = -norm.running_mean * scale + (norm.bias if norm.affine else 0)
    weight = layer.weight * scale.reshape(-1, *([1] * (layer.weight.dim() - 1)))
    bias = shift if layer.bias is None else layer.bias * scale + shift
    layer.weight = nn.Parameter(weight.detach().clone())
    layer.bias = nn.Parameter(bias.detach().clone())


def _set(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, attr = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, module)


def fold_batchnorm(model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
    """A copy of ``model`` with every foldable BatchNorm merged into the conv / linear layer feeding it.

    The pairs are those of :func:`fold_pairs` (found with torch.fx); each BatchNorm's running statistics
    and affine parameters are folded into the layer (which gains a bias if it had none) and the
    BatchNorm is replaced by ``nn.Identity``. In eval mode the copy computes what ``model`` computes in
    eval mode, to float rounding. The copy keeps ``model``'s training flag; ``model`` is left untouched.

    Args:
        model: a torch.fx-traceable network (ConfigError otherwise).
        example_input: one batch of inputs; needed only to fold linear + BatchNorm1d pairs.

    Returns:
        The folded copy.
    """
    pairs = fold_pairs(model, example_input)
    folded = copy.deepcopy(model)
    for layer, norm in pairs:
        _fold(folded.get_submodule(layer), folded.get_submodule(norm))
        _set(folded, norm, nn.Identity())
    return folded
