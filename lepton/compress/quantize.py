"""Uniform symmetric k-bit weight quantization (per output channel or per tensor) with quantization-aware
training, and per-layer bit-width selection by sensitivity.

A weight ``w`` becomes ``q * scale`` with integer ``q`` in [-(2^(b-1)-1), 2^(b-1)-1] and
``scale = max|w| / (2^(b-1)-1)`` per output channel, so zeros (pruned weights) stay exactly zero. QAT
trains the float "shadow" weights through the straight-through estimator (the rounding's gradient is
taken as the identity). Which form to use:

* per-channel (default) is the form of ONNX/int8 runtimes (:func:`quantize_tensor` gives the integers
  and scales). Baked into float weights, a layer can hold up to ``channels * (2^b - 1)`` distinct values,
  more than the ``.lep`` codebook's 256, so the ``.lep`` file gains nothing from it.
* per-tensor (``granularity="tensor"``) bakes at most ``2^b - 1`` distinct values per layer, which the
  ``.lep`` container stores as codebook + indices, as it does for weight sharing
  (:mod:`lepton.compress.share`), the Deep Compression path and usually the more accurate one at 2-4 bits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel
from torch import nn
from torch.nn.utils import parametrize

from lepton.compress.share import (
    MAX_SHARE_BITS,
    bake_weights,
    check_plain_weight,
    resolve_bits,
    share_tensor,
    weight_layers,
)
from lepton.errors import ConfigError
from lepton.train.evaluate import evaluate
from lepton.utils.checks import check_float, check_int

Granularity = Literal["channel", "tensor"]
MIN_BITS, MAX_BITS = 2, 8  # 1 bit leaves a symmetric grid with the single level 0


def snr_db(ref: torch.Tensor, quantized: torch.Tensor) -> float:
    """Signal-to-noise ratio ``20 log10(|ref| / |ref - quantized|)`` in dB (inf when equal), as torchao's
    ``compute_error``."""
    ref, quantized = ref.detach().double(), quantized.detach().double()
    noise = torch.linalg.vector_norm(ref - quantized)
    if noise == 0:
        return float("inf")
    return float(20 * torch.log10(torch.linalg.vector_norm(ref) / noise))


@dataclass(frozen=True)
class QuantizedTensor:
    """Integer levels ``values`` (int8) and the scale per output channel (shape ``[C, 1, ...]``) or per tensor
    (shape ``[1, ...]``): ``values * scale`` is the quantized weight."""

    values: torch.Tensor
    scale: torch.Tensor
    bits: int

    def dequantize(self) -> torch.Tensor:
        return self.values.to(self.scale.dtype) * self.scale


def _check_bits(bits: int, what: str) -> None:
    check_int(bits, "bits", MIN_BITS, MAX_BITS, owner=what)


def _check_granularity(granularity: str, what: str) -> None:
    if granularity not in ("channel", "tensor"):
        raise ConfigError(f"{what}: granularity must be 'channel' or 'tensor'. Got {granularity!r} instead.")


def quantize_tensor(weight: torch.Tensor, bits: int, *, granularity: Granularity = "channel") -> QuantizedTensor:
    """Symmetric uniform quantization of ``weight`` to ``2^bits - 1`` levels per output channel (dim 0) or
    per tensor; an all-zero channel gets scale 1 and stays zero."""
    _check_bits(bits, "quantize_tensor")
    _check_granularity(granularity, "quantize_tensor")
    w = weight.detach()
    qmax = 2 ** (bits - 1) - 1
    dims = tuple(range(1, w.ndim)) if granularity == "channel" and w.ndim > 1 else tuple(range(w.ndim))
    peak = w.abs().amax(dim=dims, keepdim=True)
    scale = torch.where(peak > 0, peak / qmax, torch.ones_like(peak))
    values = torch.clamp(torch.round(w / scale), -qmax, qmax).to(torch.int8)
    return QuantizedTensor(values, scale, bits)


def fake_quantize(weight: torch.Tensor, bits: int, *, granularity: Granularity = "channel") -> torch.Tensor:
    """``quantize_tensor(weight).dequantize()`` in the forward pass, the identity in the backward pass (STE)."""
    q = quantize_tensor(weight, bits, granularity=granularity).dequantize()
    return weight + (q - weight).detach()


class FakeQuantWeight(nn.Module):
    """Parametrization: fake-quantized shadow weight; weights that were zero at install time stay zero."""

    def __init__(self, mask: torch.Tensor, bits: int, granularity: Granularity) -> None:
        super().__init__()
        self.bits, self.granularity = bits, granularity
        self.register_buffer("mask", mask)

    def forward(self, shadow: torch.Tensor) -> torch.Tensor:
        masked = torch.where(self.mask, shadow, 0.0)
        return torch.where(self.mask, fake_quantize(masked, self.bits, granularity=self.granularity), 0.0)


class QuantizedLayer(BaseModel):
    layer: str
    bits: int
    granularity: Granularity
    max_levels_per_channel: int
    distinct_values: int
    snr_db: float | None  # quantized vs float shadow weight; None once finalized (the shadow is gone)


class QuantizationReport(BaseModel):
    layers: list[QuantizedLayer]


@dataclass(frozen=True)
class QATHandle:
    """What :func:`quantize_qat` did: the bit width, layer and parametrization of each fake-quantized layer."""

    bits: dict[str, int]
    granularity: Granularity
    layers: dict[str, nn.Module] = field(repr=False)
    parametrizations: dict[str, FakeQuantWeight] = field(repr=False)

    def _weights(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(quantized weight, masked float shadow or None once finalized) of layer ``name``."""
        module = self.layers[name]
        if not parametrize.is_parametrized(module, "weight"):
            return module.weight.detach(), None
        shadow = module.parametrizations.weight.original.detach()
        return module.weight.detach(), torch.where(self.parametrizations[name].mask, shadow, 0.0)

    def quantized(self) -> dict[str, QuantizedTensor]:
        """Integer levels and scales of each layer's weight (before or after finalize), e.g. for an int runtime."""
        return {
            name: quantize_tensor(self._weights(name)[0], b, granularity=self.granularity)
            for name, b in self.bits.items()
        }

    def report(self) -> QuantizationReport:
        rows = []
        for name, b in self.bits.items():
            baked, shadow = self._weights(name)
            levels = max(int(torch.unique(channel).numel()) for channel in baked.reshape(len(baked), -1))
            rows.append(
                QuantizedLayer(
                    layer=name,
                    bits=b,
                    granularity=self.granularity,
                    max_levels_per_channel=levels,
                    distinct_values=int(torch.unique(baked).numel()),
                    snr_db=None if shadow is None else snr_db(shadow, baked),
                )
            )
        return QuantizationReport(layers=rows)

    def finalize(self, model: nn.Module) -> nn.Module:
        """Bake each layer's weight in ``model`` (the QAT model, or a deep copy of it) to its quantized value
        (integer level x scale) as a plain trainable parameter; returns ``model``. Further training would
        leave the quantization grid."""
        return bake_weights(model, self.bits, FakeQuantWeight, "has no QAT parametrization", "quantize_qat")


