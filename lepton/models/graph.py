"""An architecture as data: a user model captured with ``torch.fx`` into JSON, rebuilt without its Python code.

A model that is not in the registry is saved with its *graph* so that loading it never imports the user's
module. :func:`capture` traces the model and writes, as plain JSON:

- ``modules``: every leaf module by its dotted path (``"layer1.0.conv1"``), its type from :data:`MODULES`
  (an allow-list of ``torch.nn`` layers) and the constructor arguments read back from the instance;
- ``attrs``: parameters and buffers the forward pass reads directly (``self.scale``), with shape and dtype;
- ``nodes``: the forward pass in order; each node is ``input``, ``module`` (call a module by path),
  ``function`` (a name from :data:`FUNCTIONS`), ``method`` (a tensor method from :data:`METHODS`),
  ``attr`` (read a parameter or buffer by path) or ``output``.

:func:`build_graph` rebuilds the module tree under the same dotted paths (so the state dict has the original
keys) and :class:`GraphModel` interprets the nodes. Every name, type, argument and value is checked against
the allow-lists: a graph can only call the operators listed here, never a callable named in the file. Node
arguments are JSON scalars, lists, and one-key objects: ``{"node": name}``, ``{"tuple": [...]}``,
``{"slice": [start, stop, step]}``, ``{"ellipsis": true}``, ``{"dtype": name}``, ``{"training": true}``
(the module's current training flag, for ``dropout``).
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from lepton.errors import ConfigError, FormatError

GRAPH_VERSION = 1
MAX_NODES = 20_000
MAX_MODULES = 10_000
MAX_VALUE_DEPTH = 8
MAX_DIM = 1 << 20  # channels, features, kernel sizes
MAX_PATH_DEPTH = 16

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}|[0-9]{1,6}")

MODULES: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        nn.Conv1d,
        nn.Conv2d,
        nn.Linear,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.ReLU,
        nn.ReLU6,
        nn.GELU,
        nn.SiLU,
        nn.Sigmoid,
        nn.Tanh,
        nn.Hardswish,
        nn.Hardsigmoid,
        nn.LeakyReLU,
        nn.ELU,
        nn.Softmax,
        nn.LogSoftmax,
        nn.Identity,
        nn.Flatten,
        nn.Dropout,
        nn.Dropout2d,
        nn.MaxPool1d,
        nn.MaxPool2d,
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool1d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveMaxPool2d,
    )
}
"""Leaf module types a graph may hold, by class name."""

FUNCTIONS: dict[str, Any] = {
    **{
        f"operator.{n}": getattr(operator, n)
        for n in ("add", "sub", "mul", "truediv", "floordiv", "neg", "matmul", "getitem", "iadd", "imul", "pow")
    },
    **{
        f"torch.{n}": getattr(torch, n)
        for n in (
            "add",
            "sub",
            "mul",
            "div",
            "cat",
            "stack",
            "flatten",
            "reshape",
            "transpose",
            "permute",
            "squeeze",
            "unsqueeze",
            "relu",
            "sigmoid",
            "tanh",
            "mean",
            "sum",
            "amax",
            "softmax",
            "log_softmax",
            "matmul",
            "chunk",
            "split",
            "clamp",
            "maximum",
            "minimum",
            "exp",
            "sqrt",
            "abs",
        )
    },
    **{
        f"F.{n}": getattr(F, n)
        for n in (
            "relu",
            "relu6",
            "gelu",
            "silu",
            "hardswish",
            "hardsigmoid",
            "leaky_relu",
            "elu",
            "sigmoid",
            "tanh",
            "max_pool1d",
            "max_pool2d",
            "avg_pool1d",
            "avg_pool2d",
            "adaptive_avg_pool1d",
            "adaptive_avg_pool2d",
            "adaptive_max_pool2d",
            "dropout",
            "dropout2d",
            "softmax",
            "log_softmax",
            "pad",
            "normalize",
        )
    },
}
"""Functions a graph may call, by the name stored in the file."""

_SHAPE_ATTRS = ("shape", "ndim")
FUNCTIONS["getattr"] = getattr  # only ever called on a tensor for one of _SHAPE_ATTRS (checked in _call)

METHODS = frozenset(
    (
        "view",
        "reshape",
        "flatten",
        "size",
        "dim",
        "relu",
        "sigmoid",
        "tanh",
        "mean",
        "sum",
        "amax",
        "permute",
        "transpose",
        "contiguous",
        "add",
        "sub",
        "mul",
        "div",
        "softmax",
        "log_softmax",
        "chunk",
        "split",
        "unsqueeze",
        "squeeze",
        "expand",
        "expand_as",
        "view_as",
        "reshape_as",
        "clamp",
        "pow",
        "sqrt",
        "exp",
        "abs",
        "neg",
        "t",
        "matmul",
        "float",
    )
)
"""Tensor methods a graph may call."""

_TRAINING_ARG = {"F.dropout": 2, "F.dropout2d": 2}  # position of the ``training`` argument
_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "bool": torch.bool,
}
_FUNCTION_NAMES = {id(fn): name for name, fn in FUNCTIONS.items()}


# ---- module arguments -------------------------------------------------------------------------------------


def _int(lo: int, hi: int = MAX_DIM) -> Any:
    def check(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    return check


def _ints(lo: int, hi: int = MAX_DIM, *, none_ok: bool = False) -> Any:
    one = _int(lo, hi)

    def check(v: Any) -> bool:
        if isinstance(v, list):
            return 1 <= len(v) <= 3 and all(one(x) or (none_ok and x is None) for x in v)
        return one(v) or (none_ok and v is None)

    return check


def _float(lo: float, hi: float, *, none_ok: bool = False) -> Any:
    def check(v: Any) -> bool:
        if v is None:
            return none_ok
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi

    return check


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _one_of(*options: Any) -> Any:
    return lambda v: isinstance(v, str) and v in options


_ARGS: dict[str, Any] = {  # constructor argument -> check of its JSON value
    "in_channels": _int(1),
    "out_channels": _int(1),
    "in_features": _int(1),
    "out_features": _int(1),
    "num_features": _int(1),
    "num_channels": _int(1),
    "num_groups": _int(1),
    "groups": _int(1),
    "kernel_size": _ints(1),
    "stride": _ints(1),
    "dilation": _ints(1),
    "padding": lambda v: _ints(0)(v) or _one_of("same", "valid")(v),
    "output_size": _ints(1, none_ok=True),
    "bias": _bool,
    "affine": _bool,
    "track_running_stats": _bool,
    "elementwise_affine": _bool,
    "inplace": _bool,
    "ceil_mode": _bool,
    "count_include_pad": _bool,
    "return_indices": lambda v: v is False,
    "eps": _float(1e-30, 1.0),
    "momentum": _float(0.0, 1.0, none_ok=True),
    "p": _float(0.0, 1.0),
    "negative_slope": _float(-1e6, 1e6),
    "alpha": _float(-1e6, 1e6),
    "padding_mode": _one_of("zeros", "reflect", "replicate", "circular"),
    "approximate": _one_of("none", "tanh"),
    "dim": lambda v: v is None or _int(-64, 64)(v),
    "start_dim": _int(-64, 64),
    "end_dim": _int(-64, 64),
    "normalized_shape": lambda v: isinstance(v, list) and 1 <= len(v) <= 8 and all(_int(1)(x) for x in v),
    "divisor_override": lambda v: v is None or _int(1)(v),
}
_SKIP_ARGS = {"self", "device", "dtype", "padding_mode_default"}


def _constructor_args(cls: type[nn.Module]) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p not in _SKIP_ARGS and p in _ARGS]


def _json_arg(m: nn.Module, name: str) -> Any:
    if name == "bias":  # the argument is a flag; the attribute is the tensor or None
        return getattr(m, "bias", None) is not None
    value = getattr(m, name)
    return list(value) if isinstance(value, tuple) else value


def _module_args(path: str, m: nn.Module) -> dict[str, Any]:
    cls = type(m)
    if MODULES.get(cls.__name__) is not cls:
        raise ConfigError(
            f"cannot save the architecture as data: layer {path!r} is a {cls.__module__}."
            f"{cls.__qualname__}, which is not among the supported layers ({', '.join(MODULES)}); "
            "save it with a registry model, or load it later with trust_code=True."
        )
    args = {name: _json_arg(m, name) for name in _constructor_args(cls)}
    for name, value in args.items():
        if not _ARGS[name](value):
            raise ConfigError(
                f"cannot save the architecture as data: layer {path!r} ({cls.__name__}) has "
                f"{name}={value!r}, outside what a model file may hold."
            )
    return args


# ---- capture ------------------------------------------------------------------------------------------------


class _Tracer(fx.Tracer):
    """Leaves are the allow-listed layers; everything else is traced through (and refused if not allowed)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m) in MODULES.values() or super().is_leaf_module(m, qualname)


