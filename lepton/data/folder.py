"""Image folders, torchvision ImageFolder's layout: ``ROOT/<class>/*.png|jpg|jpeg``, read with Pillow.

- Classes are the sub-folder names, sorted; an image's label is its folder's index. Files are found recursively
  inside each class folder and taken in sorted order; other files and hidden entries are ignored.
- ``ROOT/train`` and ``ROOT/test``, each in that layout, give the two splits (test classes must be train classes).
  Without ``ROOT/test``, a seeded stratified fraction of each class is held out for testing and the dataset's
  ``notes`` say so.
- Size: every image is resized (its shorter side, bilinear) and center-cropped to ``image_size`` x
  ``image_size``. Without ``image_size`` the target is the most common (height, width) among the images (ties: the
  first in file order), so a folder of equal-sized images is read pixel for pixel, non-square ones included.
- Channels: ``grey`` (Pillow's "L", ITU-R 601-2 luma) or ``rgb``; ``auto`` is rgb if any image's mode is colour
  (not 1/L/LA/I/F). Alpha is dropped. 16-bit grey is scaled to 8 bits (round(v * 255 / 65535)); 32-bit integer
  and floating-point images are refused (no fixed range).
- Safety: Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is left as it is and truncated images are
  not accepted; a file Pillow cannot read is a :class:`DataError` naming it. Images are decoded one at a time
  straight into one preallocated uint8 array, after checking that it fits in half of the machine's memory.
- Streaming: :func:`plan_image_folder` reads only the listing and the headers; its plan decodes any range of
  images, or a split block by block (how ``lepton data pack`` packs a folder larger than memory).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lepton.data.dataset import ImageDataset
from lepton.data.options import SourceOptions
from lepton.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
SEED = 0


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _class_dirs(root: Path) -> list[Path]:
    return sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def is_image_folder(path: Path) -> bool:
    """Whether ``path`` is a directory in ImageFolder layout (a class sub-folder holding an image)."""
    if not path.is_dir():
        return False
    base = path / "train" if (path / "train").is_dir() else path
    for d in _class_dirs(base):
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in d.rglob("*")):
            return True
    return False


def _split_files(root: Path, classes: list[str] | None) -> tuple[list[str], list[tuple[Path, int]]]:
    """The class names and ``(file, label)`` pairs of one split folder (``classes``: those of the train split)."""
    dirs = _class_dirs(root)
    if not dirs:
        raise DataError(
            f"{root}: no class sub-folders; put each class's images in ROOT/<class>/ (e.g. ROOT/cat/1.png)."
        )
    names = [d.name for d in dirs]
    if classes is not None:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(f"{root}: classes {unknown} are not in the train split; the test split's classes must be.")
    index = {c: i for i, c in enumerate(classes if classes is not None else names)}
    items: list[tuple[Path, int]] = []
    empty = []
    for d in dirs:
        files = _images_in(d)
        empty += [] if files else [d.name]
        items += [(f, index[d.name]) for f in files]
    if empty and classes is None:
        raise DataError(
            f"{root}: class folders {empty} hold no {'/'.join(IMAGE_SUFFIXES)} images; add images or remove them."
        )
    return names, items


def _hold_out(items: list[tuple[Path, int]], fraction: float) -> tuple[list, list]:
    """A stratified split: per class, a seeded ``fraction`` (at least one image of a class of two or more)."""
    rng = np.random.default_rng(SEED)
    labels = np.array([label for _, label in items])
    test: set[int] = set()
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, round(len(idx) * fraction)))
        test.update(rng.permutation(idx)[:n].tolist())
    return [it for i, it in enumerate(items) if i not in test], [it for i, it in enumerate(items) if i in test]


def _error(path: Path, e: BaseException) -> DataError:
    return DataError(f"{path}: cannot read as an image ({type(e).__name__}: {e}); replace or remove the file.")


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """(height, width) and the mode, from the header only."""
    try:
        with Image.open(path) as im:
            return (im.height, im.width), im.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _error(path, e) from e


def _fit(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize so the image covers ``size`` (height, width), then crop its center to exactly that size."""
    th, tw = size
    if (im.height, im.width) == size:
        return im
    scale = max(th / im.height, tw / im.width)
    w, h = max(tw, round(im.width * scale)), max(th, round(im.height * scale))
    im = im.resize((w, h), Image.Resampling.BILINEAR)
    left, top = (w - tw) // 2, (h - th) // 2
    return im.crop((left, top, left + tw, top + th))


def _to_8bit(im: Image.Image, path: Path) -> Image.Image:
    """16-bit grey scaled to 8 bits (Pillow's own conversion would clip everything above 255)."""
    if im.mode.startswith("I;16"):
        wide = np.asarray(im).astype(np.uint32)
        return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))
    if im.mode in ("I", "F"):
        raise DataError(
            f"{path}: {'32-bit integer' if im.mode == 'I' else 'floating-point'} pixels (Pillow mode {im.mode}) "
            "have no fixed range; save the image with 8 or 16 bits per channel."
        )
    return im


