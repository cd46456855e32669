"""Sparse variational dropout (Molchanov, Ashukha & Vetrov, ICML 2017): learn which weights to keep.

Every weight ``w`` of a conv / linear layer gets a Gaussian posterior ``N(theta, alpha * theta^2)``
with its own ``alpha``, parameterised by ``log sigma^2`` (additive noise); the loss adds the KL
divergence to the log-uniform prior (Molchanov's approximation), which pushes ``alpha`` up wherever
the data does not need the weight. A weight whose ``log alpha`` exceeds a threshold (3: ``alpha`` > 20,
the posterior all noise) is removed. Training uses the local reparameterization trick: the layer's
output is sampled from the Gaussian its pre-activations follow, one noise draw per output element.

The posterior also says how precisely each kept weight must be stored: its standard deviation
``sigma`` is the scale below which a change of the weight is lost in the posterior's own noise, so a
layer's bit width follows from its weights' range over their typical ``sigma``
(:func:`posterior_bits`; Louizos, Ullrich & Welling, NeurIPS 2017, derive bit precision the same way).

    layers = make_variational(model)                       # conv / linear -> variational, in place
    fit(model, batches, cfg, objective=variational_objective(model, n_train, kl_weight=1.0))
    report = finalize_variational(model, threshold=3.0)    # back to plain layers, pruned weights zero
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

from lepton.errors import ConfigError

K1, K2, K3 = 0.63576, 1.87320, 1.48695  # Molchanov et al.'s fit of -KL(q || log-uniform prior)
LOG_ALPHA_MAX = 8.0  # log alpha is clipped here: beyond it a weight is noise whatever its value
EPS = 1e-8
SIGMA_RATE = 10.0
"""``log sigma^2 = SIGMA_RATE * rho``: with Adam (whose steps do not depend on a gradient's scale) the log
variances move SIGMA_RATE times faster than the weights, so a posterior forms in a few epochs, not 200."""


def _log_alpha(weight: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
    return torch.clamp(log_sigma2 - torch.log(weight * weight + EPS), -LOG_ALPHA_MAX, LOG_ALPHA_MAX)


class _Variational:
    """What the two variational layers share: ``log_sigma2``, ``log alpha``, the KL term, the eval mask."""

    weight: nn.Parameter
    rho: nn.Parameter
    threshold: float

    @property
    def log_sigma2(self) -> torch.Tensor:
        return SIGMA_RATE * self.rho

    def log_alpha(self) -> torch.Tensor:
        return _log_alpha(self.weight, self.log_sigma2)

    def kl(self) -> torch.Tensor:
        """KL(q || log-uniform prior) summed over the layer's weights (Molchanov et al., eq. 14)."""
        la = self.log_alpha()
        neg_kl = K1 * torch.sigmoid(K2 + K3 * la) - 0.5 * F.softplus(-la) - K1
        return -neg_kl.sum()

    def kept_weight(self) -> torch.Tensor:
        """The weight with every entry whose ``log alpha`` is above the threshold set to zero."""
        return self.weight * (self.log_alpha() < self.threshold).to(self.weight.dtype)


class VariationalLinear(nn.Linear, _Variational):
    """``nn.Linear`` with a per-weight variational posterior; sampled in training, pruned in eval."""

    def __init__(self, source: nn.Linear, *, init_log_sigma2: float, threshold: float) -> None:
        super().__init__(source.in_features, source.out_features, source.bias is not None)
        self.to(device=source.weight.device, dtype=source.weight.dtype)
        with torch.no_grad():
            self.weight.copy_(source.weight)
            if source.bias is not None:
                self.bias.copy_(source.bias)
        self.rho = nn.Parameter(torch.full_like(self.weight, init_log_sigma2 / SIGMA_RATE))
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.linear(x, self.kept_weight(), self.bias)
        mean = F.linear(x, self.weight, self.bias)
        var = F.linear(x * x, torch.exp(self.log_sigma2))
        return mean + torch.sqrt(var + EPS) * torch.randn_like(mean)


class VariationalConv2d(nn.Conv2d, _Variational):
    """``nn.Conv2d`` (zero padding) with a per-weight variational posterior; sampled in training, pruned in eval."""

    def __init__(self, source: nn.Conv2d, *, init_log_sigma2: float, threshold: float) -> None:
        super().__init__(
            source.in_channels,
            source.out_channels,
            source.kernel_size,  # type: ignore[arg-type]
            stride=source.stride,  # type: ignore[arg-type]
            padding=source.padding,  # type: ignore[arg-type]
            dilation=source.dilation,  # type: ignore[arg-type]
            groups=source.groups,
            bias=source.bias is not None,
        )
        self.to(device=source.weight.device, dtype=source.weight.dtype)
        with torch.no_grad():
            self.weight.copy_(source.weight)
            if source.bias is not None:
                self.bias.copy_(source.bias)
        self.rho = nn.Parameter(torch.full_like(self.weight, init_log_sigma2 / SIGMA_RATE))
        self.threshold = threshold

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._conv(x, self.kept_weight(), self.bias)
        mean = self._conv(x, self.weight, self.bias)
        var = self._conv(x * x, torch.exp(self.log_sigma2), None)
        return mean + torch.sqrt(var + EPS) * torch.randn_like(mean)


VARIATIONAL = (VariationalLinear, VariationalConv2d)


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def make_variational(
    model: nn.Module,
    *,
    init_log_sigma2: float = -10.0,
    threshold: float = 3.0,
    skip: tuple[str, ...] = (),
) -> list[str]:
    """Replace every ``nn.Linear`` and zero-padded ``nn.Conv2d`` of ``model`` (in place) by its variational
    twin with the same weights and a small initial variance; returns the replaced layers' names.

    Args:
        model: a trained network (any ``nn.Module``); its other modules are left as they are.
        init_log_sigma2: the initial ``log sigma^2`` of every weight (-10: the trained weights barely move).
        threshold: ``log alpha`` above which a weight counts as removed (in eval and when finalized).
        skip: names of layers to leave deterministic.
    """
    names = []
    for name, m in list(model.named_modules()):
        if name in skip or isinstance(m, VARIATIONAL):
            continue
        if type(m) is nn.Linear:
            new: nn.Module = VariationalLinear(m, init_log_sigma2=init_log_sigma2, threshold=threshold)
        elif type(m) is nn.Conv2d and m.padding_mode == "zeros":
            new = VariationalConv2d(m, init_log_sigma2=init_log_sigma2, threshold=threshold)
        else:
            continue
        new.train(m.training)
        parent, attr = _parent(model, name)
        setattr(parent, attr, new)
        names.append(name)
    if not names:
        raise ConfigError(
            f"{type(model).__name__} has no nn.Linear or zero-padded nn.Conv2d layer, so variational "
            "sparsification has nothing to learn; use compress.method: deep."
        )
    return names


def variational_layers(model: nn.Module) -> dict[str, _Variational]:
    return {n: m for n, m in model.named_modules() if isinstance(m, VARIATIONAL)}


def kl_divergence(model: nn.Module) -> torch.Tensor:
    """The summed KL term of every variational layer of ``model``."""
    return sum((m.kl() for m in variational_layers(model).values()), torch.zeros(()))


def variational_objective(
    model: nn.Module, n_train: int, *, kl_weight: float = 1.0, warmup_steps: int = 0
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The negative evidence lower bound per training sample: cross-entropy + ``kl_weight`` * KL / ``n_train``.

    ``kl_weight`` above 1 trades accuracy for sparsity (the frontier's knob); the KL weight ramps up
    linearly over the first ``warmup_steps`` calls, so the posterior variances grow before the prior
    starts to prune.
    """
    step = [0]
    layers = list(variational_layers(model).values())
    if not layers:
        raise ConfigError("variational_objective: the model has no variational layer; call make_variational first.")

    def objective(logits: torch.Tensor, targets: torch.Tensor, _inputs: torch.Tensor) -> torch.Tensor:
        ramp = min(1.0, (step[0] + 1) / warmup_steps) if warmup_steps else 1.0
        step[0] += 1
        kl = sum((m.kl() for m in layers), torch.zeros((), device=logits.device))
        return F.cross_entropy(logits, targets) + (kl_weight * ramp / n_train) * kl

    return objective


class LayerPosterior(BaseModel):
    """One variational layer after training: what it keeps and how noisy its kept weights are."""

    layer: str
    weights: int
    kept: int
    sparsity: float
    median_sigma: float
    value_range: float


def posterior_table(model: nn.Module, threshold: float | None = None) -> list[LayerPosterior]:
    """Kept weights and posterior noise of each variational layer at ``threshold`` (each layer's own if None)."""
    rows = []
    with torch.no_grad():
        for name, m in variational_layers(model).items():
            la = m.log_alpha()
            keep = la < (m.threshold if threshold is None else threshold)
            kept = int(keep.sum())
            sigma = torch.exp(0.5 * m.log_sigma2)[keep]
            w = m.weight[keep]
            rows.append(
                LayerPosterior(
                    layer=name,
                    weights=m.weight.numel(),
                    kept=kept,
                    sparsity=1 - kept / m.weight.numel(),
                    median_sigma=float(sigma.median()) if kept else 0.0,
                    value_range=float(w.max() - w.min()) if kept else 0.0,
                )
            )
    return rows


def posterior_bits(table: list[LayerPosterior], *, scale: float = 1.0, low: int = 2, high: int = 8) -> dict[str, int]:
    """Bits per kept weight of each layer: enough levels that the quantization step stays under
    ``scale`` times the layer's median posterior standard deviation, clipped to [low, high].

    A layer whose kept weights span ``R`` with typical posterior noise ``sigma`` needs about
    ``R / (scale * sigma)`` levels; coarser steps move weights by more than the posterior allows.
    """
    bits = {}
    for row in table:
        if row.kept == 0 or row.median_sigma <= 0:
            bits[row.layer] = low
            continue
        levels = max(2.0, row.value_range / (scale * row.median_sigma))
        bits[row.layer] = int(min(high, max(low, math.ceil(math.log2(levels)))))
    return bits


def finalize_variational(model: nn.Module, threshold: float | None = None) -> list[LayerPosterior]:
    """Turn every variational layer back into a plain ``nn.Linear`` / ``nn.Conv2d`` (in place) whose removed
    weights are exactly zero; returns each layer's posterior summary taken just before."""
    table = posterior_table(model, threshold)
    with torch.no_grad():
        for name, m in variational_layers(model).items():
            if threshold is not None:
                m.threshold = threshold
            weight = m.kept_weight()
            if isinstance(m, VariationalLinear):
                plain: nn.Module = nn.Linear(m.in_features, m.out_features, m.bias is not None)
            else:
                plain = nn.Conv2d(
                    m.in_channels,
                    m.out_channels,
                    m.kernel_size,  # type: ignore[arg-type]
                    stride=m.stride,  # type: ignore[arg-type]
                    padding=m.padding,  # type: ignore[arg-type]
                    dilation=m.dilation,  # type: ignore[arg-type]
                    groups=m.groups,
                    bias=m.bias is not None,
                )
            plain.to(device=weight.device, dtype=weight.dtype)
            plain.weight.copy_(weight)
            if m.bias is not None:
                plain.bias.copy_(m.bias)
            plain.train(m.training)
            parent, attr = _parent(model, name)
            setattr(parent, attr, plain)
    return table
