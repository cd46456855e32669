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
        """Element-wise sums over all ranks of scalar tensors (one all-reduce); identity when alone. The sum runs
        on the values' GPU under NCCL (which reduces CUDA tensors only), else on the CPU (gloo)."""
        if self.size == 1:
            return list(values)
        device = values[0].device if dist.get_backend() == "nccl" else torch.device("cpu")
        packed = torch.stack([v.detach().to(device, torch.float64).reshape(()) for v in values])
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


def local_rank() -> int:
    """This worker's rank on its machine from torchrun's environment (0 outside a launched job)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def pick_backend(cfg: DistributedConfig, device: torch.device) -> str:
    """The process-group backend for a model trained on ``device``: NCCL only for CUDA tensors, else gloo.

    Args:
        cfg: ``cfg.backend`` is ``auto`` (decide from ``device``), ``gloo`` or ``nccl``.
        device: where this worker's model and batches live (the resolved ``train.device``).

    Returns:
        ``"nccl"`` or ``"gloo"``.

    Raises:
        ConfigError: ``nccl`` was asked for a model that is not on CUDA.
    """
    if cfg.backend == "nccl" and device.type != "cuda":
        raise ConfigError(
            f"distributed.backend is 'nccl' but the model trains on {device}; NCCL reduces CUDA tensors only: "
            "use backend 'gloo' (or 'auto'), or train with --device cuda on machines with GPUs."
        )
    if cfg.backend != "auto":
        return cfg.backend
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, local: int, world_size: int, gpus: int | None = None) -> torch.device:
    """The device of one worker: on CUDA with several workers, ``cuda:LOCAL_RANK`` (one GPU each).

    Args:
        device: the resolved ``train.device``.
        local: this worker's rank on its machine.
        world_size: the number of workers.
        gpus: CUDA devices on this machine (default: ``torch.cuda.device_count()``).

    Returns:
        ``device`` itself on the CPU/MPS or alone; else ``cuda:local``.

    Raises:
        ConfigError: a fixed ``cuda:N`` with several workers (they would all share one GPU), or more workers
            on this machine than it has GPUs.
    """
    if device.type != "cuda" or world_size == 1:
        return device
    if device.index is not None:
        raise ConfigError(
            f"--device {device} pins every one of the {world_size} workers to one GPU; use --device cuda (or "
            "auto), and each worker takes cuda:LOCAL_RANK."
        )
    gpus = torch.cuda.device_count() if gpus is None else gpus
    if local >= gpus:
        raise ConfigError(
            f"worker {local} on this machine needs cuda:{local}, but it has {gpus} GPU(s); use --nproc {gpus} "
            "(one worker per GPU) or --device cpu."
        )
    return torch.device("cuda", local)


@contextmanager
def worker_session(cfg: DistributedConfig, device: torch.device | None = None) -> Iterator[World]:
    """Join the process group when launched by torchrun (a no-op otherwise) and always leave it.

    The backend follows ``device`` (:func:`pick_backend`; the CPU when ``None``); on CUDA the worker's
    current device is set to ``cuda:LOCAL_RANK`` first. Every collective of the group times out after
    ``cfg.timeout_s``, so a dead peer ends the job with an error instead of hanging it.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        yield current_world()
        return
    device = rank_device(device or torch.device("cpu"), local_rank(), int(os.environ["WORLD_SIZE"]))
    backend = pick_backend(cfg, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=cfg.timeout_s))
    try:
        yield current_world()
    finally:
        gc.collect()  # free DDP reducers and comm-hook state (reference cycles) while their group still exists
        dist.destroy_process_group()
