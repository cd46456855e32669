"""The variational step of the compression chain (``compress.method: variational``): train the model's sparse
variational posterior from its trained weights, measure the operating points it offers (bytes against
error), pick one (the configured threshold, or the one a byte or error target asks for), drop the weights it
marks as noise, physically remove the units left without weights, and say how many bits each layer needs."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from torch import nn

from lepton.compress.channel_step import batch1_latency
from lepton.compress.config import VariationalConfig
from lepton.compress.frontier import FrontierPoint, operating_points, pareto, pick
from lepton.compress.shrink import ShrinkReport, remove_dead_units
from lepton.compress.structured import spec_for
from lepton.compress.variational import (
    LayerPosterior,
    finalize_variational,
    make_variational,
    posterior_bits,
    variational_objective,
)
from lepton.models.registry import ModelSpec, count_params
from lepton.train import TrainConfig, fit
from lepton.train.loop import Batches


class VariationalStepReport(BaseModel):
    """What the variational step kept, removed and measured (batch-1, 1-thread latency before and after)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float
    bits_scale: float
    layers: list[LayerPosterior]
    bits: dict[str, int]
    shrink: ShrinkReport
    params_before: int
    params_after: int
    latency_p50_ms_before: float
    latency_p50_ms_after: float
    frontier: list[FrontierPoint]
    chosen: FrontierPoint | None = None


def train_posterior(
    model: nn.Module,
    cfg: VariationalConfig,
    batches: Batches,
    train_cfg: TrainConfig,
    *,
    n_train: int,
    progress: bool,
    console: Console,
) -> nn.Module:
    """A copy of ``model`` with variational layers, trained on ``batches`` (the negative ELBO per sample)."""
    posterior = copy.deepcopy(model)
    make_variational(posterior, init_log_sigma2=cfg.init_log_sigma2, threshold=cfg.threshold)
    warmup = round(cfg.warmup_fraction * cfg.epochs * len(batches))
    objective = variational_objective(posterior, n_train, kl_weight=cfg.kl_weight, warmup_steps=warmup)
    fit(posterior, batches, train_cfg, objective=objective, progress=progress, console=console)
    return posterior.eval()


def variational_step(
    model: nn.Module,
    spec: ModelSpec,
    cfg: VariationalConfig,
    batches: Batches,
    train_cfg: TrainConfig,
    *,
    n_train: int,
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    encode: Callable[[ModelSpec, nn.Module], bytes],
    bias_bits: int,
    half: bool = False,
    target_bytes: int | None = None,
    target_error: float | None = None,
    progress: bool,
    console: Console,
) -> tuple[nn.Module, ModelSpec, VariationalStepReport]:
    """Sparsify ``model`` by sparse variational dropout and shrink it.

    Args:
        model: the trained model (left unchanged).
        spec: its spec; the returned spec rebuilds the shrunk architecture.
        cfg: epochs, learning rate, KL weight and warm-up, threshold, initial variance, the frontier's grid.
        batches: the training batches (without the validation images).
        train_cfg: the training config (epochs, lr and Adam already set from ``cfg``).
        n_train: training samples in ``batches`` (the KL term is divided by it).
        val: held-out (images, labels): operating points are chosen on them; the first 256 images also check
            that removing units changed nothing.
        test: (images, labels) of the test split: each point's test error is reported, never used to choose.
        encode: ``(spec, model) -> .lep bytes``, how the chain writes a model.
        bias_bits: bits of the shared biases (as the chain will share them).
        half: round each point's weights and biases to float16 before encoding (as the chain will for a
            compact file).
        target_bytes: pick the point with the lowest validation error within this many bytes.
        target_error: pick the smallest point whose validation error is at most this (a fraction).
        progress: show progress bars.
        console: where progress lines go.

    Returns:
        ``(sparse_shrunk_model, its_spec, report)``; its weights are not yet shared (the chain shares them at
        ``report.bits`` and fine-tunes the codebooks).
    """
    posterior = train_posterior(model, cfg, batches, train_cfg, n_train=n_train, progress=progress, console=console)
    points = operating_points(
        posterior,
        spec,
        encode,
        thresholds=cfg.thresholds,
        bits_scales=cfg.bits_scales,
        val=val,
        test=test,
        dense_bytes=4 * count_params(model),
        bias_bits=bias_bits,
        half=half,
    )
    for p in pareto(points):
        console.print(
            f"variational: threshold {p.threshold:g}, bits x{p.bits_scale:g}: {p.bytes:,} bytes ({p.ratio:.0f}x), "
            f"validation error {100 * p.val_error:.2f}%"
        )
    chosen = None
    threshold, scale = cfg.threshold, cfg.bits_scale
    if target_bytes is not None or target_error is not None:
        chosen = pick(points, target_bytes=target_bytes, target_error=target_error)
        threshold, scale = chosen.threshold, chosen.bits_scale
        console.print(f"variational: target met by threshold {threshold:g}, bits x{scale:g}")
    student = copy.deepcopy(posterior)
    table = finalize_variational(student, threshold)
    bits = posterior_bits(table, scale=scale)
    console.print(
        "variational: kept " + ", ".join(f"{r.layer} {r.kept:,}/{r.weights:,} ({bits[r.layer]} bits)" for r in table)
    )
    shrunk, shrink = remove_dead_units(student, val[0][:256])
    new_spec = spec_for(shrunk, spec)
    if shrink.removed:
        console.print("variational: removed units " + ", ".join(f"{k} -{v}" for k, v in shrink.removed.items()))
    before, after = batch1_latency([model, shrunk], spec.input_shape)
    report = VariationalStepReport(
        threshold=threshold,
        bits_scale=scale,
        layers=table,
        bits=bits,
        shrink=shrink,
        params_before=count_params(model),
        params_after=count_params(shrunk),
        latency_p50_ms_before=round(before, 4),
        latency_p50_ms_after=round(after, 4),
        frontier=points,
        chosen=chosen,
    )
    return shrunk, new_spec, report
