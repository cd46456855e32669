"""Unstructured magnitude pruning: exact-count masks, Zhu & Gupta's gradual cubic schedule, and the
prune-then-fine-tune run that Deep Compression's first stage needs.

A mask is a bool tensor shaped like the weight it belongs to, True where the weight is kept. Pruned
weights are stored as exact zeros; the masks are what keeps them zero while the optimizer (momentum,
weight decay) keeps pushing them, so they are re-applied after every optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from lepton.errors import ConfigError
from lepton.train.config import TrainConfig
from lepton.train.loop import Batches, Objective, TrainReport, cross_entropy, fit
from lepton.utils.checks import check_float, check_int
from lepton.utils.device import module_device

Scope = Literal["layer", "global"]
Sparsity = float | Mapping[str, float]


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The ``weight`` of every convolution and linear layer, keyed by module name (e.g. ``"conv1"``)."""
    return {
        name: m.weight
        for name, m in model.named_modules()
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and isinstance(m.weight, nn.Parameter)
    }


def _check_rate(name: str, rate: Any, owner: str | None = None) -> float:
    return float(check_float(rate, name, 0, 1, hi_open=True, owner=owner, hint="0.9 prunes 90% of the weights."))


def _check_layers(weights: Mapping[str, Any], names: Any, what: str) -> None:
    unknown = sorted(set(names) - set(weights))
    if unknown:
        raise ConfigError(
            f"{what} names unknown layers {unknown}; the prunable layers of this model are {sorted(weights)}."
        )


def _check_scope(scope: Any, sparsity: Sparsity, where: str) -> None:
    if scope not in ("layer", "global"):
        raise ConfigError(f"The 'scope' parameter of {where} must be 'layer' or 'global'. Got {scope!r} instead.")
    if scope == "global" and isinstance(sparsity, Mapping):
        raise ConfigError(
            "global pruning needs one sparsity (a float) for the pooled layers, got a dict; "
            "pass per-layer exceptions as overrides={layer: rate}."
        )


