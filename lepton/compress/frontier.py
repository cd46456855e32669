"""Operating points of one variational posterior: bytes against error, and picking one for a target.

A trained sparse variational model is a family of compressed models: the ``log alpha`` threshold says how
many weights to keep, and the scale of :func:`lepton.compress.variational.posterior_bits` how many bits
each layer's kept weights get. Each point of a grid over both is realised the way the chain would write it
(weights removed, dead units removed, weights shared by k-means at the posterior's bit widths, biases
shared) — without fine-tuning, so it is cheap — then encoded to `.lep` bytes and decoded again, and its
error measured on the decoded model. :func:`pick` chooses the point for ``--target-bytes`` or
``--target-error`` by the *validation* error (images the variational training did not see); the test
error is reported beside it, never used to choose.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from lepton.compress.container import decode_model
from lepton.compress.share import round_to_half, share_biases, share_weights
from lepton.compress.shrink import remove_dead_units
from lepton.compress.structured import spec_for
from lepton.compress.variational import finalize_variational, posterior_bits
from lepton.errors import ConfigError
from lepton.models.registry import ModelSpec
from lepton.train import evaluate


class FrontierPoint(BaseModel):
    """One operating point, measured on the model decoded from its own `.lep` bytes."""

    model_config = ConfigDict(extra="forbid")

    threshold: float
    bits_scale: float
    bits: dict[str, int]
    kept: int
    bytes: int
    ratio: float
    val_error: float
    test_error: float


def realise(
    posterior: nn.Module,
    spec: ModelSpec,
    threshold: float,
    bits_scale: float,
    *,
    check_inputs: torch.Tensor,
    bias_bits: int,
    half: bool = False,
) -> tuple[nn.Module, ModelSpec, dict[str, int]]:
    """The compressed model of one operating point (no fine-tuning), its spec and its layers' bit widths."""
    model = copy.deepcopy(posterior)
    table = finalize_variational(model, threshold)
    bits = posterior_bits(table, scale=bits_scale)
    model, _ = remove_dead_units(model, check_inputs)
    spec = spec_for(model, spec)
    sharing = share_weights(model, bits)
    sharing.finalize(model)
    share_biases(model, bias_bits)
    if half:
        round_to_half(model)
    return model, spec, bits


def operating_points(
    posterior: nn.Module,
    spec: ModelSpec,
    encode: Callable[[ModelSpec, nn.Module], bytes],
    *,
    thresholds: Sequence[float],
    bits_scales: Sequence[float],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    dense_bytes: int,
    bias_bits: int,
    half: bool = False,
) -> list[FrontierPoint]:
    """Every (threshold, bits scale) point of ``posterior`` (a trained variational model, left unchanged),
    measured from its decoded bytes; sorted by size."""
    points = []
    check = val[0][:256]
    for t in thresholds:
        for s in bits_scales:
            model, pspec, bits = realise(posterior, spec, t, s, check_inputs=check, bias_bits=bias_bits, half=half)
            data = encode(pspec, model)
            decoded = decode_model(data).build_model()
            kept = sum(
                int(torch.count_nonzero(m.weight)) for m in decoded.modules() if isinstance(m, nn.Conv2d | nn.Linear)
            )
            points.append(
                FrontierPoint(
                    threshold=t,
                    bits_scale=s,
                    bits=bits,
                    kept=kept,
                    bytes=len(data),
                    ratio=round(dense_bytes / len(data), 2),
                    val_error=round(1 - evaluate(decoded, *val).accuracy, 6),
                    test_error=round(1 - evaluate(decoded, *test).accuracy, 6),
                )
            )
    return sorted(points, key=lambda p: (p.bytes, p.val_error))


def pareto(points: Sequence[FrontierPoint]) -> list[FrontierPoint]:
    """The points no other point beats on both bytes and validation error, by size."""
    best: list[FrontierPoint] = []
    for p in sorted(points, key=lambda p: (p.bytes, p.val_error)):
        if not best or p.val_error < best[-1].val_error:
            best.append(p)
    return best


def pick(
    points: Sequence[FrontierPoint], *, target_bytes: int | None = None, target_error: float | None = None
) -> FrontierPoint:
    """The operating point for a target: with ``target_bytes``, the lowest validation error within that many
    bytes; with ``target_error`` (a fraction), the fewest bytes whose validation error is at most it.

    Raises ConfigError naming the nearest reachable point when no point meets the target."""
    if (target_bytes is None) == (target_error is None):
        raise ConfigError("pick: give exactly one of target_bytes and target_error.")
    if target_bytes is not None:
        fits = [p for p in points if p.bytes <= target_bytes]
        if not fits:
            small = min(points, key=lambda p: p.bytes)
            raise ConfigError(
                f"no operating point fits in {target_bytes:,} bytes: the smallest is {small.bytes:,} bytes "
                f"(log alpha threshold {small.threshold}, validation error {100 * small.val_error:.2f}%); raise "
                "--target-bytes, or train sparser (a larger compress.variational.kl_weight)."
            )
        return min(fits, key=lambda p: (p.val_error, p.bytes))
    assert target_error is not None
    fits = [p for p in points if p.val_error <= target_error]
    if not fits:
        best = min(points, key=lambda p: p.val_error)
        raise ConfigError(
            f"no operating point reaches {100 * target_error:.2f}% validation error: the best is "
            f"{100 * best.val_error:.2f}% at {best.bytes:,} bytes; raise --target-error, or train longer / less "
            "sparse (more compress.variational.epochs, a smaller kl_weight)."
        )
    return min(fits, key=lambda p: (p.bytes, p.val_error))
