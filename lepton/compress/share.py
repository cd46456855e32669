"""Deep Compression weight sharing: cluster each layer's nonzero weights into 2^b centroids (1-D k-means),
then fine-tune only the centroids.

After :func:`share_weights` a layer computes ``weight = where(mask, codebook[index], 0)``: ``codebook`` is a
trainable ``nn.Parameter``, ``index`` and ``mask`` are buffers, and the original weight is frozen. Autograd
through the indexing sums the gradient of every weight in a cluster into its centroid, which is exactly
the centroid update of Han et al. (2016), so the ordinary :func:`lepton.train.fit` fine-tunes the codebooks.
Because a centroid's gradient sums over its whole cluster (tens of thousands of weights in a large layer),
plain SGD at a training learning rate diverges; fine-tune with ``optimizer="adam", lr=1e-3,
weight_decay=0`` (Adam's step does not grow with the gradient's scale) for 1-3 epochs.
:meth:`WeightSharing.finalize` bakes plain weights with at most 2^b distinct nonzero values and the same
zeros, which the ``.lep`` container stores as codebook + indices + sparse positions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel
from torch import nn
from torch.nn.utils import parametrize

from lepton.errors import ConfigError
from lepton.utils.checks import check_int

Init = Literal["linear", "density", "random"]
MAX_SHARE_BITS = 8  # the .lep codebook holds at most 256 values


def kmeans_1d(
    values: torch.Tensor, k: int, *, init: Init = "linear", iters: int = 30, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on the scalars in ``values``; returns ``(centroids, assignments)``.

    ``init``: ``"linear"`` spaces k centroids evenly over [min, max] (Deep Compression's recommendation:
    it keeps the rare large weights), ``"density"`` puts them at evenly spaced quantiles, ``"random"``
    picks k distinct values (Forgy, seeded by ``seed``). Iterates until no assignment changes or ``iters``
    rounds; as in scikit-learn, an empty cluster is moved onto the point farthest from its centroid, so no
    codebook entry is wasted. Computes in float64 on ``values``' device; centroids come back sorted
    ascending in ``values``' dtype. When ``values`` has at most k distinct entries the centroids are
    exactly those entries (fewer than k of them) and the clustering is lossless.
    """
    check_int(k, "k", 1, owner="kmeans_1d")
    check_int(iters, "iters", 0, owner="kmeans_1d")
    if init not in ("linear", "density", "random"):
        raise ConfigError(f"kmeans_1d: init must be 'linear', 'density' or 'random'. Got {init!r} instead.")
    flat = values.detach().reshape(-1).to(torch.float64)
    f64 = {"dtype": torch.float64, "device": flat.device}
    distinct, inverse = torch.unique(flat, return_inverse=True)
    if len(distinct) <= k:
        return distinct.to(values.dtype), inverse
    if init == "linear":
        centroids = torch.linspace(float(distinct[0]), float(distinct[-1]), k, **f64)
    elif init == "density":  # nearest-rank quantiles (torch.quantile refuses more than 16M values)
        ranks = torch.linspace(0, len(flat) - 1, k, **f64).round().long()
        centroids = flat.sort().values[ranks]
    else:
        g = torch.Generator().manual_seed(seed)
        centroids = distinct[torch.randperm(len(distinct), generator=g)[:k].to(flat.device)].sort().values
    assign = _nearest(flat, centroids)
    for _ in range(iters):
        sums = torch.zeros(k, **f64).index_add_(0, assign, flat)
        counts = torch.bincount(assign, minlength=k)
        empty = (counts == 0).nonzero().squeeze(1)
        if len(empty):  # as scikit-learn: an empty cluster takes the point farthest from its centroid
            far = (flat - centroids[assign]).abs().topk(len(empty)).indices
            sums.index_add_(0, assign[far], -flat[far])
            counts.index_add_(0, assign[far], -torch.ones_like(far))
            sums[empty], counts[empty] = flat[far], 1
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        centroids, order = centroids.sort()  # relocated clusters fall out of order
        new = _nearest(flat, centroids)
        if torch.equal(new, assign) and torch.equal(order, torch.arange(k, device=flat.device)):
            break
        assign = new
    return centroids.to(values.dtype), assign


