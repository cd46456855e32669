"""Where a model can be cut between edge and cloud, and the pieces between the cuts as modules.

The model is traced with torch.fx and run once on an example input to learn which nodes produce tensors.
In the graph's order (a topological order), a cut at position k puts the first k computing nodes on the
edge and the rest in the cloud. The cut is valid when exactly one tensor computed before it (or the input)
is read after it:

- parameters and buffers (``get_attr``) live on both sides and never cross;
- a non-tensor value that crosses (a size, a shape, the tuple of ``chunk``) is recomputed on the far side
  when it follows from the crossing tensor alone, and the cut is refused otherwise;
- cuts sit only after a node that produces a tensor, so every valid cut is listed once.

Between a residual block's fork and its add two tensors cross, so a block is atomic. Consecutive valid
cuts bound *segments*, each an ``fx.GraphModule`` of one tensor returning one tensor: the edge runs
``nn.Sequential(*segments[:k])``, the cloud ``nn.Sequential(*segments[k:])``, and the two composed are the
model, operator for operator. Tracing a registry model or a :class:`lepton.models.graph.GraphModel` (a
model decoded from a ``.lep`` or a graph-carrying checkpoint) runs no user code. A model that normalizes its
input (:mod:`lepton.models.normalize`) gets that as its first node, so the edge (or, at cut 0, the cloud)
applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from lepton.errors import ConfigError
from lepton.models.normalize import ATTR, input_norm_of


@dataclass(frozen=True)
class Cut:
    """A valid cut: ``position`` computing nodes before it, ``tensor`` the one tensor that crosses, and the
    non-tensor nodes before it that the far side recomputes from that tensor (in graph order)."""

    position: int
    tensor: fx.Node
    recompute: tuple[fx.Node, ...]


class _Kinds(fx.Interpreter):
    """Runs the traced graph once and records which nodes produce a tensor."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.is_tensor: dict[fx.Node, bool] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.is_tensor[n] = isinstance(out, torch.Tensor)
        return out