def _encode_value(v: Any, path: str) -> Any:
    if isinstance(v, fx.Node):
        return {"node": v.name}
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ConfigError(f"cannot save the architecture as data: {path} uses the constant {v}.")
        return v
    if isinstance(v, tuple):
        return {"tuple": [_encode_value(x, path) for x in v]}
    if isinstance(v, list):
        return [_encode_value(x, path) for x in v]
    if isinstance(v, slice):
        return {"slice": [_encode_value(x, path) for x in (v.start, v.stop, v.step)]}
    if v is Ellipsis:
        return {"ellipsis": True}
    if isinstance(v, torch.dtype) and v in _DTYPES.values():
        return {"dtype": next(k for k, d in _DTYPES.items() if d is v)}
    raise ConfigError(
        f"cannot save the architecture as data: {path} uses a constant of type "
        f"{type(v).__name__} ({v!r:.60}), which a model file cannot hold."
    )


def capture(model: nn.Module) -> dict[str, Any]:
    """The graph of ``model`` as JSON-ready data; raises ConfigError naming what cannot be captured."""
    if isinstance(model, GraphModel) and _still_fits(model):
        return model.graph
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # noqa: BLE001 - fx raises many types for untraceable code; all mean the same here
        raise ConfigError(
            f"cannot save the architecture of {type(model).__name__} as data: torch.fx cannot trace "
            f"it ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); models whose "
            "forward branches on tensor values need trust_code=True to load."
        ) from None
    modules: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    nodes: list[dict[str, Any]] = []
    for node in graph.nodes:
        where = f"node {node.name!r}"
        entry: dict[str, Any] = {"op": "", "name": node.name}
        if node.op == "placeholder":
            entry["op"] = "input"
        elif node.op == "get_attr":
            value = _get_path(model, node.target)
            if not isinstance(value, torch.Tensor):
                raise ConfigError(
                    f"cannot save the architecture as data: {where} reads {node.target!r}, "
                    f"a {type(value).__name__}, not a parameter or buffer."
                )
            kind = "parameter" if isinstance(value, nn.Parameter) else "buffer"
            dtype = next((k for k, d in _DTYPES.items() if d is value.dtype), None)
            if dtype is None:
                raise ConfigError(f"cannot save the architecture as data: {node.target!r} has dtype {value.dtype}.")
            attrs[node.target] = {"kind": kind, "shape": list(value.shape), "dtype": dtype}
            entry.update(op="attr", target=node.target)
        elif node.op == "call_module":
            m = model.get_submodule(node.target)
            modules[node.target] = {"type": type(m).__name__, "args": _module_args(node.target, m)}
            entry.update(op="module", target=node.target)
        elif node.op == "call_function":
            name = _FUNCTION_NAMES.get(id(node.target))
            if name is None:
                fn = getattr(node.target, "__name__", repr(node.target))
                raise ConfigError(
                    f"cannot save the architecture as data: {where} calls {fn}, which is not among "
                    "the supported operators (lepton.models.graph.FUNCTIONS)."
                )
            entry.update(op="function", target=name)
        elif node.op == "call_method":
            if node.target not in METHODS:
                raise ConfigError(
                    f"cannot save the architecture as data: {where} calls the tensor method "
                    f"{node.target!r}, which is not supported (lepton.models.graph.METHODS)."
                )
            entry.update(op="method", target=node.target)
        elif node.op == "output":
            entry["op"] = "output"
        args = [_encode_value(a, where) for a in node.args]
        kwargs = {k: _encode_value(v, where) for k, v in node.kwargs.items()}
        if entry.get("target") in _TRAINING_ARG:  # follow the module's training flag, not the one at trace time
            pos = _TRAINING_ARG[entry["target"]]
            if len(args) > pos:
                args[pos] = {"training": True}
            else:
                kwargs["training"] = {"training": True}
        if node.op != "get_attr" and (args or kwargs):
            entry["args"], entry["kwargs"] = args, kwargs
        nodes.append(entry)
    graph_dict = {"version": GRAPH_VERSION, "modules": modules, "attrs": attrs, "nodes": nodes}
    return check_graph(graph_dict, error=ConfigError)


