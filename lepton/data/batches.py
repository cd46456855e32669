"""Fast in-memory mini-batches with a per-epoch, seeded shuffle (no DataLoader overhead), and the batch order
they share with the packed store's loader (:func:`batch_indices`)."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def batch_count(n: int, batch_size: int, *, world_size: int = 1, drop_last: bool = False) -> int:
    """Steps in one epoch of ``n`` samples: global batches of ``batch_size × world_size``; a last global
    batch too small to give every rank a sample is dropped (and any short one with ``drop_last``)."""
    full, tail = divmod(n, batch_size * world_size)
    return full + (not drop_last and tail >= world_size)


def batch_indices(
    n: int,
    batch_size: int,
    *,
    epoch: int,
    seed: int,
    shuffle: bool = True,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    start: int = 0,
) -> Iterator[torch.Tensor | slice]:
    """The sample indices of each step of ``epoch``, from step ``start`` on: a tensor of indices when
    shuffled (``torch.randperm`` seeded with ``(seed, epoch)``), else a slice.

    Sharded (``rank`` of ``world_size``), each step's global batch holds ``batch_size × world_size``
    samples of the same order and this rank gets its part, as ``torch.tensor_split`` would cut it.
    """
    step = batch_size * world_size
    order = None
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    for i in range(start, batch_count(n, batch_size, world_size=world_size, drop_last=drop_last)):
        lo, hi = i * step, min((i + 1) * step, n)
        if world_size > 1:
            q, r = divmod(hi - lo, world_size)
            lo += rank * q + min(rank, r)
            hi = lo + q + (rank < r)
        yield slice(lo, hi) if order is None else order[lo:hi]


class BatchOrder:
    """The batch order of one epoch after another: :func:`batch_indices` with the epoch, the start step of a
    mid-epoch resume and the shard (``rank`` of ``world_size``) kept as state. :class:`TensorBatches` and the
    store's ``SeededBatchSampler`` both iterate it, so in-memory and store training see the same batches."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.start = epoch, 0

    def set_start(self, step: int) -> None:
        """Begin the coming pass at step ``step`` of the epoch (``len`` still counts the whole epoch)."""
        self.start = step

    def __len__(self) -> int:
        return batch_count(self.n, self.batch_size, world_size=self.world_size, drop_last=self.drop_last)

    def indices(self) -> Iterator[slice | torch.Tensor]:
        """This rank's indices of each remaining batch of the current epoch."""
        return batch_indices(
            self.n,
            self.batch_size,
            epoch=self.epoch,
            seed=self.seed,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            rank=self.rank,
            world_size=self.world_size,
            start=self.start,
        )


class TensorBatches(BatchOrder):
    """Iterate ``(x, y)`` mini-batches of in-memory tensors.

    The order of epoch ``e`` depends only on ``(seed, e)``, so a resumed run sees exactly the batches an
    uninterrupted run would. Call :meth:`set_epoch` before each epoch (the training loop does), as with
    ``DistributedSampler``; :meth:`set_start` skips the first steps of the coming pass (a mid-epoch resume).

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
        super().__init__(
            len(x), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank, world_size=world_size
        )
        self.x, self.y = x, y

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

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in self.indices():
            yield self.x[idx], self.y[idx]
