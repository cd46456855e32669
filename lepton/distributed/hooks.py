"""DDP communication hooks (plain, fp16, PowerSGD from ``torch.distributed.algorithms.ddp_comm_hooks``)
wrapped to count the gradient bytes each step hands to all-reduce.

The count is the all-reduce *payload* per worker per step (what the hook puts on the wire before
the collective's own algorithm; a ring all-reduce moves about ``2 (W-1)/W`` times it per worker).
For PowerSGD it is derived independently from the bucket's gradient shapes, and cross-checked
against PowerSGD's own ``compression_stats()``.
"""

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from pydantic import BaseModel
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel

from lepton.distributed.config import CommHookConfig


class CommReport(BaseModel):
    """Gradient traffic of one training run, per worker."""

    hook: str
    steps: int
    bytes_total: int
    bytes_last_step: int
    uncompressed_bytes_per_step: int
    compression_ratio: float
    powersgd_numel_before: int | None = None
    powersgd_numel_after: int | None = None


class CommCounter:
    """Accumulates the payload bytes of every bucket; a step ends at the last bucket."""

    def __init__(self, hook: str, uncompressed_bytes_per_step: int) -> None:
        self.hook, self.uncompressed = hook, uncompressed_bytes_per_step
        self.steps = self.bytes_total = self.bytes_last_step = self._current = 0
        self.powersgd: powerSGD_hook.PowerSGDState | None = None

    def add(self, nbytes: int, last_bucket: bool) -> None:
        self._current += nbytes
        if last_bucket:
            self.steps += 1
            self.bytes_total += self._current
            self.bytes_last_step, self._current = self._current, 0

    def report(self) -> CommReport:
        before = after = None
        if self.powersgd is not None:
            _, before, after = self.powersgd.compression_stats()
        return CommReport(
            hook=self.hook,
            steps=self.steps,
            bytes_total=self.bytes_total,
            bytes_last_step=self.bytes_last_step,
            uncompressed_bytes_per_step=self.uncompressed,
            compression_ratio=self.uncompressed / max(self.bytes_last_step, 1),
            powersgd_numel_before=before,
            powersgd_numel_after=after,
        )


def powersgd_numel(shape: torch.Size, rank: int, min_rate: float) -> int:
    """Elements PowerSGD all-reduces for one gradient: P [n, r] + Q [m, r] if worth it, else all of it."""
    if len(shape) <= 1:
        return shape.numel()
    n, m = shape[0], shape.numel() // shape[0]
    r = min(n, m, rank)
    return (n + m) * r if (n + m) * r * min_rate < n * m else n * m


Hook = Callable[[Any, dist.GradBucket], torch.futures.Future[torch.Tensor]]


def register_comm_hook(model: DistributedDataParallel, cfg: CommHookConfig) -> CommCounter:
    """Install ``cfg``'s hook on ``model`` behind a byte counter; returns the counter."""
    grads = [p for p in model.parameters() if p.requires_grad]
    counter = CommCounter(cfg.kind, sum(4 * p.numel() for p in grads))
    state: Any
    if cfg.kind == "none":
        state, inner = None, default_hooks.allreduce_hook

        def count(_state: Any, bucket: dist.GradBucket) -> int:
            return bucket.buffer().numel() * bucket.buffer().element_size()
    elif cfg.kind == "fp16":
        state, inner = None, default_hooks.fp16_compress_hook

        def count(_state: Any, bucket: dist.GradBucket) -> int:
            return bucket.buffer().numel() * 2
    else:
        state = powerSGD_hook.PowerSGDState(
            process_group=None,
            matrix_approximation_rank=cfg.rank,
            start_powerSGD_iter=cfg.warmup_steps,
            min_compression_rate=cfg.min_compression_rate,
            use_error_feedback=cfg.error_feedback,
            warm_start=cfg.warm_start,
            random_seed=cfg.seed,
        )
        inner, counter.powersgd = powerSGD_hook.powerSGD_hook, state

        def count(st: Any, bucket: dist.GradBucket) -> int:
            if st.iter < st.start_powerSGD_iter:  # PowerSGD's warm-up: a plain fp32 all-reduce
                return bucket.buffer().numel() * 4
            return 4 * sum(powersgd_numel(g.shape, cfg.rank, cfg.min_compression_rate) for g in bucket.gradients())

    # No postponed annotations in this module: DDP checks that this annotation *is* dist.GradBucket.
    def counting_hook(st: Any, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        counter.add(count(st, bucket), bucket.is_last())  # before the hook: PowerSGD advances its iter
        return inner(st, bucket)

    model.register_comm_hook(state, counting_hook)
    return counter