def decode_image(path: Path, size: tuple[int, int], rgb: bool) -> np.ndarray:
    """One image as uint8 ``[3, H, W]`` (``rgb``) or ``[H, W]``, resized and center-cropped to ``size``.

    Args:
        path: a PNG or JPEG file.
        size: (height, width) of the result.
        rgb: three channels, else grey.

    Returns:
        The pixels; a :class:`DataError` naming the file if Pillow cannot decode it.
    """
    try:
        with Image.open(path) as im:
            a = np.asarray(_fit(_to_8bit(im, path).convert("RGB" if rgb else "L"), size), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _error(path, e) from e
    return a.transpose(2, 0, 1) if rgb else a


def _decode_all(items: list[tuple[Path, int]], size: tuple[int, int], rgb: bool) -> tuple[np.ndarray, np.ndarray]:
    x = np.empty((len(items), *((3,) if rgb else ()), *size), dtype=np.uint8)
    for i, (path, _) in enumerate(items):
        x[i] = decode_image(path, size, rgb)
    return x, np.array([label for _, label in items], dtype=np.int64)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_fits(root: Path, nbytes: int, size: tuple[int, int], default_size: bool) -> None:
    """Refuse before decoding when the uint8 arrays would take more than half of this machine's memory."""
    memory = _physical_memory()
    if memory is not None and nbytes > memory // 2:
        how = "the most common size" if default_size else "--image-size"
        raise DataError(
            f"{root}: the images at {size[0]}x{size[1]} ({how}) would take {nbytes / 2**30:.1f} GiB in memory, "
            f"more than half of this machine's {memory / 2**30:.1f} GiB; set a smaller --image-size "
            "(data.image_size)."
        )


@dataclass(frozen=True)
class FolderPlan:
    """What an image folder holds, from its listing and the images' headers only: the classes, each split's
    ``(file, label)`` pairs, and the size and channels every image is decoded to."""

    root: Path
    classes: tuple[str, ...]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    size: tuple[int, int]
    rgb: bool
    notes: str

    def items(self, split: str) -> list[tuple[Path, int]]:
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', got {split!r}.")
        return self.train if split == "train" else self.test

    @property
    def image_bytes(self) -> int:
        """The uint8 pixels of every image of both splits, decoded."""
        return (len(self.train) + len(self.test)) * (3 if self.rgb else 1) * self.size[0] * self.size[1]

    def decode(self, split: str, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Images ``start:stop`` of ``split`` (uint8 ``[N, H, W]`` or ``[N, 3, H, W]``) and their int64 labels."""
        return _decode_all(self.items(split)[start:stop], self.size, self.rgb)

    def blocks(self, split: str, block_samples: int) -> Iterator[dict[str, np.ndarray]]:
        """``split`` as ``{"images", "labels"}`` blocks of ``block_samples`` images, decoded one block at a time."""
        for start in range(0, len(self.items(split)), block_samples):
            x, y = self.decode(split, start, start + block_samples)
            yield {"images": x, "labels": y}


def plan_image_folder(root: Path, options: SourceOptions | None = None) -> FolderPlan:
    """List an image folder and read its images' headers (see the module docstring for the rules); no pixels
    are decoded, so :meth:`FolderPlan.blocks` can stream a folder larger than memory.

    Args:
        root: the folder: ``ROOT/<class>/…`` or ``ROOT/train/<class>/…`` (+ ``ROOT/test/<class>/…``).
        options: ``image_size``, ``channels`` and ``test_fraction`` apply.

    Returns:
        The plan.
    """
    options = options or SourceOptions()
    if not root.is_dir():
        raise DataError(f"{root}: not a directory; an image folder is ROOT/<class>/*.png|jpg|jpeg.")
    has_train = (root / "train").is_dir()
    classes, train = _split_files(root / "train" if has_train else root, None)
    if has_train and (root / "test").is_dir():
        test, split_note = _split_files(root / "test", classes)[1], "test split from test/"
    else:
        train, test = _hold_out(train, options.test_fraction)
        split_note = f"no test split: held out {options.test_fraction:.0%} of each class's images (seed {SEED})"
    headers = [_header(p) for p, _ in (*train, *test)]
    if options.image_size is not None:
        size, size_note = (options.image_size, options.image_size), "image_size"
    else:
        size, size_note = Counter(s for s, _ in headers).most_common(1)[0][0], "the most common size"
    if options.channels == "auto":
        rgb = any(mode not in GREY_MODES for _, mode in headers)
    else:
        rgb = options.channels == "rgb"
    notes = f"{split_note}; images {size[0]}x{size[1]} ({size_note}), {'rgb' if rgb else 'grey'}"
    return FolderPlan(root, tuple(classes), train, test, size, rgb, notes)


def load_image_folder(root: Path, options: SourceOptions | None = None) -> ImageDataset:
    """An image folder (see the module docstring for the layout, sizing and channel rules), decoded whole.

    Args:
        root: the folder: ``ROOT/<class>/…`` or ``ROOT/train/<class>/…`` (+ ``ROOT/test/<class>/…``).
        options: ``image_size``, ``channels`` and ``test_fraction`` apply.

    Returns:
        The dataset: uint8 ``[N, H, W]`` (grey) or ``[N, 3, H, W]`` (rgb) images and int64 labels.
    """
    plan = plan_image_folder(root, options)
    _check_fits(root, plan.image_bytes, plan.size, (options or SourceOptions()).image_size is None)
    x_train, y_train = plan.decode("train")
    x_test, y_test = plan.decode("test")
    return ImageDataset(
        root.name,
        x_train,
        y_train,
        x_test,
        y_test,
        classes=plan.classes,
        source=f"{root} (image folder)",
        notes=plan.notes,
    )
