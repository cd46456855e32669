"""The typed options of distributed training: how torchrun launches the workers, the collective
timeout, and the DDP communication hook (none, fp16, PowerSGD) with its parameters."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lepton.config import StrictModel


class CommHookConfig(StrictModel):
    """Gradient compression between DDP workers (``torch.distributed.algorithms.ddp_comm_hooks``)."""

    kind: Literal["none", "fp16", "powersgd"] = Field(
        "none", description="none: plain fp32 all-reduce; fp16: half-precision all-reduce; powersgd: low-rank"
    )
    rank: int = Field(2, ge=1, le=64, description="PowerSGD matrix approximation rank")
    warmup_steps: int = Field(100, ge=0, description="PowerSGD: plain all-reduce for this many steps first")
    error_feedback: bool = Field(True, description="PowerSGD: carry the compression error into the next step")
    warm_start: bool = Field(True, description="PowerSGD: reuse the last step's Q as the next power iteration's start")
    min_compression_rate: float = Field(
        2.0, gt=0, description="PowerSGD: compress a matrix only if it shrinks this much"
    )
    seed: int = Field(0, ge=0, description="PowerSGD: seed of the random initial Q")

    @model_validator(mode="after")
    def _check(self) -> CommHookConfig:
        if self.kind == "powersgd" and (self.error_feedback or self.warm_start) and self.warmup_steps < 2:
            raise ValueError(
                f"comm_hook.warmup_steps must be >= 2 with error_feedback or warm_start "
                f"(PowerSGD's requirement), got {self.warmup_steps}; raise it or turn both off."
            )
        return self


class DistributedConfig(StrictModel):
    """Where and how many workers train (``torchrun``'s options) and how they talk."""

    nproc: int = Field(1, ge=1, le=1024, description="worker processes per node (torchrun --nproc-per-node)")
    nnodes: int = Field(1, ge=1, le=4096, description="machines taking part (torchrun --nnodes)")
    node_rank: int | None = Field(
        None,
        ge=0,
        description="this machine's rank: fixed ranks (static rendezvous); leave unset for elastic c10d rendezvous",
    )
    rdzv_endpoint: str | None = Field(None, description="HOST:PORT every node can reach (multi-node rendezvous)")
    rdzv_id: str = Field(
        "lepton",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="job id shared by the nodes of one run",
    )
    max_restarts: int = Field(0, ge=0, le=100, description="times torchrun restarts the group after a failure")
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="auto: nccl when the model trains on CUDA (train.device), else gloo"
    )
    timeout_s: float = Field(300.0, gt=0, le=86400, description="timeout of every collective and of the set-up")
    comm_hook: CommHookConfig = CommHookConfig()

    @model_validator(mode="after")
    def _check(self) -> DistributedConfig:
        if self.nnodes > 1 and self.rdzv_endpoint is None:
            raise ValueError(
                f"nnodes={self.nnodes} needs rdzv_endpoint (HOST:PORT of the rendezvous, e.g. "
                "10.0.0.1:29400) so the machines can find each other"
            )
        if self.node_rank is not None and self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank must be in [0, nnodes={self.nnodes}), got {self.node_rank}")
        if self.rdzv_endpoint is not None:
            host, _, port = self.rdzv_endpoint.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"rdzv_endpoint must be HOST:PORT, got {self.rdzv_endpoint!r}")
        return self

    @property
    def launches(self) -> bool:
        """True when the job runs as several workers (so something must launch them)."""
        return self.nproc > 1 or self.nnodes > 1
