"""Tensor-train (TT / MPS) linear layers (Novikov et al. 2015, "Tensorizing Neural Networks") and TT-SVD
conversion of a trained ``nn.Linear``: a quantum-inspired factorisation that compresses classical layers now.

The weight of ``TTLinear(in_modes=(m1..md), out_modes=(n1..nd), ranks)`` is never stored densely:
``W[(j1..jd), (i1..id)] = G1[:, i1, j1, :] @ G2[:, i2, j2, :] @ ... @ Gd[:, id, jd, :]`` with cores
``Gk`` of shape ``[r(k-1), mk, nk, rk]`` and ``r0 = rd = 1``; multi-indices are row-major (``i1`` slowest),
matching ``x.reshape(batch, m1, ..., md)``. ``W`` uses ``nn.Linear``'s ``[out, in]`` convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lepton.errors import ConfigError
from lepton.utils.checks import check_float, check_int


def factorize(n: int, d: int) -> tuple[int, ...]:
    """Split ``n`` into ``d`` factors (ascending) whose product is ``n``, as balanced as the primes allow.

    >>> factorize(784, 4), factorize(300, 4)
    ((4, 4, 7, 7), (3, 4, 5, 5))
    """
    check_int(n, "n", 1, owner="factorize")
    check_int(d, "d", 1, owner="factorize")
    primes, rest, p = [], n, 2
    while p * p <= rest:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    if rest > 1:
        primes.append(rest)
    buckets = [1] * d
    for q in sorted(primes, reverse=True):  # largest prime into the currently smallest factor
        buckets[buckets.index(min(buckets))] *= q
    return tuple(sorted(buckets))


def _check_modes(in_modes: Sequence[int], out_modes: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ins, outs = tuple(int(m) for m in in_modes), tuple(int(m) for m in out_modes)
    if not ins or len(ins) != len(outs):
        raise ConfigError(
            f"TT in_modes {ins} and out_modes {outs} must be non-empty and of the same length "
            "(one input and one output mode per core)."
        )
    if min(ins + outs) < 1:
        raise ConfigError(f"TT modes must be positive ints. Got in_modes={ins}, out_modes={outs}.")
    return ins, outs


def _check_ranks(ranks: int | Sequence[int], d: int) -> tuple[int, ...]:
    inner = (int(ranks),) * (d - 1) if isinstance(ranks, int) else tuple(int(r) for r in ranks)
    if len(inner) != d - 1 or (inner and min(inner) < 1):
        raise ConfigError(
            f"TT ranks must be one positive int or {d - 1} positive ints (the ranks between "
            f"{d} cores; the outer ranks are 1). Got {ranks!r}."
        )
    return (1, *inner, 1)


class TTLinear(nn.Module):
    """A linear layer ``y = x W^T + b`` whose weight is a tensor train of ``len(in_modes)`` cores.

    ``ranks``: one int for every inner rank, or the ``d - 1`` inner ranks. The forward pass contracts the
    cores with the reshaped input one mode at a time (``O(batch · Σ r² · m · n · rest)``); :meth:`full_weight`
    materialises ``W`` only for inspection and tests.
    """

    def __init__(
        self, in_modes: Sequence[int], out_modes: Sequence[int], ranks: int | Sequence[int], bias: bool = True
    ) -> None:
        super().__init__()
        self.in_modes, self.out_modes = _check_modes(in_modes, out_modes)
        self.ranks = _check_ranks(ranks, len(self.in_modes))
        self.in_features, self.out_features = math.prod(self.in_modes), math.prod(self.out_modes)
        self.cores = nn.ParameterList()
        for k, (m, n) in enumerate(zip(self.in_modes, self.out_modes)):
            r0, r1 = self.ranks[k], self.ranks[k + 1]
            # Each core ~ N(0, σ²) so that Var(W) = Π(rk σk²) matches nn.Linear's ~1/(3·in_features).
            std = (1.0 / (3 * self.in_features)) ** (1 / (2 * len(self.in_modes))) / math.sqrt(max(r1, 1))
            self.cores.append(nn.Parameter(torch.randn(r0, m, n, r1) * std))
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ConfigError(
                f"TTLinear expects inputs with {self.in_features} features (modes {self.in_modes}); "
                f"got shape {tuple(x.shape)}."
            )
        lead = x.shape[:-1]
        b = math.prod(lead)
        t = x.reshape(b, 1, 1, self.in_modes[0], self.in_features // self.in_modes[0])  # [B, J, r, m_k, rest]
        for k, core in enumerate(self.cores):
            t = torch.einsum("bjrmR,rmns->bjnsR", t, core)  # contract r(k-1) and m_k; emit n_k and r_k
            rest = t.shape[-1]
            nxt = self.in_modes[k + 1] if k + 1 < len(self.in_modes) else 1
            t = t.reshape(b, -1, self.ranks[k + 1], nxt, rest // nxt)
        y = t.reshape(*lead, self.out_features)
        return y + self.bias if self.bias is not None else y

    def full_weight(self) -> torch.Tensor:
        """The dense ``[out_features, in_features]`` weight (for inspection and tests, not the forward pass)."""
        d = len(self.cores)
        t = self.cores[0].reshape(-1, self.ranks[1])  # [(i1 j1), r1]
        for core in self.cores[1:]:
            t = (t @ core.reshape(core.shape[0], -1)).reshape(-1, core.shape[-1])
        t = t.reshape(*[s for m, n in zip(self.in_modes, self.out_modes) for s in (m, n)])  # i1 j1 i2 j2 ...
        t = t.permute(*range(1, 2 * d, 2), *range(0, 2 * d, 2))  # j1..jd, i1..id
        return t.reshape(self.out_features, self.in_features)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def dense_params(self) -> int:
        """Parameters of the ``nn.Linear`` this layer replaces (weight, plus bias when this layer has one)."""
        return self.in_features * self.out_features + (self.out_features if self.bias is not None else 0)

    def compression_ratio(self) -> float:
        """``dense_params() / num_params()``: the bias is counted on both sides."""
        return self.dense_params() / self.num_params()

    def extra_repr(self) -> str:
        return (
            f"in_modes={self.in_modes}, out_modes={self.out_modes}, ranks={self.ranks}, "
            f"bias={self.bias is not None}, params={self.num_params()}, ratio={self.compression_ratio():.1f}x"
        )


def tt_svd(
    weight: nn.Linear | torch.Tensor,
    in_modes: Sequence[int],
    out_modes: Sequence[int],
    max_rank: int | None = None,
    *,
    bias: torch.Tensor | None = None,
) -> TTLinear:
    """Convert a dense layer to a :class:`TTLinear` by TT-SVD (Oseledets 2011): sequential truncated SVDs.

    ``weight``: an ``nn.Linear`` (its bias is copied) or an ``[out, in]`` tensor (``bias`` optional).
    ``max_rank=None`` keeps every singular value, which reproduces the layer exactly; otherwise each inner
    rank is at most ``max_rank`` and each truncation is optimal in Frobenius norm for that unfolding.
    """
    if isinstance(weight, nn.Linear):
        bias = weight.bias if bias is None else bias
        weight = weight.weight
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise ConfigError("tt_svd needs an nn.Linear or a 2-D [out_features, in_features] weight tensor.")
    ins, outs = _check_modes(in_modes, out_modes)
    if (math.prod(outs), math.prod(ins)) != tuple(weight.shape):
        raise ConfigError(
            f"TT modes do not match the weight: out_modes {outs} multiply to {math.prod(outs)} and "
            f"in_modes {ins} to {math.prod(ins)}, but the weight is {tuple(weight.shape)} [out, in]; "
            f"pick modes whose products are the feature counts (e.g. factorize(n, d))."
        )
    check_int(max_rank, "max_rank", 1, owner="tt_svd", allow_none=True)
    d = len(ins)
    w = weight.detach().to(torch.float64).reshape(*outs, *ins)
    t = w.permute(*[a for k in range(d) for a in (d + k, k)])  # i1 j1 i2 j2 ... id jd
    cores, ranks, rest = [], [1], t.reshape(-1)
    for k in range(d - 1):
        mat = rest.reshape(ranks[-1] * ins[k] * outs[k], -1)
        u, s, vh = torch.linalg.svd(mat, full_matrices=False)
        r = len(s) if max_rank is None else min(max_rank, len(s))
        cores.append(u[:, :r].reshape(ranks[-1], ins[k], outs[k], r))
        rest = s[:r, None] * vh[:r]
        ranks.append(r)
    cores.append(rest.reshape(ranks[-1], ins[-1], outs[-1], 1))
    layer = TTLinear(ins, outs, ranks[1:], bias=bias is not None)
    dtype, device = weight.dtype, weight.device
    with torch.no_grad():
        for p, c in zip(layer.cores, cores):
            p.copy_(c)
        if bias is not None:
            layer.bias.copy_(bias.detach())
    return layer.to(device=device, dtype=dtype)


def tt_for_ratio(
    linear: nn.Linear,
    ratio: float,
    *,
    cores: int = 4,
    in_modes: Sequence[int] | None = None,
    out_modes: Sequence[int] | None = None,
) -> TTLinear:
    """TT-SVD of ``linear`` at the largest rank whose :meth:`TTLinear.compression_ratio` is still ≥ ``ratio``.

    Modes default to ``factorize(features, cores)``. Raises ``ConfigError`` if even rank 1 is below ``ratio``.
    """
    if not isinstance(linear, nn.Linear):
        raise ConfigError(f"tt_for_ratio converts an nn.Linear, got {type(linear).__name__}.")
    check_float(ratio, "ratio", 1, owner="tt_for_ratio")
    ins = tuple(in_modes) if in_modes is not None else factorize(linear.in_features, cores)
    outs = tuple(out_modes) if out_modes is not None else factorize(linear.out_features, cores)
    _check_modes(ins, outs)
    bias = linear.out_features if linear.bias is not None else 0
    dense = linear.in_features * linear.out_features + bias

    def meets(cap: int) -> bool:
        return dense >= ratio * (tt_core_elements(ins, outs, _capped_ranks(ins, outs, cap)) + bias)

    if not meets(1):
        raise ConfigError(
            f"no TT rank compresses a {linear.in_features}x{linear.out_features} layer {ratio}x with "
            f"modes {ins} x {outs}; ask for a smaller ratio or use more cores."
        )
    lo, hi = 1, max(linear.in_features, linear.out_features)
    while lo < hi:  # the ratio falls as the rank cap rises: bisect for the largest cap that still meets it
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if meets(mid) else (lo, mid - 1)
    return tt_svd(linear, ins, outs, max_rank=lo)


def tt_core_elements(in_modes: Sequence[int], out_modes: Sequence[int], ranks: Sequence[int]) -> int:
    """Elements of the cores of a TT layer with these modes and inner ``ranks`` (``r0 = rd = 1``)."""
    full = [1, *ranks, 1]
    return sum(full[k] * m * n * full[k + 1] for k, (m, n) in enumerate(zip(in_modes, out_modes)))


def _capped_ranks(ins: Sequence[int], outs: Sequence[int], cap: int) -> list[int]:
    """The inner ranks TT-SVD produces with ``max_rank=cap``: each is bounded by the unfolding's sides too."""
    sizes = [m * n for m, n in zip(ins, outs)]
    ranks, left = [], 1
    for k in range(len(sizes) - 1):
        r = min(cap, left * sizes[k], math.prod(sizes[k + 1 :]))
        ranks.append(r)
        left = r
    return ranks


