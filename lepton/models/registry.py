"""Build models by registry name, from a stored graph, or (only when trusted) by ``package.module:factory``;
count their parameters and MACs.

A name that is not in the registry is Python code: :func:`resolve_factory` imports it only with
``trust_code=True`` and says so on stderr. Files never need that for models Lepton saved itself, since
those carry their architecture as data (:mod:`lepton.models.graph`).
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from lepton.errors import ConfigError, FormatError, UntrustedCodeError
from lepton.models.graph import build_graph, capture, check_graph
from lepton.models.lenet import LeNet5, LeNet5Classic, LeNet300100
from lepton.models.normalize import (
    Normalization,
    attach_input_norm,
    check_normalization,
    input_norm_of,
    same_normalization,
)
from lepton.models.tensor_train import apply_tt_layout, check_tt_layout
from lepton.models.zoo import MLPMixerSmall, MobileNetV2Small, ResNet20

MODELS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "lenet5": (LeNet5, "LeNet-5 of Caffe / Deep Compression: 20-50-500-10, 431,080 params"),
    "lenet5-classic": (LeNet5Classic, "LeCun 1998 LeNet-5: 6-16-120-84-10, 61,706 params"),
    "lenet-300-100": (LeNet300100, "fully connected 784-300-100-10, 266,610 params"),
    "resnet20": (ResNet20, "He et al.'s CIFAR ResNet-20: BatchNorm, residual adds, 16-32-64, 269,434 params"),
    "mobilenetv2-small": (MobileNetV2Small, "MobileNetV2 inverted residuals, depthwise 3x3, ReLU6, 134,538 params"),
    "mlp-mixer-small": (MLPMixerSmall, "MLP-Mixer, 4x4 patches, 4 blocks of width 64, 174,246 params"),
}


MAX_SIDE = 8192  # input height and width
MAX_CHANNELS = 4096
MAX_CLASSES = 1_000_000
MAX_MODEL_ELEMENTS = 1 << 28  # parameters and buffers of a model built from a file (1 GiB of float32)


def resolve_factory(name: str, *, trust_code: bool = False) -> Callable[..., nn.Module]:
    """The callable behind a registry name or ``package.module:factory``.

    A ``package.module:factory`` is imported only with ``trust_code=True`` (it runs that module's code);
    otherwise :class:`UntrustedCodeError` says what the name asks for and how to allow it.
    """
    if name in MODELS:
        return MODELS[name][0]
    if ":" not in name:
        raise ConfigError(f"unknown model {name!r}: use one of {', '.join(MODELS)} or 'package.module:factory'.")
    module_name, _, attr = name.partition(":")
    if not trust_code:
        raise UntrustedCodeError(
            f"model {name!r} is Python code: building it would import module {module_name!r} and call {attr!r}. "
            "Lepton runs user code only when asked: if you trust it, pass --trust-code (CLI) or "
            "trust_code=True (Python)."
        )
    print(f"lepton: --trust-code: importing {module_name!r} and calling {attr!r} to build the model", file=sys.stderr)
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"model {name!r}: cannot import {attr!r} from {module_name!r} ({e}); "
            "check that the module is importable (on PYTHONPATH)."
        ) from e
    if not callable(factory):
        raise ConfigError(f"model {name!r}: {attr!r} is not callable.")
    return factory


def build_model(
    name: str,
    input_shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    *,
    trust_code: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Instantiate ``name`` for images of ``input_shape`` (C, H, W) and ``num_classes`` outputs.

    User factories (``package.module:factory``, only with ``trust_code=True``) receive ``in_channels``,
    ``image_size`` and ``num_classes`` if they accept them. Non-square images (H != W) need a factory that takes
    no ``image_size`` (the registry's all do take one).
    """
    factory = resolve_factory(name, trust_code=trust_code)
    c, h, w = input_shape
    shape_args = {"in_channels": c, "image_size": h, "num_classes": num_classes}
    try:
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        shape_args = {k: v for k, v in shape_args.items() if takes_any or k in params}
    except (TypeError, ValueError):
        pass  # builtins without a signature: pass the shape arguments and let the call decide
    if h != w and "image_size" in shape_args:  # one side length cannot describe the images; others may be fine
        raise ConfigError(
            f"model {name!r} takes square images (one image_size), but the data's images are {h}x{w} (height x "
            f"width); resize them to a square: for an image folder --image-size {min(h, w)} (data.image_size), "
            "for arrays resize before saving; or use a model whose factory takes no image_size."
        )
    try:
        model = factory(**shape_args, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model {name!r} with arguments {kwargs}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {name!r}: the factory returned {type(model).__name__}, not a torch nn.Module.")
    return model


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: what checkpoints and model files record.

    ``name`` is a registry name, or for any other model a label (its ``package.module:factory`` when it came
    from one); such a model is rebuilt from ``graph``, its architecture as data, and only when a file has
    no graph from the factory itself, which needs ``trust_code=True``.
    """

    name: str
    input_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10
    kwargs: dict[str, Any] = field(default_factory=dict)
    tt: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    """Layers replaced by tensor-train layers: ``{layer: {"in_modes", "out_modes", "ranks"}}``
    (:func:`lepton.models.tensor_train.apply_tt_layout`); empty for the plain architecture."""
    graph: dict[str, Any] | None = None
    """The architecture as data (:mod:`lepton.models.graph`) of a model outside the registry, or of a registry
    model whose shapes changed (channel-pruned, BatchNorm folded); ``build`` then uses it, not the name."""
    normalize: Normalization | None = None
    """``(mean, std)`` per input channel (:mod:`lepton.models.normalize`): the built model maps its [0, 1] input
    to ``(x - mean) / std`` itself; None (the default) feeds the pixels as they are."""

    def __post_init__(self) -> None:
        if self.normalize is not None:
            object.__setattr__(self, "normalize", check_normalization(self.normalize, self.input_shape[0]))

    @property
    def needs_code(self) -> bool:
        """Whether building this spec would import user code (no registry name and no stored graph)."""
        return self.graph is None and self.name not in MODELS

    def build(self, *, trust_code: bool = False) -> nn.Module:
        """A freshly initialised model; a user factory runs only with ``trust_code=True``."""
        if self.graph is not None:
            model: nn.Module = build_graph(self.graph)
        else:
            model = build_model(self.name, self.input_shape, self.num_classes, trust_code=trust_code, **self.kwargs)
        if self.tt:
            apply_tt_layout(model, self.tt)
        if self.normalize is not None:
            attach_input_norm(model, self.normalize)
        return model

    def with_graph(self, model: nn.Module) -> ModelSpec:
        """This spec carrying ``model``'s architecture as data whenever building the spec would not give
        ``model``'s parameters: a model outside the registry, or a registry model whose shapes changed
        (channel-pruned, BatchNorm folded). Files saved from it then load without any Python code.

        A registry model that still matches its registry build, or a spec whose graph already fits, is
        returned as is. A user model torch.fx cannot trace keeps the bare name (files saved from it then
        need ``trust_code=True`` to load), and a note on stderr says so; a changed registry model that
        cannot be traced raises ConfigError, since nothing could rebuild it.

        The model's input normalization (:func:`lepton.models.normalize.input_norm_of`) must be the spec's
        ``normalize``; a file saved otherwise would apply it twice or never, so that raises ConfigError.
        """
        norm = input_norm_of(model)
        has = norm.stats() if norm is not None else None
        if not same_normalization(has, self.normalize):
            raise ConfigError(
                f"model {self.name!r} normalizes its input with {has} (mean, std) but its spec records "
                f"normalize={self.normalize}; build the model from the spec (spec.build()), or give the spec "
                "the model's normalization."
            )
        if not self.needs_code and self._shapes() == _shapes(model.state_dict()):
            return self
        try:
            graph = capture(model)
        except ConfigError as e:
            if self.name in MODELS:
                raise ConfigError(
                    f"{e} Its shapes no longer match the registry's {self.name!r}, so it cannot be saved."
                ) from None
            print(f"lepton: note: {e} Files saved from it will need --trust-code to load.", file=sys.stderr)
            return self
        return replace(self, graph=graph)

    def _shapes(self) -> dict[str, tuple[int, ...]] | None:
        """Parameter and buffer shapes of this spec's build (on the meta device), or None if it fails."""
        try:
            with torch.device("meta"):
                return _shapes(self.build().state_dict())
        except Exception:  # noqa: BLE001 - any failure means "does not match"
            return None

    def load(
        self, state_dict: Mapping[str, torch.Tensor], *, trust_code: bool = False, what: str = "the model file"
    ) -> nn.Module:
        """The model with ``state_dict`` loaded, checked before anything real is allocated.

        The spec is first built on the meta device (no memory, no user code unless trusted): its size is
        bounded by :data:`MAX_MODEL_ELEMENTS`, a stored graph must run on ``input_shape``, and every weight's
        name, shape and dtype must match ``state_dict``. Anything else raises FormatError naming ``what``.
        """
        expected = self._meta_state(trust_code, what)
        if expected is not None:
            _compare_state(expected, state_dict, what, self.name)
        model = self.build(trust_code=trust_code)
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as e:
            raise FormatError(
                f"{what}: the weights do not fit model {self.name!r}: {' '.join(str(e).split())[:300]}"
            ) from None
        return model

    def _meta_state(self, trust_code: bool, what: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]] | None:
        if self.needs_code and not trust_code:
            resolve_factory(self.name)  # raises UntrustedCodeError with what the file asks for
        try:
            with torch.device("meta"):
                model = self.build(trust_code=trust_code)
                state = model.state_dict()
                n = sum(t.numel() for t in state.values())
                if n > MAX_MODEL_ELEMENTS:
                    raise FormatError(
                        f"{what}: model {self.name!r} would have {n:,} parameters and buffers, over "
                        f"the limit of {MAX_MODEL_ELEMENTS:,}; the file is forged or corrupted."
                    )
                if self.graph is not None:
                    model.eval()(torch.empty(1, *self.input_shape))
        except (FormatError, UntrustedCodeError):
            raise
        except Exception as e:  # noqa: BLE001 - a forged spec may make torch raise anything; no real memory used
            if self.needs_code:
                return None  # a trusted factory that cannot build on the meta device: check after the real build
            raise FormatError(
                f"{what}: model {self.name!r} cannot be built for input {list(self.input_shape)} "
                f"({type(e).__name__}: {' '.join(str(e).split())[:200]}); the spec is invalid."
            ) from None
        return {k: (tuple(v.shape), v.dtype) for k, v in state.items()}

    def to_dict(self) -> dict[str, Any]:
        d = {**asdict(self), "input_shape": list(self.input_shape)}
        if not self.tt:
            del d["tt"]  # files of plain models keep the layout they always had
        if self.graph is None:
            del d["graph"]
        if self.normalize is None:
            del d["normalize"]  # files without normalization keep the layout they always had
        else:
            d["normalize"] = {"mean": list(self.normalize[0]), "std": list(self.normalize[1])}
        return d

    @classmethod
    def from_dict(cls, d: Any) -> ModelSpec:
        """A spec from a file's JSON, every field checked (types, ranges, the graph's allow-lists)."""
        if not isinstance(d, dict):
            raise ConfigError(f"invalid model spec: expected an object, got {type(d).__name__}.")
        unknown = set(d) - {"name", "input_shape", "num_classes", "kwargs", "tt", "graph", "normalize"}
        missing = {"name", "input_shape", "num_classes"} - set(d)
        if unknown or missing:
            raise ConfigError(
                f"invalid model spec: {'unknown keys ' + ', '.join(sorted(unknown)) if unknown else ''}"
                f"{'; ' if unknown and missing else ''}"
                f"{'missing ' + ', '.join(sorted(missing)) if missing else ''}; expected name, "
                "input_shape [C, H, W], num_classes, kwargs (and tt, graph, normalize)."
            )
        name, shape, classes = d["name"], d["input_shape"], d["num_classes"]
        if not isinstance(name, str) or not 1 <= len(name) <= 256:
            raise ConfigError(f"invalid model spec: name must be a string of 1 to 256 characters, got {name!r:.80}.")
        limits = (MAX_CHANNELS, MAX_SIDE, MAX_SIDE)
        if (
            not isinstance(shape, (list, tuple))
            or len(shape) != 3
            or not all(_is_int(v) and 1 <= v <= hi for v, hi in zip(shape, limits))
        ):
            raise ConfigError(
                f"invalid model spec: input_shape must be [C, H, W] with 1 <= C <= {MAX_CHANNELS} and "
                f"1 <= H, W <= {MAX_SIDE}, got {shape!r:.80}."
            )
        if not _is_int(classes) or not 1 <= classes <= MAX_CLASSES:
            raise ConfigError(
                f"invalid model spec: num_classes must be an integer in [1, {MAX_CLASSES}], got {classes!r:.40}."
            )
        kwargs = d.get("kwargs") or {}
        if not isinstance(kwargs, dict) or not all(
            isinstance(k, str) and k.isidentifier() and _plain(v) for k, v in kwargs.items()
        ):
            raise ConfigError(
                f"invalid model spec: kwargs must map argument names to numbers, strings, booleans "
                f"or lists of them, got {kwargs!r:.80}."
            )
        tt: dict[str, dict[str, list[int]]] = {}
        if d.get("tt"):
            tt = check_tt_layout(d["tt"])
        graph = d.get("graph")
        if graph is not None:
            check_graph(graph, error=ConfigError)
        norm = d.get("normalize")
        if norm is not None:
            norm = check_normalization(norm, shape[0])
        return cls(name, tuple(shape), classes, dict(kwargs), tt, graph, norm)  # type: ignore[arg-type]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _plain(v: Any, depth: int = 0) -> bool:
    """A JSON scalar (finite numbers) or a short list of them: what a factory argument may be in a file."""
    if v is None or isinstance(v, (bool, int, str)):
        return not isinstance(v, str) or len(v) <= 256
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, list) and depth < 4 and len(v) <= 256 and all(_plain(x, depth + 1) for x in v)


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _compare_state(
    expected: dict[str, tuple[tuple[int, ...], torch.dtype]], state: Mapping[str, torch.Tensor], what: str, name: str
) -> None:
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    wrong = [
        f"{k} {list(state[k].shape)} {state[k].dtype} vs {list(shape)} {dtype}"
        for k, (shape, dtype) in expected.items()
        if k in state and (tuple(state[k].shape) != shape or state[k].dtype != dtype)
    ]
    if missing or extra or wrong:
        parts = [
            f"{label}: {', '.join(items[:3])}{' …' if len(items) > 3 else ''}"
            for label, items in (("missing", missing), ("unexpected", extra), ("file vs model", wrong))
            if items
        ]
        raise FormatError(f"{what}: the weights do not fit model {name!r} ({'; '.join(parts)}).")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on one sample, summed over conv and linear layers."""
    macs = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        kernel = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        macs += out[0].numel() * kernel

    def linear_hook(m: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out[0].numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return macs


def layer_table(model: nn.Module) -> list[dict[str, Any]]:
    """One row per parameterised leaf module: name, type, parameter count, fp32 bytes."""
    rows = []
    for name, m in model.named_modules():
        n = sum(p.numel() for p in m.parameters(recurse=False))
        if n:
            rows.append({"layer": name, "type": type(m).__name__, "params": n, "fp32_bytes": 4 * n})
    return rows
