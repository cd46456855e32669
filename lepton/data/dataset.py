"""The in-memory dataset type every loader returns: uint8 images and integer labels, split in two."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lepton.errors import DataError

if TYPE_CHECKING:  # torch loads on first use, so reading and packing data runs without it
    import torch


@dataclass(frozen=True)
class ImageDataset:
    """A train/test split of uint8 images ``[N, H, W]`` or ``[N, C, H, W]`` and int labels ``[N]``.

    Images need not be square (H != W); a model that needs square inputs says so when it is built.

    Models see ``pixels / 255`` as float32 ``[N, C, H, W]`` (see :meth:`tensors`).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...] = field(default=())
    source: str = ""
    notes: str = ""
    """How the data was read when that is not obvious from ``source`` (e.g. a held-out test split)."""

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.dtype != np.uint8:
                raise DataError(
                    f"{self.name}: {split} images must be uint8, got {x.dtype}; "
                    "scale them to 0..255 and cast with .astype(np.uint8)."
                )
            if x.ndim not in (3, 4):
                raise DataError(
                    f"{self.name}: {split} images must have shape [N, H, W] or [N, C, H, W], got {x.shape}."
                )
            if y.ndim != 1 or len(y) != len(x):
                raise DataError(
                    f"{self.name}: {split} labels must be a vector of {len(x)} entries, got shape {y.shape}."
                )
            if not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"{self.name}: {split} labels must be integers, got {y.dtype}.")
            if len(y) and y.min() < 0:
                raise DataError(f"{self.name}: {split} labels must be >= 0, found {int(y.min())}.")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"{self.name}: train images {self.x_train.shape[1:]} and test images "
                f"{self.x_test.shape[1:]} differ in shape."
            )
        if len(self.x_train) == 0:
            raise DataError(f"{self.name}: the training split is empty.")
        if not self.classes:
            object.__setattr__(self, "classes", tuple(str(i) for i in range(self._max_label() + 1)))
        elif self._max_label() >= len(self.classes):
            raise DataError(
                f"{self.name}: label {self._max_label()} has no class name ({len(self.classes)} classes given)."
            )

    def _max_label(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max() if len(self.y_test) else 0))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) as models see it."""
        s = self.x_train.shape[1:]
        return (1, *s) if len(s) == 2 else tuple(s)  # type: ignore[return-value]

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> ImageDataset:
        """The first ``n_train`` / ``n_test`` samples (for quick runs)."""
        return ImageDataset(
            self.name,
            self.x_train[:n_train],
            self.y_train[:n_train],
            self.x_test[:n_test],
            self.y_test[:n_test],
            self.classes,
            self.source,
            self.notes,
        )

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 ``[N, C, H, W]`` in [0, 1] and int64 labels for ``split`` ('train' or 'test')."""
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', got {split!r}.")
        import torch

        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        return images_to_tensor(x), torch.from_numpy(y.astype(np.int64))

    def summary(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "train": len(self.x_train),
            "test": len(self.x_test),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            **({"notes": self.notes} if self.notes else {}),
        }


def images_to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 images ``[N, H, W]`` / ``[N, C, H, W]`` -> float32 ``[N, C, H, W]`` = pixels / 255."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0)
    return t.unsqueeze(1) if t.ndim == 3 else t
