"""Build models by registry name or by ``package.module:factory``, and count their parameters and MACs."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from lepton.errors import ConfigError
from lepton.models.lenet import LeNet5, LeNet5Classic, LeNet300100

MODELS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "lenet5": (LeNet5, "LeNet-5 of Caffe / Deep Compression: 20-50-500-10, 431,080 params"),
    "lenet5-classic": (LeNet5Classic, "LeCun 1998 LeNet-5: 6-16-120-84-10, 61,706 params"),
    "lenet-300-100": (LeNet300100, "fully connected 784-300-100-10, 266,610 params"),
}


def resolve_factory(name: str) -> Callable[..., nn.Module]:
    """The callable behind a registry name or ``package.module:factory``."""
    if name in MODELS:
        return MODELS[name][0]
    if ":" not in name:
        raise ConfigError(f"unknown model {name!r}: use one of {', '.join(MODELS)} or 'package.module:factory'.")
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"model {name!r}: cannot import {attr!r} from {module_name!r} ({e}); "
                          "check that the module is importable (on PYTHONPATH).") from e
    if not callable(factory):
        raise ConfigError(f"model {name!r}: {attr!r} is not callable.")
    return factory


def build_model(name: str, input_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10,
                **kwargs: Any) -> nn.Module:
    """Instantiate ``name`` for images of ``input_shape`` (C, H, W) and ``num_classes`` outputs.

    User factories receive ``in_channels``, ``image_size`` and ``num_classes`` if they accept them.
    """
    factory = resolve_factory(name)
    c, h, w = input_shape
    if h != w:
        raise ConfigError(f"model {name!r}: images must be square, got {h}x{w}.")
    shape_args = {"in_channels": c, "image_size": h, "num_classes": num_classes}
    try:
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        shape_args = {k: v for k, v in shape_args.items() if takes_any or k in params}
    except (TypeError, ValueError):
        pass  # builtins without a signature: pass the shape arguments and let the call decide
    try:
        model = factory(**shape_args, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model {name!r} with arguments {kwargs}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {name!r}: the factory returned {type(model).__name__}, not a torch nn.Module.")
    return model


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: what checkpoints and model files record."""

    name: str
    input_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10
    kwargs: dict[str, Any] = field(default_factory=dict)
    tt: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    """Layers replaced by tensor-train layers: ``{layer: {"in_modes", "out_modes", "ranks"}}``
    (:func:`lepton.quantum.tensor_train.apply_tt_layout`); empty for the plain architecture."""

    def build(self) -> nn.Module:
        model = build_model(self.name, self.input_shape, self.num_classes, **self.kwargs)
        if self.tt:
            from lepton.quantum.tensor_train import apply_tt_layout

            apply_tt_layout(model, self.tt)
        return model

    def to_dict(self) -> dict[str, Any]:
        d = {**asdict(self), "input_shape": list(self.input_shape)}
        if not self.tt:
            del d["tt"]  # files of plain models keep the layout they always had
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        try:
            shape = tuple(int(v) for v in d["input_shape"])
            if len(shape) != 3:
                raise ValueError(f"input_shape must have 3 entries, got {len(shape)}")
            kwargs = dict(d.get("kwargs") or {})
            tt: dict[str, dict[str, list[int]]] = {}
            if d.get("tt"):
                from lepton.quantum.tensor_train import check_tt_layout

                tt = check_tt_layout(d["tt"])
            return cls(str(d["name"]), shape, int(d["num_classes"]), kwargs, tt)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"invalid model spec {d!r}: {e}; expected name, input_shape [C, H, W], "
                              "num_classes and kwargs.") from e


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