# Bounds on a TT layout read from a file (a .lep header or checkpoint sidecar), checked before allocating.
MAX_CORES, MAX_MODE, MAX_RANK, MAX_CORE_ELEMENTS = 16, 1 << 20, 4096, 1 << 28


def check_tt_layout(layout: object) -> dict[str, dict[str, list[int]]]:
    """Validate ``{layer: {"in_modes": [...], "out_modes": [...], "ranks": [inner ranks]}}`` from untrusted
    JSON: types, lengths and sizes, so that building it cannot allocate more than ``MAX_CORE_ELEMENTS``."""
    if not isinstance(layout, dict):
        raise ConfigError(f"TT layout must be a mapping of layer name -> modes and ranks, got {type(layout).__name__}.")
    out: dict[str, dict[str, list[int]]] = {}
    total = 0
    for name, entry in layout.items():
        if (
            not isinstance(name, str)
            or not name
            or not isinstance(entry, dict)
            or set(entry) != {"in_modes", "out_modes", "ranks"}
        ):
            raise ConfigError(
                f"TT layout entry {name!r} must map a layer name to exactly in_modes, out_modes "
                f"and ranks, got {entry!r}."
            )
        ins, outs, ranks = entry["in_modes"], entry["out_modes"], entry["ranks"]
        ok = all(isinstance(v, list) and all(type(i) is int for i in v) for v in (ins, outs, ranks))
        if not ok or not 1 <= len(ins) <= MAX_CORES or len(outs) != len(ins) or len(ranks) != len(ins) - 1:
            raise ConfigError(
                f"TT layout of {name!r}: in_modes and out_modes must be lists of the same length "
                f"(1..{MAX_CORES} ints) and ranks one int shorter, got {entry!r}."
            )
        if any(not 1 <= v <= MAX_MODE for v in ins + outs) or any(not 1 <= r <= MAX_RANK for r in ranks):
            raise ConfigError(
                f"TT layout of {name!r}: modes must be in [1, {MAX_MODE}] and ranks in [1, {MAX_RANK}], got {entry!r}."
            )
        total += tt_core_elements(ins, outs, ranks) + math.prod(outs)
        if total > MAX_CORE_ELEMENTS or math.prod(ins) > MAX_CORE_ELEMENTS or math.prod(outs) > MAX_CORE_ELEMENTS:
            raise ConfigError(f"TT layout of {name!r} describes more than {MAX_CORE_ELEMENTS} elements; refused.")
        out[name] = {"in_modes": list(ins), "out_modes": list(outs), "ranks": list(ranks)}
    return out


