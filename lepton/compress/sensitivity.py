"""Per-layer pruning sensitivity (Han et al. 2015, fig. 6): prune one layer at a time by magnitude,
measure accuracy, restore it; then pick for each layer the largest rate that costs at most a given
accuracy drop."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import BaseModel
from torch import nn

from lepton.compress.prune import _check_layers, _check_rate, magnitude_masks, prunable_weights
from lepton.errors import ConfigError
from lepton.train.evaluate import evaluate
from lepton.utils.checks import check_float

DEFAULT_RATES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)


class SensitivityPoint(BaseModel):
    rate: float
    accuracy: float


class LayerSensitivity(BaseModel):
    layer: str
    params: int
    points: list[SensitivityPoint]


class SensitivityScan(BaseModel):
    """Accuracy of the model with exactly one layer pruned, for each scanned layer and rate."""

    samples: int
    baseline_accuracy: float
    rates: list[float]
    layers: list[LayerSensitivity]

    def rows(self) -> list[dict[str, float | str]]:
        """Flat table rows: layer, rate, accuracy, drop (baseline minus accuracy)."""
        return [
            {"layer": s.layer, "rate": p.rate, "accuracy": p.accuracy, "drop": self.baseline_accuracy - p.accuracy}
            for s in self.layers
            for p in s.points
        ]


@torch.no_grad()
def sensitivity_scan(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    rates: Sequence[float] = DEFAULT_RATES,
    layers: Sequence[str] | None = None,
    batch_size: int = 1000,
) -> SensitivityScan:
    """Accuracy on ``(x, y)`` with each of ``layers`` (default: all prunable) magnitude-pruned alone to
    each of ``rates``; every weight is restored bit for bit before the next point."""
    weights = prunable_weights(model)
    names = list(weights) if layers is None else list(layers)
    _check_layers(weights, names, "layers")
    if not rates:
        raise ConfigError("sensitivity_scan needs at least one rate; e.g. rates=(0.5, 0.9).")
    rates = sorted(_check_rate("rates", r, "sensitivity_scan") for r in rates)
    baseline = evaluate(model, x, y, batch_size=batch_size).accuracy
    results = []
    for name in names:
        w = weights[name]
        saved = w.detach().clone()
        points = []
        try:
            for rate in rates:
                mask = magnitude_masks(model, {name: rate})[name]
                w.masked_fill_(~mask, 0.0)
                accuracy = evaluate(model, x, y, batch_size=batch_size).accuracy
                points.append(SensitivityPoint(rate=rate, accuracy=accuracy))
                w.copy_(saved)
        finally:
            w.copy_(saved)
        results.append(LayerSensitivity(layer=name, params=w.numel(), points=points))
    return SensitivityScan(samples=len(y), baseline_accuracy=baseline, rates=rates, layers=results)


def choose_rates(scan: SensitivityScan, *, max_drop: float) -> dict[str, float]:
    """Per layer, the largest scanned rate ``r`` such that every scanned rate up to ``r`` loses at most
    ``max_drop`` accuracy (a fraction, e.g. 0.005); 0.0 when even the smallest rate loses more.

    Stopping at the first rate that exceeds the budget keeps a noisy, non-monotone curve from
    selecting a rate beyond a failing one.
    """
    check_float(max_drop, "max_drop", 0, 1, owner="choose_rates", hint="0.005 allows half a point of accuracy.")
    chosen = {}
    for layer in scan.layers:
        rate = 0.0
        for p in sorted(layer.points, key=lambda p: p.rate):
            if scan.baseline_accuracy - p.accuracy > max_drop + 1e-12:  # 0.95 - 0.945 > 0.005 in floats
                break
            rate = p.rate
        chosen[layer.layer] = rate
    return chosen