def quantize_qat(
    model: nn.Module,
    bits: int | Mapping[str, int],
    *,
    layers: Iterable[str] | None = None,
    granularity: Granularity = "channel",
) -> QATHandle:
    """Fake-quantize the weights of every Conv2d/Linear layer (or those in ``layers``, or the keys of a
    per-layer ``bits`` dict) of ``model`` in place, so ``fit`` trains the float shadow weights through the
    straight-through estimator. Weights that are zero now (pruned) stay zero. Call ``.finalize(model)`` to bake.
    """
    _check_granularity(granularity, "quantize_qat")
    plan = resolve_bits(model, bits, layers, low=MIN_BITS, high=MAX_BITS, what="quantize_qat")
    modules = weight_layers(model, plan)
    for name in plan:
        check_plain_weight(modules[name], name, "quantize_qat")
    done: dict[str, FakeQuantWeight] = {}
    for name, b in plan.items():
        done[name] = FakeQuantWeight(modules[name].weight.detach() != 0, b, granularity)
        parametrize.register_parametrization(modules[name], "weight", done[name])
    return QATHandle(dict(plan), granularity, {name: modules[name] for name in plan}, done)


class BitTrial(BaseModel):
    layer: str
    bits: int
    accuracy: float
    drop: float
    snr_db: float


