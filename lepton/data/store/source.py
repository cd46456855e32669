"""A packed store as a training source: shapes and classes from its index, training batches read from its
blocks as they are needed (never unpacked whole), the test split for evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from lepton.data.dataset import images_to_tensor
from lepton.data.store.dataset import PackedImageDataset, StoreBatches
from lepton.data.store.format import IMAGES, LABELS, Store
from lepton.errors import DataError


@dataclass(frozen=True)
class StoreSource:
    """The ``train`` and ``test`` splits of a packed store, optionally cut to their first samples.

    It answers what training asks of an :class:`lepton.data.ImageDataset` (``name``, ``classes``,
    ``input_shape``, ``num_classes``, ``tensors``, ``subset``, ``summary``); :meth:`batches` gives the
    store-backed loader, whose batches equal ``TensorBatches``' over the same arrays and seed.
    """

    location: str
    n_train: int | None = None
    n_test: int | None = None
    store: Store = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        store = Store(self.location)
        object.__setattr__(self, "store", store)
        for split in ("train", "test"):
            if split not in store.splits:
                raise DataError(
                    f"{self.location}: a training source needs splits 'train' and 'test', the store has "
                    f"{', '.join(store.splits) or 'none'}; pack it with `lepton data pack`."
                )
            PackedImageDataset(store, split)  # checks the fields now, not at the first batch
        if self.train_samples == 0:
            raise DataError(f"{self.location}: the training split is empty.")

    @property
    def name(self) -> str:
        return str(self.store.attrs.get("name", "packed"))

    @property
    def source(self) -> str:
        return self.store.location

    @property
    def train_samples(self) -> int:
        return _cut(self.store.splits["train"].samples, self.n_train)

    @property
    def test_samples(self) -> int:
        return _cut(self.store.splits["test"].samples, self.n_test)

    @cached_property
    def classes(self) -> tuple[str, ...]:
        named = self.store.attrs.get("classes")
        if isinstance(named, list) and named and all(isinstance(c, str) for c in named):
            return tuple(named)
        top = max(int(self.store.read_field(s, LABELS).max(initial=0)) for s in ("train", "test"))
        return tuple(str(i) for i in range(top + 1))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) as models see it."""
        s = self.store.splits["train"].fields[IMAGES].shape
        return (1, *s) if len(s) == 2 else tuple(s)  # type: ignore[return-value]

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> StoreSource:
        """The first ``n_train`` / ``n_test`` samples (for quick runs)."""
        return StoreSource(self.location, _min(self.n_train, n_train), _min(self.n_test, n_test))

    def batches(self, batch_size: int, *, seed: int = 0, shuffle: bool = True, workers: int = 0) -> StoreBatches:
        """Training mini-batches read from the store: the same batches as ``TensorBatches`` for ``seed``."""
        dataset = PackedImageDataset(self.store, "train", limit=self.n_train)
        return StoreBatches(dataset, batch_size, shuffle=shuffle, seed=seed, workers=workers)

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 ``[N, C, H, W]`` in [0, 1] and int64 labels of ``split`` ('train' or 'test'), read whole."""
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', got {split!r}.")
        n = self.train_samples if split == "train" else self.test_samples
        idx = np.arange(n)
        x, y = self.store.take(split, IMAGES, idx), self.store.take(split, LABELS, idx)
        return images_to_tensor(x), torch.from_numpy(y.astype(np.int64))

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "train": self.train_samples,
            "test": self.test_samples,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
        }


def _cut(n: int, limit: int | None) -> int:
    return n if limit is None else min(n, limit)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)