def _keep_largest(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Bool mask over ``scores`` (any shape) that is True at exactly its ``keep`` largest entries.

    Ties are broken by position (stable sort), so the count is exact even among equal magnitudes.
    """
    flat = scores.flatten()
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    mask[torch.argsort(flat, descending=True, stable=True)[:keep]] = True
    return mask.view_as(scores)


def _kept(n: int, sparsity: float) -> int:
    return round((1.0 - sparsity) * n)


@torch.no_grad()
def magnitude_masks(
    model: nn.Module, sparsity: Sparsity, *, scope: Scope = "layer", overrides: Mapping[str, float] | None = None
) -> dict[str, torch.Tensor]:
    """Bool masks (True = kept) that prune the smallest-magnitude weights of every prunable layer.

    ``scope="layer"``: each layer keeps exactly ``round((1 - s) * n)`` of its ``n`` weights, where ``s``
    is ``sparsity`` (a float for every layer, or a dict ``{layer: rate}``; unlisted layers stay dense).
    ``scope="global"``: ``sparsity`` (a float) is reached over all prunable weights ranked together,
    so layers with many small weights (the big fully connected ones) lose more.
    ``overrides`` ``{layer: rate}`` prunes those layers by their own rate, outside the global ranking.
    """
    weights = prunable_weights(model)
    overrides = {
        k: _check_rate("overrides", v, f"magnitude_masks for layer {k!r}") for k, v in (overrides or {}).items()
    }
    _check_layers(weights, overrides, "overrides")
    _check_scope(scope, sparsity, "magnitude_masks")
    if isinstance(sparsity, Mapping):
        _check_layers(weights, sparsity, "the sparsity dict")
        rates = {k: _check_rate("sparsity", v, f"magnitude_masks for layer {k!r}") for k, v in sparsity.items()}
    else:
        rate = _check_rate("sparsity", sparsity, "magnitude_masks")
        rates = {k: rate for k in weights} if scope == "layer" else {}
    rates.update(overrides)

    masks = {
        name: _keep_largest(w.abs(), _kept(w.numel(), rates[name])) for name, w in weights.items() if name in rates
    }
    if scope == "global":
        pooled = [name for name in weights if name not in overrides]
        if pooled:
            scores = torch.cat([weights[name].abs().flatten() for name in pooled])
            kept = _keep_largest(scores, _kept(scores.numel(), _check_rate("sparsity", sparsity, "magnitude_masks")))
            for name, part in zip(pooled, kept.split([weights[n].numel() for n in pooled])):
                masks[name] = part.view_as(weights[name])
    return {name: masks.get(name, torch.ones_like(w, dtype=torch.bool)) for name, w in weights.items()}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero, in place, every weight whose mask entry is False."""
    weights = prunable_weights(model)
    _check_layers(weights, masks, "the masks")
    for name, mask in masks.items():
        w = weights[name]
        if mask.shape != w.shape:
            raise ConfigError(
                f"the mask of layer {name!r} has shape {tuple(mask.shape)} but its weight has "
                f"{tuple(w.shape)}; recompute the masks for this model."
            )
        w.masked_fill_(~mask.to(device=w.device, dtype=torch.bool), 0.0)  # +0.0, never -0.0


def cubic_sparsity(step: int, *, initial: float, final: float, begin_step: int, end_step: int) -> float:
    """Zhu & Gupta (2017) gradual schedule: ``s_f + (s_i - s_f) * (1 - (t - t0) / (t_end - t0))**3``.

    Before ``begin_step`` it is ``initial``, from ``end_step`` on it is ``final``.
    """
    _check_rate("initial", initial, "cubic_sparsity")
    _check_rate("final", final, "cubic_sparsity")
    if initial > final:
        raise ConfigError(
            f"initial sparsity {initial} exceeds final sparsity {final}; the schedule only prunes "
            "more over time, so pass initial <= final."
        )
    if not 0 <= begin_step <= end_step:
        raise ConfigError(
            f"the pruning schedule needs 0 <= begin_step <= end_step. Got begin_step={begin_step}, "
            f"end_step={end_step} instead."
        )
    if step < begin_step:
        return initial
    if step >= end_step:
        return final
    return final + (initial - final) * (1.0 - (step - begin_step) / (end_step - begin_step)) ** 3


class GradualPruner:
    """``after_step`` callable for :func:`lepton.train.fit` that prunes gradually, then holds the masks.

    The n-th call (n = 0, 1, ...) stands for the n-th optimizer step. At ``begin_step``, every
    ``frequency`` steps after it and at ``end_step``, the masks are recomputed by magnitude at the
    scheduled sparsity (:func:`cubic_sparsity`, per layer or for the global pool); after *every* step
    the current masks are re-applied, so pruned weights stay exactly zero. After ``end_step`` the masks
    never change again: what follows is fine-tuning of the surviving weights.
    ``step`` counts the calls so far; set it to resume a run mid-schedule.
    """

    def __init__(
        self,
        sparsity: Sparsity,
        *,
        begin_step: int,
        end_step: int,
        frequency: int,
        initial: float = 0.0,
        scope: Scope = "layer",
        overrides: Mapping[str, float] | None = None,
    ) -> None:
        check_int(
            frequency, "frequency", 1, owner="GradualPruner", hint="It counts optimizer steps between mask updates."
        )
        _check_scope(scope, sparsity, "GradualPruner")
        targets = list(sparsity.values()) if isinstance(sparsity, Mapping) else [sparsity]
        for target in [*targets, *(overrides or {}).values()]:
            cubic_sparsity(0, initial=initial, final=target, begin_step=begin_step, end_step=end_step)
        self.sparsity, self.scope, self.overrides = sparsity, scope, dict(overrides or {})
        self.begin_step, self.end_step, self.frequency, self.initial = begin_step, end_step, frequency, initial
        self.step = 0
        self.masks: dict[str, torch.Tensor] = {}

    def _rate(self, final: float, step: int) -> float:
        return cubic_sparsity(
            step, initial=self.initial, final=final, begin_step=self.begin_step, end_step=self.end_step
        )

    def sparsity_at(self, step: int) -> Sparsity:
        """The scheduled sparsity at ``step``: a float, or ``{layer: rate}`` for per-layer targets."""
        if isinstance(self.sparsity, Mapping):
            return {k: self._rate(v, step) for k, v in self.sparsity.items()}
        return self._rate(self.sparsity, step)

    def updates_at(self, step: int) -> bool:
        """Whether the masks are recomputed after optimizer step ``step``."""
        on_grid = (step - self.begin_step) % self.frequency == 0
        return self.begin_step <= step <= self.end_step and (on_grid or step == self.end_step)

    def __call__(self, model: nn.Module) -> None:
        model = getattr(model, "module", model)  # DistributedDataParallel wraps the model
        if self.updates_at(self.step):
            overrides = {k: self._rate(v, self.step) for k, v in self.overrides.items()}
            self.masks = magnitude_masks(model, self.sparsity_at(self.step), scope=self.scope, overrides=overrides)
        if self.masks:
            apply_masks(model, self.masks)
        self.step += 1


def sparsity_table(model: nn.Module) -> list[dict[str, Any]]:
    """One row per prunable weight: layer, params, nonzero, sparsity (fraction of zeros)."""
    rows = []
    for name, w in prunable_weights(model).items():
        n, nonzero = w.numel(), int(torch.count_nonzero(w.detach()))
        rows.append({"layer": name, "params": n, "nonzero": nonzero, "sparsity": 1.0 - nonzero / max(n, 1)})
    return rows


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune_gradual` did: the final masks, the training history and the per-layer sparsity."""

    masks: dict[str, torch.Tensor]
    train: TrainReport
    table: list[dict[str, Any]]
    begin_step: int
    end_step: int
    frequency: int
    sparsity: float = field(init=False)

    def __post_init__(self) -> None:
        params = sum(r["params"] for r in self.table)
        object.__setattr__(self, "sparsity", 1.0 - sum(r["nonzero"] for r in self.table) / max(params, 1))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the mask tensors) for the run's metrics."""
        return {
            "sparsity": self.sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
            "layers": self.table,
            "train": self.train.model_dump(),
        }


def prune_gradual(
    model: nn.Module,
    batches: Batches,
    cfg: TrainConfig,
    sparsity: Sparsity,
    *,
    scope: Scope = "layer",
    overrides: Mapping[str, float] | None = None,
    frequency: int | None = None,
    ramp_fraction: float = 0.5,
    initial: float = 0.0,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    objective: Objective | None = None,
    progress: bool = True,
) -> PruneResult:
    """Train ``model`` in place for ``cfg.epochs`` while pruning it to ``sparsity``.

    The sparsity ramps up cubically over the first ``ramp_fraction`` of all optimizer steps (mask
    updates every ``frequency`` steps; default: 20 updates over the ramp); the remaining steps
    fine-tune with the masks fixed. ``objective`` is handed to :func:`fit` (e.g. a distillation loss).
    """
    check_float(
        ramp_fraction,
        "ramp_fraction",
        0,
        1,
        lo_open=True,
        owner="prune_gradual",
        hint="0.5 prunes during the first half of training.",
    )
    weights = prunable_weights(model)
    if isinstance(sparsity, Mapping):
        _check_layers(weights, sparsity, "the sparsity dict")
    _check_layers(weights, overrides or {}, "overrides")
    total = cfg.epochs * len(batches)
    ramp = max(1, math.ceil(ramp_fraction * total))
    end_step = ramp - 1
    frequency = frequency if frequency is not None else max(1, ramp // 20)
    pruner = GradualPruner(
        sparsity,
        begin_step=0,
        end_step=end_step,
        frequency=frequency,
        initial=initial,
        scope=scope,
        overrides=overrides,
    )
    report = fit(
        model,
        batches,
        cfg,
        eval_data=eval_data,
        objective=objective or cross_entropy,
        after_step=pruner,
        progress=progress,
    )
    return PruneResult(
        masks={
            k: m.to(module_device(model)) for k, m in pruner.masks.items()
        },  # beside the model, back from fit's device
        train=report,
        table=sparsity_table(model),
        begin_step=0,
        end_step=end_step,
        frequency=frequency,
    )