def _still_fits(model: GraphModel) -> bool:
    """Whether ``model``'s modules and attributes are still those its stored graph describes (a pass such as
    BatchNorm folding or channel pruning may have swapped or resized them; then it is traced afresh)."""
    graph = model.graph
    try:
        for path, m in graph["modules"].items():
            layer = model.get_submodule(path)
            if type(layer).__name__ != m["type"] or _module_args(path, layer) != m["args"]:
                return False
        for path, a in graph["attrs"].items():
            value = _get_path(model, path)
            if not isinstance(value, torch.Tensor) or list(value.shape) != a["shape"]:
                return False
    except (AttributeError, ConfigError):
        return False
    return True


def _get_path(root: nn.Module, path: str) -> Any:
    obj: Any = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


# ---- validation ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ref:
    name: str


@dataclass(frozen=True)
class _Training:
    pass


@dataclass(frozen=True)
class _Node:
    op: str
    name: str
    target: str | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@functools.cache
def _reserved_names() -> frozenset[str]:
    """Names a layer path may not use: attributes every module (or a GraphModel) already has."""
    return frozenset(dir(nn.Module())) | frozenset(dir(GraphModel)) | {"_graph", "_nodes"}


def _check_path(path: Any, what: str, error: type[Exception]) -> str:
    if not isinstance(path, str) or not path:
        raise error(f"{what}: expected a dotted module path, got {path!r:.80}.")
    parts = path.split(".")
    if len(parts) > MAX_PATH_DEPTH or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise error(
            f"{what}: path {path!r:.80} is not a dotted path of identifiers or indices (at most {MAX_PATH_DEPTH} deep)."
        )
    for p in parts:
        if p in _reserved_names():
            raise error(f"{what}: path {path!r:.80} uses the reserved name {p!r}.")
    return path


