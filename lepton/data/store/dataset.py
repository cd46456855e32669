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

from lepton.data.dataset import images_to_tensor
from lepton.data.store.format import Store
from lepton.errors import DataError

IMAGES, LABELS = "images", "labels"


class PackedImageDataset(Dataset):
    """``(image, label)`` pairs of one split: float32 ``[C, H, W]`` = pixels / 255 and an int64 label,
    the same values :meth:`lepton.data.ImageDataset.tensors` gives."""

    def __init__(self, store: Store | str | os.PathLike, split: str = "train", **store_options: Any) -> None:
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
        self.samples = info.samples

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


class SeededBatchSampler(Sampler[list[int]]):
    """Batches of indices; epoch ``e`` is shuffled by ``torch.randperm`` seeded with ``(seed, e)`` — the
    rule :class:`lepton.train.TensorBatches` uses, so both see the same batches."""

    def __init__(self, n: int, batch_size: int, *, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        else:
            order = torch.arange(self.n)
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size].tolist()


def _as_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


class StoreBatches:
    """A DataLoader over a packed split with ``set_epoch`` and ``len`` (what :func:`lepton.train.fit` needs)."""

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
    ) -> None:
        self.dataset = dataset
        self.sampler = SeededBatchSampler(len(dataset), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
        extra: dict[str, Any] = {"persistent_workers": True, "prefetch_factor": prefetch_factor} if workers else {}
        self.loader = DataLoader(
            dataset, batch_sampler=self.sampler, collate_fn=_as_batch, num_workers=workers, **extra
        )

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

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
    **store_options: Any,
) -> StoreBatches:
    """Mini-batches of ``split`` read from a packed store; same batches as ``TensorBatches`` for ``seed``."""
    return StoreBatches(
        PackedImageDataset(store, split, **store_options), batch_size, shuffle=shuffle, seed=seed, workers=workers
    )