def tt_layout(model: nn.Module) -> dict[str, dict[str, list[int]]]:
    """The layout of every :class:`TTLinear` in ``model`` (what :func:`apply_tt_layout` rebuilds)."""
    return {
        name: {"in_modes": list(m.in_modes), "out_modes": list(m.out_modes), "ranks": list(m.ranks[1:-1])}
        for name, m in model.named_modules()
        if isinstance(m, TTLinear)
    }


def apply_tt_layout(model: nn.Module, layout: dict[str, dict[str, list[int]]]) -> nn.Module:
    """Replace each named ``nn.Linear`` of ``model`` by an (untrained) :class:`TTLinear` of that layout, in place.

    The shapes must agree: the product of ``in_modes`` is the layer's ``in_features``, of ``out_modes`` its
    ``out_features``. Load the TT weights afterwards (``load_state_dict``).
    """
    for name, entry in check_tt_layout(layout).items():
        layer = _linear_at(model, name, "TT layout")
        ins, outs = entry["in_modes"], entry["out_modes"]
        if (math.prod(ins), math.prod(outs)) != (layer.in_features, layer.out_features):
            raise ConfigError(
                f"TT layout of {name!r}: modes {ins} x {outs} give a {math.prod(ins)}x{math.prod(outs)} "
                f"layer, but {name} is {layer.in_features}x{layer.out_features}."
            )
        tt = TTLinear(ins, outs, entry["ranks"], bias=layer.bias is not None)
        replace_module(model, name, tt.to(dtype=layer.weight.dtype, device=layer.weight.device))
    return model


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted path ``name`` of ``model`` (e.g. ``"features.3"``), in place."""
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, module)


def convert_linears(model: nn.Module, layers: dict[str, float], *, cores: int = 4) -> dict[str, dict[str, Any]]:
    """Replace each named ``nn.Linear`` of ``model`` by its TT-SVD at the largest rank whose parameter ratio is
    still ≥ the layer's ratio (:func:`tt_for_ratio`), in place; returns per layer ratio, params and ranks."""
    done: dict[str, dict[str, Any]] = {}
    for name, ratio in layers.items():
        tt = tt_for_ratio(_linear_at(model, name, "compress.tt.layers"), ratio, cores=cores)
        replace_module(model, name, tt)
        done[name] = {
            "ratio": round(tt.compression_ratio(), 2),
            "params": tt.num_params(),
            "dense_params": tt.dense_params(),
            "ranks": list(tt.ranks),
        }
    return done


def _linear_at(model: nn.Module, name: str, what: str) -> nn.Linear:
    modules = dict(model.named_modules())
    layer = modules.get(name)
    if not isinstance(layer, nn.Linear):
        found = "no such layer" if layer is None else type(layer).__name__
        raise ConfigError(
            f"{what} names layer {name!r}, but the model has {found} there; "
            f"its linear layers are {[n for n, m in modules.items() if isinstance(m, nn.Linear)]}."
        )
    return layer