def _decode_value(v: Any, names: set[str], what: str, error: type[Exception], depth: int = 0) -> Any:
    if depth > MAX_VALUE_DEPTH:
        raise error(f"{what}: argument nested deeper than {MAX_VALUE_DEPTH}.")
    if v is None or isinstance(v, (bool, int)):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise error(f"{what}: non-finite constant {v}.")
        return v
    if isinstance(v, str):
        if len(v) > 64:
            raise error(f"{what}: string constant longer than 64 characters.")
        return v
    if isinstance(v, list):
        if len(v) > 64:
            raise error(f"{what}: list constant of {len(v)} items (at most 64).")
        return [_decode_value(x, names, what, error, depth + 1) for x in v]
    if isinstance(v, dict) and len(v) == 1:
        ((key, inner),) = v.items()
        if key == "node" and isinstance(inner, str) and inner in names:
            return _Ref(inner)
        if key == "tuple" and isinstance(inner, list) and len(inner) <= 64:
            return tuple(_decode_value(x, names, what, error, depth + 1) for x in inner)
        if key == "slice" and isinstance(inner, list) and len(inner) == 3:
            parts = [_decode_value(x, names, what, error, depth + 1) for x in inner]
            if all(p is None or isinstance(p, (_Ref, int)) and not isinstance(p, bool) for p in parts):
                return slice(*parts)
        if key == "ellipsis" and inner is True:
            return Ellipsis
        if key == "dtype" and inner in _DTYPES:
            return _DTYPES[inner]
        if key == "training" and inner is True:
            return _Training()
    raise error(
        f"{what}: argument {v!r:.80} is not a constant, a node reference or one of the tagged values "
        "(tuple, slice, ellipsis, dtype, training)."
    )


def check_graph(graph: Any, *, error: type[Exception] = FormatError) -> dict[str, Any]:
    """Validate a graph's JSON form (types, names, allow-lists, references); returns it unchanged.

    Raises ``error`` (FormatError for files) naming the first problem. Sizes are bounded here; whether
    the layers fit together and the weights fit the layers is checked by building on the meta device.
    """
    _parse(graph, error)
    return graph


