"""PyTorch access to a packed store: a random-access ``Dataset`` and a seeded, epoch-aware loader.

``PackedImageDataset`` reads images and labels straight from the store's blocks (decoded blocks are kept
in the store's LRU cache; each DataLoader worker has its own). ``store_batches`` yields exactly the
mini-batches :class:`lepton.train.TensorBatches` yields from the same arrays and seed, so training from
the store gives the same weights as training from memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lepton.data.batches import BatchOrder
from lepton.data.dataset import images_to_tensor
from lepton.data.store.format import IMAGES, LABELS, Store
from lepton.errors import DataError


class PackedImageDataset(Dataset):
    """``(image, label)`` pairs of one split: float32 ``[C, H, W]`` = pixels / 255 and an int64 label,
    the same values :meth:`lepton.data.ImageDataset.tensors` gives. ``limit``: only the first ``limit`` samples."""

    def __init__(
        self, store: Store | str | os.PathLike, split: str = "train", *, limit: int | None = None, **store_options: Any
    ) -> None:
        self.store = store if isinstance(store, Store) else Store(store, **store_options)
        info = self.store.split(split)
        if IMAGES not in info.fields or LABELS not in info.fields:
            raise DataError(
                f"{self.store.location}: split {split!r} needs fields {IMAGES!r} and {LABELS!r} "
                f"(it has {', '.join(info.fields)}); pack it with `lepton data pack`."
            )
        if info.fields[IMAGES].dtype != np.uint8 or len(info.fields[IMAGES].shape) not in (2, 3):
            raise DataError(f"{self.store.location}: field {IMAGES!r} must be uint8 [H, W] or [C, H, W] per sample")
        self.split = split
        self.samples = info.samples if limit is None else min(limit, info.samples)

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch at once (the DataLoader calls this instead of one ``__getitem__`` per sample)."""
        idx = np.asarray(indices, dtype=np.int64)
        x = self.store.take(self.split, IMAGES, idx)
        y = self.store.take(self.split, LABELS, idx)
        return images_to_tensor(x), torch.from_numpy(y.astype(np.int64))


class SeededBatchSampler(BatchOrder, Sampler[list[int]]):
    """Batches of indices in the order :func:`lepton.data.batches.batch_indices` gives (epoch ``e`` shuffled by
    ``torch.randperm`` seeded with ``(seed, e)``), the order :class:`lepton.train.TensorBatches` uses, so both
    see the same batches; sharded (``rank`` of ``world_size``), this rank's part of each global batch."""

    def __iter__(self) -> Iterator[list[int]]:
        for idx in self.indices():
            yield list(range(self.n)[idx]) if isinstance(idx, slice) else idx.tolist()


def _as_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


class StoreBatches:
    """A DataLoader over a packed split with ``set_epoch``, ``set_start``, ``shard`` and ``len`` (what
    :func:`lepton.train.fit` needs, on one process or under DDP)."""

    def __init__(
        self,
        dataset: PackedImageDataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        workers: int = 0,
        prefetch_factor: int = 4,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.dataset = dataset
        self.sampler = SeededBatchSampler(
            len(dataset), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank, world_size=world_size
        )
        self.workers, self.prefetch_factor = workers, prefetch_factor
        extra: dict[str, Any] = {"persistent_workers": True, "prefetch_factor": prefetch_factor} if workers else {}
        self.loader = DataLoader(
            dataset, batch_sampler=self.sampler, collate_fn=_as_batch, num_workers=workers, **extra
        )

    @property
    def rank(self) -> int:
        return self.sampler.rank

    @property
    def world_size(self) -> int:
        return self.sampler.world_size

    def shard(self, rank: int, world_size: int) -> StoreBatches:
        """The same batches, sharded: this rank reads only its part of each global batch from the store."""
        s = self.sampler
        return StoreBatches(
            self.dataset,
            s.batch_size,
            shuffle=s.shuffle,
            seed=s.seed,
            drop_last=s.drop_last,
            workers=self.workers,
            prefetch_factor=self.prefetch_factor,
            rank=rank,
            world_size=world_size,
        )

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def set_start(self, step: int) -> None:
        self.sampler.set_start(step)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.loader)


def store_batches(
    store: Store | str | os.PathLike,
    split: str,
    batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    workers: int = 0,
    limit: int | None = None,
    **store_options: Any,
) -> StoreBatches:
    """Mini-batches of ``split`` (its first ``limit`` samples) read from a packed store; the same batches as
    ``TensorBatches`` for ``seed``."""
    return StoreBatches(
        PackedImageDataset(store, split, limit=limit, **store_options),
        batch_size,
        shuffle=shuffle,
        seed=seed,
        workers=workers,
    )
