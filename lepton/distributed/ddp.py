"""DDP glue for the shared training loop: wrap the model, shard the batches by rank, seed per rank,
install the communication hook."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lepton.data.batches import TensorBatches
from lepton.distributed.config import CommHookConfig
from lepton.distributed.hooks import CommCounter, register_comm_hook
from lepton.distributed.runtime import World
from lepton.errors import ConfigError


def shard_batches(batches: Any, world: World) -> Any:
    """This rank's share of every global batch.

    ``TensorBatches`` and the packed store's ``StoreBatches`` (anything with ``shard(rank, world_size)``,
    ``rank`` and ``world_size``) are sharded here (rank ``r`` takes the ``r``-th slice of each global batch
    of ``batch_size × world`` samples, so ``W`` ranks see together exactly what one process with the
    global batch sees; a store-backed rank reads only its own samples). A ``DataLoader`` must already
    carry a ``DistributedSampler``.
    """
    if isinstance(batches, TensorBatches) or callable(getattr(batches, "shard", None)):
        if batches.world_size == world.size and batches.rank == world.rank:
            return batches
        if batches.world_size != 1:
            raise ConfigError(
                f"batches are sharded for rank {batches.rank} of {batches.world_size}, but this "
                f"process is rank {world.rank} of {world.size}; pass unsharded batches."
            )
        return batches.shard(world.rank, world.size)
    sampler = getattr(batches, "sampler", None)
    if isinstance(sampler, torch.utils.data.DistributedSampler):
        return batches
    raise ConfigError(
        f"under torch.distributed, fit() needs TensorBatches or a DataLoader with a "
        f"DistributedSampler, got {type(batches).__name__}; wrap your data in TensorBatches."
    )


def wrap_ddp(model: nn.Module, hook: CommHookConfig) -> DistributedDataParallel:
    """``DistributedDataParallel(model)`` with the bucket layout ``hook`` needs on this backend."""
    device = next(model.parameters()).device
    options: dict[str, Any] = {}
    if hook.kind == "powersgd" and dist.get_backend() == "gloo":
        # PowerSGD waits on nested all-reduces inside gloo's two callback threads; two buckets in flight
        # can block both threads for good (seen on 2 CPU workers and in a world of one), so all gradients
        # go in one bucket (an explicit bucket_cap_mb also sets the first bucket's cap).
        options["bucket_cap_mb"] = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20 + 1
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None, **options)


def distribute(
    model: nn.Module, batches: Any, hook: CommHookConfig, world: World, seed: int
) -> tuple[DistributedDataParallel, Any, CommCounter]:
    """Wrap ``model`` in DDP (rank 0's weights are broadcast to all), shard ``batches``, reseed the
    per-rank random streams (dropout, augmentation) and install ``hook`` behind a byte counter."""
    if isinstance(model, DistributedDataParallel):
        raise ConfigError("fit() wraps the model in DistributedDataParallel itself; pass the plain module.")
    ddp = wrap_ddp(model, hook)
    torch.manual_seed(seed + world.rank)
    return ddp, shard_batches(batches, world), register_comm_hook(ddp, hook)
