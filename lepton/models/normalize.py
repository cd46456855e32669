"""Input normalization stored with the model: ``(x - mean) / std`` per channel, applied by the model itself.

A spec with ``normalize`` (:class:`lepton.models.registry.ModelSpec`) builds its model and then
:func:`attach_input_norm` gives it an :class:`InputNorm` child called ``input_norm`` and a forward pre-hook
that runs it on the input. So ``model(x)`` takes pixels in [0, 1] wherever the model goes: evaluation,
fine-tuning, calibration, ONNX export (the TorchScript tracer runs the hook, so the graph holds the Sub/Div),
and the server. The mean and std are non-persistent buffers: the state dict keeps exactly the keys it had,
so weight files, compression presets and layer names are unchanged.

torch.fx traces ``forward`` without the root's hooks, so a captured graph (:mod:`lepton.models.graph`) is the
architecture *without* the normalization, which stays in the spec: building the spec attaches it again, once.
The split planner, which runs fx segments, puts it back in as the first node
(:func:`lepton.edge.cuts.trace`) with :func:`input_norm_of`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from lepton.errors import ConfigError

Normalization = tuple[tuple[float, ...], tuple[float, ...]]
"""``(mean, std)``, one float per input channel, for pixels in [0, 1]."""

ATTR = "input_norm"
STD_RANGE = (1e-6, 1e6)
MAX_ABS_MEAN = 1e6


class InputNorm(nn.Module):
    """``(x - mean) / std`` per channel of an ``[N, C, ...]`` input; mean and std are not in the state dict."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        shape = (1, len(mean), 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def stats(self) -> Normalization:
        """``(mean, std)`` as tuples of floats, as a spec holds them."""
        return tuple(self.mean.flatten().tolist()), tuple(self.std.flatten().tolist())

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def _apply(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The forward pre-hook: normalize the first argument (a module-level function, so deepcopy keeps it)."""
    return (getattr(module, ATTR)(args[0]), *args[1:])


def attach_input_norm(model: nn.Module, norm: Normalization) -> nn.Module:
    """Make ``model`` normalize its input itself; returns ``model`` (changed in place).

    Args:
        model: a freshly built model without input normalization.
        norm: ``(mean, std)`` per input channel (checked with :func:`check_normalization`).

    Returns:
        ``model``, whose ``forward`` now sees ``(x - mean) / std``.
    """
    if hasattr(model, ATTR):
        raise ConfigError(
            f"cannot attach input normalization to {type(model).__name__}: it already has an attribute "
            f"{ATTR!r}; rename that attribute in the model."
        )
    mean, std = norm
    model.add_module(ATTR, InputNorm(mean, std))
    model.register_forward_pre_hook(_apply)
    return model


def input_norm_of(model: nn.Module) -> InputNorm | None:
    """The :class:`InputNorm` :func:`attach_input_norm` gave ``model`` (None when it has none)."""
    norm = getattr(model, ATTR, None)
    if isinstance(norm, InputNorm) and any(h is _apply for h in model._forward_pre_hooks.values()):
        return norm
    return None


def same_normalization(a: Normalization | None, b: Normalization | None) -> bool:
    """Whether two normalizations are equal as float32 (what the model's buffers hold)."""
    if a is None or b is None:
        return a is b
    return all(
        torch.equal(torch.tensor(u, dtype=torch.float32), torch.tensor(v, dtype=torch.float32)) for u, v in zip(a, b)
    )


def check_normalization(value: Any, channels: int, *, error: type[Exception] = ConfigError) -> Normalization:
    """``value`` as a :data:`Normalization` for ``channels`` input channels, or ``error`` naming what is wrong.

    Accepts ``[mean, std]`` or ``{"mean": [...], "std": [...]}`` (as JSON holds it); each a list of one finite
    number per channel, ``|mean| <= 1e6`` and ``1e-6 <= std <= 1e6``.
    """
    if isinstance(value, dict) and set(value) == {"mean", "std"}:
        value = (value["mean"], value["std"])
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise error(
            f"invalid normalize: expected {{'mean': [...], 'std': [...]}} with one number per input channel, "
            f"got {value!r:.80}."
        )
    out = []
    for name, values in zip(("mean", "std"), value, strict=True):
        if not isinstance(values, (list, tuple)) or len(values) != channels:
            raise error(
                f"invalid normalize: {name} must be a list of {channels} numbers (one per input channel), "
                f"got {values!r:.80}."
            )
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise error(f"invalid normalize: {name} must hold finite numbers, got {values!r:.80}.")
        out.append(tuple(float(v) for v in values))
    mean, std = out
    if any(abs(m) > MAX_ABS_MEAN for m in mean):
        raise error(f"invalid normalize: every mean must be within [-{MAX_ABS_MEAN:g}, {MAX_ABS_MEAN:g}], got {mean}.")
    lo, hi = STD_RANGE
    if not all(lo <= s <= hi for s in std):
        raise error(f"invalid normalize: every std must be in [{lo:g}, {hi:g}] (std > 0), got {std}.")
    return mean, std