def trace(model: nn.Module) -> fx.GraphModule:
    """``model`` traced with torch.fx; ConfigError when it cannot be traced or takes other than one input."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 - fx raises many types for data-dependent control flow; all mean the same
        first = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(e).__name__}: {first}); the split "
            "planner needs a forward pass without branches on tensor values."
        ) from None
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise ConfigError(
            f"{type(model).__name__}.forward takes {len(inputs)} inputs; the split planner needs a model of "
            "one input tensor."
        )
    norm = input_norm_of(model)
    if norm is not None:  # fx traces forward without the hook that normalizes: make it the first node
        gm.add_submodule(ATTR, norm)
        with gm.graph.inserting_after(inputs[0]):
            normed = gm.graph.call_module(ATTR, (inputs[0],))
        inputs[0].replace_all_uses_with(normed, delete_user_cb=lambda user: user is not normed)
        gm.recompile()
    return gm


def find_cuts(gm: fx.GraphModule, example: torch.Tensor) -> list[Cut]:
    """Every valid cut of ``gm`` in graph order, from cloud-only (position 0, the input crosses) to
    edge-only (every node on the edge, the output "crosses"); ``example`` is one input batch."""
    was_training = gm.training
    gm.eval()
    kinds = _Kinds(gm)
    try:
        with torch.no_grad():
            result = kinds.run(example)
    finally:
        gm.train(was_training)
    if not isinstance(result, torch.Tensor):
        raise ConfigError(
            f"the model returns a {type(result).__name__}; the split planner needs a model that returns one tensor."
        )
    graph_nodes = list(gm.graph.nodes)
    (inp,) = (n for n in graph_nodes if n.op == "placeholder")
    output = graph_nodes[-1]
    nodes = [n for n in graph_nodes if n.op not in ("placeholder", "output", "get_attr")]
    pos = {n: i for i, n in enumerate(nodes)}
    pos[inp], pos[output] = -1, len(nodes)
    last_use = {n: max((pos[u] for u in n.users), default=-2) for n in [inp, *nodes]}

    def recomputable(v: fx.Node, tensor: fx.Node, seen: dict[fx.Node, bool]) -> bool:
        if v not in seen:
            seen[v] = all(
                a is tensor or a.op == "get_attr" or (not kinds.is_tensor[a] and recomputable(a, tensor, seen))
                for a in v.all_input_nodes
            )
        return seen[v]

    cuts: list[Cut] = []
    for k in range(len(nodes) + 1):
        if k and not kinds.is_tensor[nodes[k - 1]]:
            continue
        crossing = [v for v in [inp, *nodes[:k]] if last_use[v] >= k]
        tensors = [v for v in crossing if kinds.is_tensor[v]]
        if len(tensors) != 1:
            continue
        seen: dict[fx.Node, bool] = {}
        if all(kinds.is_tensor[v] or recomputable(v, tensors[0], seen) for v in crossing):
            recompute = tuple(v for v in nodes[:k] if not kinds.is_tensor[v] and seen.get(v))
            cuts.append(Cut(k, tensors[0], recompute))
    if not cuts or cuts[0].position != 0 or cuts[-1].position != len(nodes):
        raise ConfigError(
            "the model does not read its input or its output is not the last tensor it computes; the split "
            "planner cannot cut it."
        )
    return cuts


def _segment(gm: fx.GraphModule, start: Cut, end: Cut, nodes: list[fx.Node]) -> fx.GraphModule:
    """The nodes between two cuts (and the recomputed values they read) as a module of ``start.tensor``."""
    body = nodes[start.position : end.position]
    needed: set[fx.Node] = set()
    stack = [a for n in body for a in n.all_input_nodes]
    recompute = set(start.recompute)
    while stack:
        a = stack.pop()
        if a in recompute and a not in needed:
            needed.add(a)
            stack.extend(a.all_input_nodes)
    g = fx.Graph()
    env: dict[fx.Node, fx.Node] = {start.tensor: g.placeholder("x")}
    for n in [*(v for v in start.recompute if v in needed), *body]:
        for a in n.all_input_nodes:
            if a.op == "get_attr" and a not in env:
                env[a] = g.node_copy(a)
        env[n] = g.node_copy(n, lambda a: env[a])
    g.output(env[end.tensor])
    return fx.GraphModule(gm, g)


def _name(body: list[fx.Node], taken: set[str]) -> str:
    """A segment's display name: one node's name, or the module path its layers share (``layers.0``)."""
    parents = [str(n.target).split(".")[:-1] for n in body if n.op == "call_module"]
    common: list[str] = []
    if len(body) > 1 and parents:
        for parts in zip(*parents, strict=False):  # stops at the shortest path
            if len(set(parts)) != 1:
                break
            common.append(parts[0])
    name = ".".join(common) or body[-1].name
    base, i = name, 2
    while name in taken:
        name, i = f"{base}~{i}", i + 1
    taken.add(name)
    return name


def layer_chain(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """``model`` as its atomic segments (name, module) between consecutive valid cuts, applied one after
    another: a chain model gives one segment per layer, a residual block is one segment.

    Args:
        model: the model (any traceable nn.Module, a registry model, or a GraphModel from a model file).
        example: one input batch (e.g. ``torch.zeros(1, *spec.input_shape)``), run once to tell tensors from
            sizes and shapes.

    Returns:
        ``[(name, segment), ...]``; cut k sends the output of segment k - 1 (cut 0 sends the input).
    """
    gm = trace(model)
    cuts = find_cuts(gm, example)
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    taken: set[str] = set()
    return [
        (_name(nodes[a.position : b.position], taken), _segment(gm, a, b, nodes).train(model.training))
        for a, b in zip(cuts, cuts[1:], strict=False)
    ]


def head_tail(chain: list[tuple[str, nn.Module]], cut: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The modules the edge (segments before ``cut``) and the cloud (the rest) run, in eval mode."""
    if not 0 <= cut <= len(chain):
        raise ConfigError(f"cut must be in [0, {len(chain)}], got {cut}.")
    return nn.Sequential(*[m for _, m in chain[:cut]]).eval(), nn.Sequential(*[m for _, m in chain[cut:]]).eval()
