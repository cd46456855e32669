"""CIFAR-10 and CIFAR-100, binary version only (never the pickled Python version).

The format (https://www.cs.toronto.edu/~kriz/cifar.html, "binary version"):

- CIFAR-10: ``data_batch_1.bin`` … ``data_batch_5.bin`` (train) and ``test_batch.bin``; each a run of
  3073-byte records: 1 label byte (0..9), then 3072 pixel bytes.
- CIFAR-100: ``train.bin`` and ``test.bin``; 3074-byte records: the coarse label (0..19), the fine label
  (0..99), then 3072 pixel bytes.
- The pixels are 1024 red, 1024 green, 1024 blue bytes, each plane 32 rows of 32: (3, 32, 32), channels first.
- Class names, optional: ``batches.meta.txt`` (CIFAR-10), ``fine_label_names.txt`` / ``coarse_label_names.txt``
  (CIFAR-100), one name per line.

A file whose size is not a whole number of records is refused, naming the file and the offset of the cut record.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lepton.data.dataset import ImageDataset
from lepton.errors import DataError

PIXELS = 3 * 32 * 32
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR100_FILES = ("train.bin", "test.bin")
ARCHIVE_DIRS = {"cifar10": "cifar-10-batches-bin", "cifar100": "cifar-100-binary"}
PICKLED_MARKERS = ("data_batch_1", "cifar-10-batches-py", "cifar-100-python")
DOWNLOAD_HINT = (
    "download the binary version instead (cifar-10-binary.tar.gz or cifar-100-binary.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html) and pass its folder"
)


def is_pickled_cifar(path: Path) -> bool:
    """Whether ``path`` is (or holds) CIFAR's pickled Python version, which Lepton refuses to read."""
    if path.name in PICKLED_MARKERS:
        return True
    return path.is_dir() and any((path / m).exists() for m in PICKLED_MARKERS)


def cifar_kind(path: Path) -> str | None:
    """``"cifar10"``, ``"cifar100"`` or None: which binary CIFAR ``path`` (a directory) holds."""
    if not path.is_dir():
        return None
    if (path / CIFAR10_TEST).is_file() or any((path / f).is_file() for f in CIFAR10_TRAIN):
        return "cifar10"
    if all((path / f).is_file() for f in CIFAR100_FILES):
        return "cifar100"
    for kind, sub in ARCHIVE_DIRS.items():  # the folder the archive extracts to, one level down
        if (path / sub).is_dir():
            return kind
    return None


def read_records(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 3, 32, 32]`` uint8 and the label columns ``[N, label_bytes]`` of one CIFAR ``.bin`` file.

    Args:
        path: the ``.bin`` file.
        label_bytes: 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine).

    Returns:
        ``(images, labels)``.
    """
    record = label_bytes + PIXELS
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}).") from e
    whole, rest = divmod(size, record)
    if rest:
        raise DataError(
            f"{path}: truncated: record {whole} at byte offset {whole * record} has {rest} of {record} bytes "
            f"({size} bytes is not a whole number of {record}-byte records); download the file again."
        )
    if whole == 0:
        raise DataError(f"{path}: holds no records (0 bytes).")
    raw = np.fromfile(path, dtype=np.uint8).reshape(whole, record)
    images = np.ascontiguousarray(raw[:, label_bytes:]).reshape(whole, 3, 32, 32)
    return images, np.ascontiguousarray(raw[:, :label_bytes])


def _class_names(path: Path, count: int) -> tuple[str, ...]:
    if not path.is_file():
        return ()
    names = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    names = [n for n in names if n]
    if len(names) != count:
        raise DataError(f"{path}: lists {len(names)} class names, expected {count}; fix or remove the file.")
    return tuple(names)


def _checked(labels: np.ndarray, count: int, path: Path, what: str) -> np.ndarray:
    if len(labels) and int(labels.max()) >= count:
        row = int(np.argmax(labels >= count))
        raise DataError(f"{path}: record {row} has {what} label {int(labels[row])}, expected 0..{count - 1}.")
    return labels.astype(np.int64)


def load_cifar(root: Path, kind: str | None = None, *, labels: str = "fine") -> ImageDataset:
    """CIFAR-10 or CIFAR-100 from the binary version's folder.

    Args:
        root: the folder holding the ``.bin`` files (or the folder the archive extracted into).
        kind: ``"cifar10"`` or ``"cifar100"``; None detects it from the file names.
        labels: CIFAR-100 only: ``"fine"`` (100 classes) or ``"coarse"`` (20).

    Returns:
        The dataset: uint8 ``[N, 3, 32, 32]`` images (50,000 train / 10,000 test for the full sets).
    """
    if is_pickled_cifar(root):
        raise DataError(
            f"{root}: this is CIFAR's pickled Python version, which Lepton never reads (unpickling can run code); "
            + DOWNLOAD_HINT
            + "."
        )
    found = cifar_kind(root)
    kind = kind or found
    if kind not in ARCHIVE_DIRS:
        raise DataError(
            f"{root}: no CIFAR binary files (data_batch_1.bin … test_batch.bin, or train.bin and test.bin); "
            + DOWNLOAD_HINT
            + "."
        )
    if (root / ARCHIVE_DIRS[kind]).is_dir():
        root = root / ARCHIVE_DIRS[kind]
    if kind == "cifar10":
        train_files, test_file = [root / f for f in CIFAR10_TRAIN], root / CIFAR10_TEST
        label_bytes, column, count, what = 1, 0, 10, "a"
        names_file = root / "batches.meta.txt"
    else:
        if labels not in ("fine", "coarse"):
            raise DataError(f"CIFAR-100 labels must be 'fine' or 'coarse', got {labels!r}.")
        train_files, test_file = [root / "train.bin"], root / "test.bin"
        label_bytes, column = 2, (1 if labels == "fine" else 0)
        count, what = (100, "fine") if labels == "fine" else (20, "coarse")
        names_file = root / f"{labels}_label_names.txt"
    missing = [f.name for f in (*train_files, test_file) if not f.is_file()]
    if missing:
        raise DataError(f"{root}: {kind} is missing {', '.join(missing)}; " + DOWNLOAD_HINT + ".")
    parts = [read_records(f, label_bytes) for f in (*train_files, test_file)]
    ys = [_checked(y[:, column], count, f, what) for (_, y), f in zip(parts, (*train_files, test_file), strict=True)]
    return ImageDataset(
        kind,
        np.concatenate([x for x, _ in parts[:-1]]),
        np.concatenate(ys[:-1]),
        parts[-1][0],
        ys[-1],
        classes=_class_names(names_file, count) or tuple(str(i) for i in range(count)),
        source=f"{root} ({kind} binary version)",
        notes="" if kind == "cifar10" else f"{labels} labels ({count} classes)",
    )
