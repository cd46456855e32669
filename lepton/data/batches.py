"""Fast in-memory mini-batches with a per-epoch, seeded shuffle (no DataLoader overhead)."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class TensorBatches:
    """Iterate ``(x, y)`` mini-batches of in-memory tensors.

    The order of epoch ``e`` depends only on ``(seed, e)``, so a run resumed at an epoch boundary sees
    exactly the batches an uninterrupted run would. Call :meth:`set_epoch` before each epoch (the
    training loop does), as with ``DistributedSampler``.

    Sharded (``rank`` of ``world_size``, see :meth:`shard`), each step's *global* batch holds
    ``batch_size × world_size`` samples of the same shuffle, and this rank yields its slice of it;
    a last global batch too small to give every rank a sample is dropped.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def shard(self, rank: int, world_size: int) -> TensorBatches:
        """The same batches, sharded: this rank's slice of each global batch."""
        return TensorBatches(
            self.x,
            self.y,
            self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            drop_last=self.drop_last,
            rank=rank,
            world_size=world_size,
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full, tail = divmod(len(self.x), self.batch_size * self.world_size)
        return full + (not self.drop_last and tail >= self.world_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, step = len(self.x), self.batch_size * self.world_size
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = None
        for i in range(len(self)):
            lo, hi = i * step, min((i + 1) * step, n)
            if self.world_size > 1:  # this rank's part, as torch.tensor_split would cut [lo, hi)
                q, r = divmod(hi - lo, self.world_size)
                lo += self.rank * q + min(self.rank, r)
                hi = lo + q + (self.rank < r)
            if order is None:
                yield self.x[lo:hi], self.y[lo:hi]
            else:
                idx = order[lo:hi]
                yield self.x[idx], self.y[idx]
