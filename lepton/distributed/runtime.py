"""The worker side of torch.distributed: who am I (rank, world size), set the process group up with
a timeout on every collective, reduce metrics, and always tear the group down."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from lepton.distributed.config import DistributedConfig
from lepton.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place in the job; ``World(0, 1)`` outside torch.distributed."""

    rank: int = 0
    size: int = 1

    @property
    def lead(self) -> bool:
        """Rank 0 logs, shows progress and writes checkpoints."""
        return self.rank == 0

    def sum(self, *values: torch.Tensor) -> list[torch.Tensor]:
        """Element-wise sums over all ranks of scalar tensors (one all-reduce); identity when alone."""
        if self.size == 1:
            return list(values)
        packed = torch.stack([v.detach().to(torch.float64).reshape(()) for v in values])
        dist.all_reduce(packed)
        return list(packed.unbind())

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def current_world() -> World:
    """The initialised process group's rank and size, else a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched_by_torchrun() -> bool:
    """True inside a worker started by torchrun (or any launcher that sets the env:// variables)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def env_rank() -> int:
    """This worker's global rank from torchrun's environment (0 outside a launched job)."""
    return int(os.environ.get("RANK", "0"))


def restart_count() -> int:
    """How many times torchrun has restarted this worker group (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def pick_backend(cfg: DistributedConfig) -> str:
    if cfg.backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError("distributed.backend is 'nccl' but CUDA is not available; use 'gloo' (or 'auto').")
    if cfg.backend != "auto":
        return cfg.backend
    return "nccl" if torch.cuda.is_available() else "gloo"


@contextmanager
def worker_session(cfg: DistributedConfig) -> Iterator[World]:
    """Join the process group when launched by torchrun (a no-op otherwise) and always leave it.

    Every collective of the group times out after ``cfg.timeout_s``, so a dead peer ends the job
    with an error instead of hanging it.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        yield current_world()
        return
    backend = pick_backend(cfg)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=cfg.timeout_s))
    try:
        yield current_world()
    finally:
        gc.collect()  # free DDP reducers and comm-hook state (reference cycles) while their group still exists
        dist.destroy_process_group()