class BitScanReport(BaseModel):
    method: Literal["share", "uniform"]
    baseline_accuracy: float
    max_drop: float
    trials: list[BitTrial]
    chosen: dict[str, int]
    within_budget: dict[str, bool]


def _quantizer(method: str) -> Callable[[torch.Tensor, int], torch.Tensor]:
    if method == "share":

        def shared(w: torch.Tensor, b: int) -> torch.Tensor:
            codebook, index, mask = share_tensor(w, b)
            return torch.where(mask, codebook[index], 0.0) if len(codebook) else w.clone()

        return shared
    return lambda w, b: quantize_tensor(w, b).dequantize()


def scan_bits(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    candidates: Sequence[int] = (2, 3, 4, 5, 6, 8),
    max_drop: float,
    method: Literal["share", "uniform"] = "share",
    layers: Iterable[str] | None = None,
) -> BitScanReport:
    """Sensitivity scan: quantize one layer at a time (the others stay float) at each candidate width,
    measure accuracy on ``(x, y)``, and choose per layer the smallest width whose accuracy drop is at most
    ``max_drop`` (a fraction, e.g. 0.01 = one point), or the widest candidate if none is. The drops are
    measured layer by layer; quantizing all layers together usually drops more, so fine-tune afterwards."""
    if method not in ("share", "uniform"):
        raise ConfigError(f"scan_bits: method must be 'share' or 'uniform'. Got {method!r} instead.")
    check_float(max_drop, "max_drop", 0, 1, owner="scan_bits", hint="0.01 allows one point of accuracy.")
    low = 1 if method == "share" else MIN_BITS
    high = MAX_SHARE_BITS if method == "share" else MAX_BITS
    widths = sorted(set(candidates))
    if not widths:
        raise ConfigError("scan_bits needs at least one candidate width; e.g. candidates=(2, 4, 8).")
    for b in widths:
        check_int(b, "candidates", low, high, owner=f"scan_bits with method {method!r}")
    quantize = _quantizer(method)
    baseline = evaluate(model, x, y).accuracy
    trials: list[BitTrial] = []
    chosen: dict[str, int] = {}
    within: dict[str, bool] = {}
    for name, module in weight_layers(model, layers).items():
        check_plain_weight(module, name, "scan_bits")
        original = module.weight.detach().clone()
        try:
            for b in widths:
                with torch.no_grad():
                    module.weight.copy_(quantize(original, b))
                accuracy = evaluate(model, x, y).accuracy
                trials.append(
                    BitTrial(
                        layer=name,
                        bits=b,
                        accuracy=accuracy,
                        drop=baseline - accuracy,
                        snr_db=snr_db(original, module.weight),
                    )
                )
        finally:
            with torch.no_grad():
                module.weight.copy_(original)
        fitting = [t.bits for t in trials if t.layer == name and t.drop <= max_drop]
        chosen[name], within[name] = (min(fitting), True) if fitting else (widths[-1], False)
    return BitScanReport(
        method=method, baseline_accuracy=baseline, max_drop=max_drop, trials=trials, chosen=chosen, within_budget=within
    )


def choose_bits(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    candidates: Sequence[int] = (2, 3, 4, 5, 6, 8),
    max_drop: float,
    method: Literal["share", "uniform"] = "share",
    layers: Iterable[str] | None = None,
) -> dict[str, int]:
    """Per-layer bit widths from :func:`scan_bits` (call that for the full typed report of the scan)."""
    return scan_bits(model, x, y, candidates=candidates, max_drop=max_drop, method=method, layers=layers).chosen


def post_training_quantize(
    model: nn.Module,
    bits: int | Mapping[str, int],
    *,
    layers: Iterable[str] | None = None,
    granularity: Granularity = "channel",
) -> nn.Module:
    """A quantized deep copy of ``model`` without training (the baseline QAT is compared against)."""
    quantized = copy.deepcopy(model)
    handle = quantize_qat(quantized, bits, layers=layers, granularity=granularity)
    return handle.finalize(quantized)