def _parse(graph: Any, error: type[Exception]) -> tuple[list[_Node], dict[str, Any], dict[str, Any]]:
    if not isinstance(graph, dict) or set(graph) != {"version", "modules", "attrs", "nodes"}:
        raise error("model graph: expected an object with exactly version, modules, attrs and nodes.")
    if graph["version"] != GRAPH_VERSION or isinstance(graph["version"], bool):
        raise error(
            f"model graph version {graph['version']!r:.20} is not supported (this Lepton reads "
            f"{GRAPH_VERSION}); upgrade Lepton."
        )
    modules, attrs, raw_nodes = graph["modules"], graph["attrs"], graph["nodes"]
    if not isinstance(modules, dict) or len(modules) > MAX_MODULES:
        raise error(f"model graph: modules must be an object of at most {MAX_MODULES} layers.")
    if not isinstance(attrs, dict) or len(attrs) > MAX_MODULES:
        raise error(f"model graph: attrs must be an object of at most {MAX_MODULES} entries.")
    if not isinstance(raw_nodes, list) or not 2 <= len(raw_nodes) <= MAX_NODES:
        raise error(f"model graph: nodes must be a list of 2 to {MAX_NODES} nodes.")
    for path, m in modules.items():
        what = f"model graph layer {path!r:.80}"
        _check_path(path, what, error)
        if not isinstance(m, dict) or set(m) != {"type", "args"} or not isinstance(m["args"], dict):
            raise error(f"{what}: expected an object with type and args.")
        cls = MODULES.get(m["type"]) if isinstance(m["type"], str) else None
        if cls is None:
            raise error(
                f"{what}: layer type {m['type']!r:.80} is not supported; a model file may only use "
                f"{', '.join(MODULES)}."
            )
        allowed = set(_constructor_args(cls))
        for name, value in m["args"].items():
            if name not in allowed:
                raise error(f"{what}: {cls.__name__} takes no argument {name!r:.80}.")
            if not _ARGS[name](value):
                raise error(f"{what}: {cls.__name__} argument {name}={value!r:.80} is out of range.")
    for path, a in attrs.items():
        what = f"model graph attribute {path!r:.80}"
        _check_path(path, what, error)
        if (
            not isinstance(a, dict)
            or set(a) != {"kind", "shape", "dtype"}
            or a["kind"] not in ("parameter", "buffer")
            or a["dtype"] not in _DTYPES
            or not isinstance(a["shape"], list)
            or len(a["shape"]) > 8
            or not all(_int(0)(s) for s in a["shape"])
        ):
            raise error(f"{what}: expected kind (parameter or buffer), shape (up to 8 sizes) and dtype.")
    paths = [*modules, *attrs]
    for p in paths:  # a layer is a leaf: nothing may live below it, and no path is used twice
        if any(q.startswith(p + ".") for q in paths) and p in modules:
            raise error(f"model graph: layer {p!r:.80} has other layers or attributes below it.")
    if len(set(paths)) != len(paths):
        raise error("model graph: a path is both a layer and an attribute.")
    nodes: list[_Node] = []
    names: set[str] = set()
    for i, raw in enumerate(raw_nodes):
        what = f"model graph node {i}"
        if not isinstance(raw, dict) or not {"op", "name"} <= set(raw) <= {"op", "name", "target", "args", "kwargs"}:
            raise error(f"{what}: expected an object with op, name (and target, args, kwargs).")
        op, name, target = raw["op"], raw["name"], raw.get("target")
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in names:
            raise error(f"{what}: name {name!r:.80} is not a new identifier.")
        if op == "module" and target not in modules:
            raise error(f"{what}: calls layer {target!r:.80}, which the graph does not define.")
        elif op == "attr" and target not in attrs:
            raise error(f"{what}: reads {target!r:.80}, which the graph does not define.")
        elif op == "function" and target not in FUNCTIONS:
            raise error(f"{what}: function {target!r:.80} is not among the supported operators.")
        elif op == "method" and target not in METHODS:
            raise error(f"{what}: tensor method {target!r:.80} is not supported.")
        elif op in ("input", "output") and target is not None:
            raise error(f"{what}: an {op} node has no target.")
        elif op not in ("input", "module", "attr", "function", "method", "output"):
            raise error(f"{what}: op {op!r:.80} is not one of input, module, attr, function, method, output.")
        args, kwargs = raw.get("args", []), raw.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict) or len(args) > 64 or len(kwargs) > 64:
            raise error(f"{what}: args must be a list and kwargs an object (at most 64 each).")
        if op in ("input", "attr") and (args or kwargs):
            raise error(f"{what}: an {op} node takes no arguments.")
        if op == "method" and not args:
            raise error(f"{what}: a method call needs the tensor as its first argument.")
        if any(not isinstance(k, str) or not _NAME.fullmatch(k) for k in kwargs):
            raise error(f"{what}: keyword names must be identifiers.")
        nodes.append(
            _Node(
                op,
                name,
                target,
                tuple(_decode_value(a, names, what, error) for a in args),
                {k: _decode_value(v, names, what, error) for k, v in kwargs.items()},
            )
        )
        names.add(name)
    if [n.op for n in nodes].count("output") != 1 or nodes[-1].op != "output":
        raise error("model graph: exactly one output node, at the end.")
    if nodes[0].op != "input" or [n.op for n in nodes].count("input") != 1 or len(nodes[-1].args) != 1:
        raise error(
            "model graph: one input node, first, and an output that returns one value (a model file "
            "holds models of one input tensor)."
        )
    return nodes, modules, attrs


