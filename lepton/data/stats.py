"""Per-channel mean and std of a dataset's training split, for the input normalization a model stores.

The pixels are read as a model sees them (``pixels / 255``, in [0, 1]) from the training split only, never the
test split, in chunks of uint8 images (a packed store is read block by block, not whole). Each chunk's mean and
sum of squared deviations are computed in float64 and merged with Chan et al.'s pairwise update, so the result
matches a two-pass computation over the whole split without holding it in memory as floats.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from lepton.data.dataset import ImageDataset
from lepton.data.store.format import IMAGES
from lepton.data.store.source import StoreSource
from lepton.errors import DataError

CHUNK = 4096  # images per chunk
MIN_STD = 1e-6
"""A channel whose std is below this (constant over the training split) is only centred: its std is 1."""


def _train_chunks(data: ImageDataset | StoreSource) -> Iterator[np.ndarray]:
    """The training images, ``CHUNK`` at a time, as uint8 ``[n, C, H, W]``."""
    if isinstance(data, StoreSource):
        n = data.train_samples
        for start in range(0, n, CHUNK):
            x = data.store.take("train", IMAGES, np.arange(start, min(n, start + CHUNK)))
            yield x[:, None] if x.ndim == 3 else x
    else:
        x_all = data.x_train
        for start in range(0, len(x_all), CHUNK):
            x = x_all[start : start + CHUNK]
            yield x[:, None] if x.ndim == 3 else x


def channel_stats(data: ImageDataset | StoreSource) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and (population) standard deviation of each channel of ``pixels / 255`` over the training split.

    Args:
        data: an in-memory dataset or a packed store; only its training split is read.

    Returns:
        ``(mean, std)``, one float per channel; a channel constant over the split gets std 1 (see
        :data:`MIN_STD`), so dividing by it is safe.
    """
    count = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    for chunk in _train_chunks(data):
        x = chunk.astype(np.float64) / 255.0
        n = x.shape[0] * x.shape[2] * x.shape[3]
        if n == 0:
            continue
        c_mean = x.mean(axis=(0, 2, 3))
        c_m2 = ((x - c_mean[None, :, None, None]) ** 2).sum(axis=(0, 2, 3))
        if mean is None or m2 is None:
            count, mean, m2 = n, c_mean, c_m2
            continue
        total = count + n
        delta = c_mean - mean
        mean = mean + delta * (n / total)
        m2 = m2 + c_m2 + delta**2 * (count * n / total)
        count = total
    if mean is None or m2 is None:
        raise DataError(f"{data.name}: the training split has no pixels; cannot compute its mean and std.")
    std = np.sqrt(m2 / count)
    std = np.where(std < MIN_STD, 1.0, std)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
