"""The user cache of decoded datasets: uncompressed ``.npz`` files, loaded with ``allow_pickle=False``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from lepton.utils.io import atomic_path
from lepton.utils.paths import cache_dir

__all__ = ["cache_dir", "load_arrays", "save_arrays"]


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays in ``path``, or None if it is missing or unreadable (the caller rebuilds it)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None
