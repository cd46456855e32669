"""Per-layer pruning sensitivity (Han et al. 2015, fig. 6): prune one layer at a time by magnitude,
measure accuracy, restore it; then choose per-layer rates from the curves.

Two rules turn a scan into rates: :func:`choose_rates` gives every layer the largest rate within a
per-layer drop (the LeNet-era rule), and :func:`allocate_rates` shares one accuracy budget across all
layers, spending it where it removes the most weights per point of accuracy. The second is the default
for a model Lepton has never seen: it needs no per-model constants and, unlike a per-layer threshold,
still prunes an under-trained model whose every layer is a little sensitive.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import BaseModel
from rich.console import Console
from torch import nn

from lepton.compress.prune import _check_layers, _check_rate, magnitude_masks, prunable_weights
from lepton.errors import ConfigError
from lepton.train.evaluate import evaluate
from lepton.utils.checks import check_float
from lepton.utils.progress import progress_bar

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
    stop_drop: float | None = None,
    progress: bool = False,
    console: Console | None = None,
) -> SensitivityScan:
    """Accuracy on ``(x, y)`` with each of ``layers`` (default: all prunable) magnitude-pruned alone to
    each of ``rates``; every weight is restored bit for bit before the next point.

    Args:
        stop_drop: stop scanning a layer at the first rate whose drop exceeds this (its higher rates
            could not be chosen anyway); ``None`` scans every rate.
        progress: show a bar with the time left (one tick per layer and rate) on ``console``.

    Returns:
        The baseline accuracy and, per layer, the accuracy at each scanned rate.
    """
    weights = prunable_weights(model)
    names = list(weights) if layers is None else list(layers)
    _check_layers(weights, names, "layers")
    if not rates:
        raise ConfigError("sensitivity_scan needs at least one rate; e.g. rates=(0.5, 0.9).")
    rates = sorted(_check_rate("rates", r, "sensitivity_scan") for r in rates)
    baseline = evaluate(model, x, y, batch_size=batch_size).accuracy
    results = []
    with progress_bar(console, enabled=progress) as bar:
        task = bar.add_task("sensitivity scan", total=len(names) * len(rates), status="")
        for name in names:
            w = weights[name]
            saved = w.detach().clone()
            points = []
            try:
                for rate in rates:
                    bar.update(task, status=f"{name} at {rate:g}")
                    mask = magnitude_masks(model, {name: rate})[name]
                    w.masked_fill_(~mask, 0.0)
                    accuracy = evaluate(model, x, y, batch_size=batch_size).accuracy
                    points.append(SensitivityPoint(rate=rate, accuracy=accuracy))
                    w.copy_(saved)
                    bar.advance(task)
                    if stop_drop is not None and baseline - accuracy > stop_drop:
                        break
            finally:
                w.copy_(saved)
            bar.advance(task, len(rates) - len(points))  # the rates a scan stopped early skips
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


def allocate_rates(
    scan: SensitivityScan,
    *,
    budget: float,
    max_layer_drop: float,
    max_rate: float = 0.95,
    min_share: float = 0.005,
) -> dict[str, float]:
    """Per-layer rates that remove the most weights while the one-shot drops, summed over layers, stay
    within ``budget`` (a fraction: 0.02 is two points of accuracy, which fine-tuning then recovers).

    Greedy on the sensitivity curves, as in a knapsack: each step raises the one layer whose next chosen
    rate removes the most weights per unit of added drop. A layer's drop curve is made monotone (the drop
    at a rate is the worst drop at any rate up to it), so a noisy curve cannot pick a rate beyond a
    failing one. Drops within one validation image count as free.

    Args:
        budget: the summed one-shot drop allowed over all layers.
        max_layer_drop: no single layer's one-shot drop may exceed this.
        max_rate: the highest rate chosen for any layer (a layer is never emptied).
        min_share: layers holding less than this fraction of the scanned weights stay dense: they cost
            little to keep (first convolutions, depthwise filters) and are often the most sensitive.

    Returns:
        ``{layer: rate}`` for every scanned layer, 0.0 where the layer stays dense.
    """
    for name, value in (("budget", budget), ("max_layer_drop", max_layer_drop), ("min_share", min_share)):
        check_float(value, name, 0, 1, owner="allocate_rates", hint="0.02 is two points of accuracy.")
    check_float(max_rate, "max_rate", 0, 1, hi_open=True, owner="allocate_rates", hint="0.95 keeps 5% of a layer.")
    free = 1.0 / max(scan.samples, 1)
    total = sum(layer.params for layer in scan.layers) or 1
    curves: dict[str, list[tuple[float, float]]] = {}
    for layer in scan.layers:
        curve, worst = [(0.0, 0.0)], 0.0
        if layer.params >= min_share * total:
            for p in sorted(layer.points, key=lambda p: p.rate):
                if p.rate > max_rate + 1e-12:
                    break
                worst = max(worst, scan.baseline_accuracy - p.accuracy)
                if worst > max_layer_drop + 1e-12:
                    break
                curve.append((p.rate, worst if worst > free + 1e-12 else 0.0))
        curves[layer.layer] = curve
    params = {layer.layer: layer.params for layer in scan.layers}
    at = dict.fromkeys(curves, 0)
    spent = 0.0
    while True:
        best: tuple[float, str, int, float] | None = None
        for name, curve in curves.items():
            rate, drop = curve[at[name]]
            for j in range(at[name] + 1, len(curve)):
                extra = curve[j][1] - drop
                if spent + extra > budget + 1e-12:
                    continue
                gain = params[name] * (curve[j][0] - rate) / (extra + free)
                if best is None or gain > best[0]:
                    best = (gain, name, j, extra)
        if best is None:
            return {name: curves[name][at[name]][0] for name in curves}
        _, name, j, extra = best
        at[name], spent = j, spent + extra
