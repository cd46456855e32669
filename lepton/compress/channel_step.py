"""The channel-pruning step of the compression chain: remove channels, fine-tune, and measure what it bought
(parameters, MACs, batch-1 single-thread latency)."""

from __future__ import annotations

import statistics

import torch
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from torch import nn

from lepton.compress.config import ChannelsConfig
from lepton.compress.structured import ChannelReport, measure_latency, prune_channels_with_report, spec_for
from lepton.models.registry import ModelSpec, count_macs, count_params
from lepton.train import TrainConfig, fit
from lepton.train.loop import Batches, Objective

LATENCY_ROUNDS = 3
LATENCY_REPEATS = 30


class ChannelStepReport(BaseModel):
    """Before and after the channel step: size, work and batch-1 latency (1 thread, p50 over rounds)."""

    model_config = ConfigDict(extra="forbid")

    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    latency_p50_ms_before: float
    latency_p50_ms_after: float
    speedup: float
    pruning: ChannelReport


def batch1_latency(
    models: list[nn.Module],
    input_shape: tuple[int, ...],
    *,
    rounds: int = LATENCY_ROUNDS,
    repeats: int = LATENCY_REPEATS,
) -> list[float]:
    """Batch-1, 1-thread p50 latency of each model in ms: the median over ``rounds`` that alternate between the
    models (``repeats`` timed passes each), so background load hits them alike."""
    runs: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for times, m in zip(runs, models):
            times.append(float(measure_latency(m, input_shape, threads=1, repeats=repeats)["p50_ms"]))
    return [statistics.median(t) for t in runs]


def channel_step(
    model: nn.Module,
    spec: ModelSpec,
    cfg: ChannelsConfig,
    batches: Batches,
    train_cfg: TrainConfig,
    *,
    objective: Objective,
    progress: bool,
    console: Console,
) -> tuple[nn.Module, ModelSpec, ChannelStepReport]:
    """Prune ``model``'s channels per ``cfg`` and fine-tune the pruned copy for ``cfg.epochs``.

    Args:
        model: the model to prune (left unchanged).
        spec: its spec; the returned spec rebuilds the pruned architecture.
        cfg: ratio, importance, fine-tuning epochs and learning rate.
        batches: the training batches of the fine-tuning.
        train_cfg: the fine-tuning's training config (epochs and lr already set from ``cfg``).
        objective: the loss (cross-entropy, or distillation from the dense model).
        progress: show progress bars.
        console: where progress lines go.

    Returns:
        ``(pruned_model, pruned_spec, report)``.
    """
    shape = spec.input_shape
    pruned, pruning = prune_channels_with_report(model, torch.zeros(1, *shape), cfg.ratio, importance=cfg.importance)
    new_spec = spec_for(pruned, spec)
    for layer, why in pruning.kept_full.items():
        console.print(f"channels: {layer} keeps its full width: {why}")
    before, after = batch1_latency([model, pruned], shape)
    report = ChannelStepReport(
        params_before=count_params(model),
        params_after=count_params(pruned),
        macs_before=count_macs(model, shape),
        macs_after=count_macs(pruned, shape),
        latency_p50_ms_before=round(before, 4),
        latency_p50_ms_after=round(after, 4),
        speedup=round(before / after, 3),
        pruning=pruning,
    )
    console.print(
        f"channels: {report.params_before:,} -> {report.params_after:,} params, {report.macs_before:,} -> "
        f"{report.macs_after:,} MACs, batch-1 latency {before:.3f} -> {after:.3f} ms ({report.speedup:.2f}x)"
    )
    if cfg.epochs:
        fit(pruned, batches, train_cfg, objective=objective, progress=progress, console=console)
    return pruned, new_spec, report