# ---- rebuild and run ----------------------------------------------------------------------------------------


def _container(root: nn.Module, parts: list[str]) -> nn.Module:
    parent = root
    for part in parts:
        child = parent._modules.get(part)
        if child is None:
            child = nn.Module()
            parent.add_module(part, child)
        parent = child
    return parent


class GraphModel(nn.Module):
    """A model rebuilt from its graph: the original module tree (state-dict keys unchanged) and an
    interpreter over the allow-listed nodes."""

    def __init__(self, graph: dict[str, Any]) -> None:
        super().__init__()
        nodes, modules, attrs = _parse(graph, FormatError)
        self._graph = graph
        self._nodes = nodes
        for path, m in modules.items():
            *parents, leaf = path.split(".")
            try:
                layer = MODULES[m["type"]](**m["args"])
            except (TypeError, ValueError, RuntimeError) as e:
                raise FormatError(
                    f"model graph layer {path!r}: {m['type']}({m['args']}) is invalid: {str(e).splitlines()[0]}"
                ) from None
            _container(self, parents).add_module(leaf, layer)
        for path, a in attrs.items():
            *parents, leaf = path.split(".")
            tensor = torch.zeros(a["shape"], dtype=_DTYPES[a["dtype"]])
            owner = _container(self, parents)
            if a["kind"] == "parameter":
                owner.register_parameter(leaf, nn.Parameter(tensor, requires_grad=tensor.is_floating_point()))
            else:
                owner.register_buffer(leaf, tensor)

    @property
    def graph(self) -> dict[str, Any]:
        """The validated JSON form this model was built from."""
        return self._graph

    def forward(self, x: torch.Tensor) -> Any:
        env: dict[str, Any] = {}
        for node in self._nodes:
            if node.op == "input":
                env[node.name] = x
                continue
            args = [self._value(a, env) for a in node.args]
            kwargs = {k: self._value(v, env) for k, v in node.kwargs.items()}
            if node.op == "output":
                return args[0]
            env[node.name] = self._call(node, args, kwargs)
        raise AssertionError("unreachable: a checked graph ends with its output node")

    def _call(self, node: _Node, args: list[Any], kwargs: dict[str, Any]) -> Any:
        target = node.target
        assert target is not None  # checked by _parse for every op but input and output
        if node.op == "module":
            return self.get_submodule(target)(*args, **kwargs)
        if node.op == "attr":
            return _get_path(self, target)
        if node.op == "method":
            if not isinstance(args[0], (torch.Tensor, fx.Proxy)):
                raise TypeError(f"node {node.name!r}: method {target!r} called on a {type(args[0]).__name__}.")
            return getattr(args[0], target)(*args[1:], **kwargs)
        if target == "getattr" and (
            len(args) != 2 or kwargs or args[1] not in _SHAPE_ATTRS or not isinstance(args[0], (torch.Tensor, fx.Proxy))
        ):
            raise TypeError(f"node {node.name!r}: getattr may only read a tensor's {' or '.join(_SHAPE_ATTRS)}.")
        return FUNCTIONS[target](*args, **kwargs)

    def _value(self, v: Any, env: dict[str, Any]) -> Any:
        if isinstance(v, _Ref):
            return env[v.name]
        if isinstance(v, _Training):
            return self.training
        if isinstance(v, list):
            return [self._value(x, env) for x in v]
        if isinstance(v, tuple):
            return tuple(self._value(x, env) for x in v)
        if isinstance(v, slice):
            return slice(self._value(v.start, env), self._value(v.stop, env), self._value(v.step, env))
        return v


def build_graph(graph: dict[str, Any]) -> GraphModel:
    """A :class:`GraphModel` from a graph's JSON form (validated first; raises FormatError)."""
    return GraphModel(graph)