def _nearest(flat: torch.Tensor, sorted_centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of ``sorted_centroids`` (ties go to the lower one, as argmin would)."""
    midpoints = (sorted_centroids[1:] + sorted_centroids[:-1]) / 2
    return torch.searchsorted(midpoints, flat, right=False)


def share_tensor(
    weight: torch.Tensor, bits: int, *, init: Init = "linear", iters: int = 30
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(codebook, index, mask)`` of ``weight``'s nonzero entries clustered into at most 2^bits values;
    ``where(mask, codebook[index], 0)`` reconstructs the shared weight (index is 0 where mask is False)."""
    mask = weight.detach() != 0
    codebook, assign = kmeans_1d(weight.detach()[mask], 2**bits, init=init, iters=iters)
    index = torch.zeros(weight.shape, dtype=torch.long, device=weight.device)
    index[mask] = assign.to(weight.device)
    return codebook.to(weight.device), index, mask


class SharedWeight(nn.Module):
    """Parametrization ``weight = where(mask, codebook[index], 0)`` with a trainable codebook."""

    def __init__(self, codebook: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.codebook = nn.Parameter(codebook.clone())
        self.register_buffer("index", index)
        self.register_buffer("mask", mask)

    def forward(self, _original: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, self.codebook[self.index], 0.0)


def weight_layers(model: nn.Module, layers: Iterable[str] | None = None) -> dict[str, nn.Module]:
    """The Conv2d/Linear modules of ``model`` by qualified name: all of them, or those named in ``layers``."""
    found = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    if layers is None:
        return found
    names = list(layers)
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ConfigError(
            f"unknown layer(s) {unknown}: expected Conv2d/Linear layer names of the model, "
            f"i.e. some of {sorted(found)}."
        )
    return {n: found[n] for n in names}


def resolve_bits(
    model: nn.Module, bits: int | Mapping[str, int], layers: Iterable[str] | None, *, low: int, high: int, what: str
) -> dict[str, int]:
    """``{layer: bits}`` for an int (every selected layer) or a per-layer dict, validated to [low, high]."""
    if isinstance(bits, Mapping):
        if layers is not None:
            raise ConfigError(
                f"{what}: pass either a per-layer bits dict or layers=, not both; the dict's keys "
                "already name the layers."
            )
        chosen = weight_layers(model, bits.keys())
        plan = {name: bits[name] for name in chosen}
    else:
        plan = {name: bits for name in weight_layers(model, layers)}
    for name, b in plan.items():
        check_int(b, "bits", low, high, owner=f"{what} for layer {name!r}")
    if not plan:
        raise ConfigError(
            f"{what}: no layer to compress; the model has no Conv2d or Linear layer, or the "
            "bits dict is empty. Name some of its Conv2d/Linear layers."
        )
    return plan


def check_plain_weight(module: nn.Module, name: str, what: str) -> None:
    if parametrize.is_parametrized(module, "weight") or hasattr(module, "weight_orig"):
        raise ConfigError(
            f"{what}: layer {name!r} already has a parametrization or pruning hook on its weight; "
            "finalize the previous step first (pruning: make the masks permanent)."
        )


class SharedLayer(BaseModel):
    layer: str
    bits: int
    centroids: int
    kept_weights: int
    total_weights: int


class SharingReport(BaseModel):
    layers: list[SharedLayer]

    @property
    def index_bits(self) -> int:
        """Bits of the cluster indices of all kept weights (before entropy coding)."""
        return sum(r.bits * r.kept_weights for r in self.layers)


@dataclass(frozen=True)
class WeightSharing:
    """What :func:`share_weights` did: the bit width and parametrization of each shared layer."""

    bits: dict[str, int]
    parametrizations: dict[str, SharedWeight] = field(repr=False)

    def codebooks(self) -> dict[str, torch.Tensor]:
        """The current (possibly fine-tuned) codebook of each shared layer, sorted as first clustered."""
        return {name: p.codebook.detach().clone() for name, p in self.parametrizations.items()}

    def report(self) -> SharingReport:
        return SharingReport(
            layers=[
                SharedLayer(
                    layer=name,
                    bits=self.bits[name],
                    centroids=len(p.codebook),
                    kept_weights=int(p.mask.sum()),
                    total_weights=p.mask.numel(),
                )
                for name, p in self.parametrizations.items()
            ]
        )

    def finalize(self, model: nn.Module) -> nn.Module:
        """Replace each shared layer's parametrization in ``model`` (the shared model, or a deep copy of it) by
        a plain trainable weight equal to its shared value; returns ``model``."""
        return bake_weights(model, self.bits, SharedWeight, "is not weight-shared", "share_weights")


def bake_weights(
    model: nn.Module, layers: Iterable[str], kind: type[nn.Module], problem: str, installer: str
) -> nn.Module:
    """Replace the ``kind`` weight parametrization of each of ``layers`` by a plain trainable weight holding its
    current value; refuses (before changing anything) a layer that does not carry one."""
    modules = dict(model.named_modules())
    layers = list(layers)
    for name in layers:
        plist = getattr(getattr(modules.get(name), "parametrizations", None), "weight", None)
        if plist is None or not isinstance(plist[0], kind):
            raise ConfigError(
                f"finalize: layer {name!r} of this model {problem} (already finalized, or not the "
                f"model passed to {installer}); pass that model."
            )
    for name in layers:
        parametrize.remove_parametrizations(modules[name], "weight", leave_parametrized=True)
        modules[name].weight.requires_grad_(True)
    return model


def share_weights(
    model: nn.Module,
    bits: int | Mapping[str, int],
    *,
    layers: Iterable[str] | None = None,
    init: Init = "linear",
    iters: int = 30,
) -> WeightSharing:
    """Share the weights of every Conv2d/Linear layer (or those in ``layers``, or the keys of a per-layer
    ``bits`` dict) of ``model`` in place: nonzero weights -> at most 2^bits centroids, zeros stay zero.

    Only the codebooks (plus biases and unshared layers) remain trainable, so ``fit`` fine-tunes centroids.
    Layers whose weights are all zero are left as they are. Call ``.finalize(model)`` when done.
    """
    plan = resolve_bits(model, bits, layers, low=1, high=MAX_SHARE_BITS, what="share_weights")
    modules = weight_layers(model, plan)
    for name in plan:
        check_plain_weight(modules[name], name, "share_weights")
    done: dict[str, SharedWeight] = {}
    for name, b in plan.items():
        module = modules[name]
        if not bool((module.weight != 0).any()):
            continue
        codebook, index, mask = share_tensor(module.weight, b, init=init, iters=iters)
        done[name] = SharedWeight(codebook, index, mask)
        parametrize.register_parametrization(module, "weight", done[name])
        module.parametrizations.weight.original.requires_grad_(False)
    return WeightSharing({name: plan[name] for name in done}, done)


def distinct_nonzero(weight: torch.Tensor) -> int:
    """How many distinct nonzero values ``weight`` holds (what the ``.lep`` codebook path needs <= 256)."""
    w = weight.detach()
    return int(torch.unique(w[w != 0]).numel())


def share_biases(model: nn.Module, bits: int) -> None:
    """Snap every bias to a k-means codebook of 2^bits values (post hoc; biases are few and robust)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None and m.bias.numel() > 2**bits:
                centroids, idx = kmeans_1d(m.bias.detach().flatten(), 2**bits)
                m.bias.copy_(centroids[idx].reshape(m.bias.shape))


@dataclass(frozen=True)
class HalfRounding:
    """What :func:`round_to_half` changed: tensors rounded, their elements, how many changed value, and the
    largest absolute change (0.0 when nothing changed)."""

    tensors: int
    elements: int
    changed: int
    max_abs_change: float


def _round_half(t: torch.Tensor) -> torch.Tensor:
    """``t`` (float32) at the nearest float16 value, as float32. Values beyond float16's range are kept (they
    would become inf), and a nonzero value that rounds to zero becomes +0.0, not -0.0, which a ``.lep`` file
    would count as a kept weight."""
    rounded = t.to(torch.float16).to(torch.float32)
    rounded = torch.where(rounded.isinf() & t.isfinite(), t, rounded)
    return torch.where((rounded == 0) & (t != 0), torch.zeros_like(t), rounded)


def round_to_half(model_or_state: nn.Module | MutableMapping[str, torch.Tensor]) -> HalfRounding:
    """Round weights and biases in place to float16-exact values (kept as float32 tensors), so that a compact
    (version 4) ``.lep`` file stores their codebooks and raw values in 2 bytes an entry.

    A weight-shared layer keeps its number of distinct values or loses some (two centroids closer than a
    float16 step merge); zeros stay zeros (+0.0 stays +0.0, -0.0 stays -0.0) and no new zero is -0.0.

    Args:
        model_or_state: a model (the weight and bias of every Conv2d and Linear layer are rounded; call
            :meth:`WeightSharing.finalize` first, a parametrized weight is refused), or a state dict (every
            float32 entry whose name ends in ``weight`` or ``bias`` is replaced by its rounded copy).

    Returns:
        A :class:`HalfRounding` report.
    """
    if isinstance(model_or_state, nn.Module):
        tensors = []
        for name, m in weight_layers(model_or_state).items():
            check_plain_weight(m, name, "round_to_half")
            tensors += [p for p in (m.weight, m.bias) if p is not None and p.dtype == torch.float32]
    elif isinstance(model_or_state, MutableMapping):
        keys = [
            k
            for k, v in model_or_state.items()
            if isinstance(k, str)
            and k.endswith(("weight", "bias"))
            and isinstance(v, torch.Tensor)
            and v.dtype == torch.float32
        ]
        tensors = [model_or_state[k] for k in keys]
    else:
        raise ConfigError(
            f"round_to_half needs an nn.Module or a state dict (name -> tensor), got {type(model_or_state).__name__}."
        )
    elements = changed = 0
    worst = 0.0
    with torch.no_grad():
        rounded = [_round_half(t.detach()) for t in tensors]
        for t, r in zip(tensors, rounded, strict=True):
            diff = r.view(torch.int32) != t.detach().view(torch.int32)
            elements, changed = elements + t.numel(), changed + int(diff.sum())
            change = (r - t.detach())[diff].abs()
            if change.isfinite().any():  # a NaN whose payload float16 cannot hold has no size of change
                worst = max(worst, float(change[change.isfinite()].max()))
        if isinstance(model_or_state, nn.Module):
            for t, r in zip(tensors, rounded, strict=True):
                t.copy_(r)
        else:
            for k, r in zip(keys, rounded, strict=True):
                model_or_state[k] = r
    return HalfRounding(len(tensors), elements, changed, worst)
