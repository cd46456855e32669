"""Crash-safe file writes: write to a temporary name in the same folder, fsync, then rename.

A temporary file is named ``.<final name>.<8 random characters>.tmp`` and its writer holds an exclusive
``flock`` on it while it lives. A writer killed mid-write leaves its temporary behind; the next write
into that folder removes every such leftover that is older than :data:`STALE_TEMP_SECONDS` and that no
live process holds locked, so killed writers never accumulate. Files not named like ours are never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; the age alone decides
    fcntl = None  # type: ignore[assignment]

STALE_TEMP_SECONDS = 15 * 60
TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # what tempfile.mkstemp(prefix=".<name>.", suffix=".tmp") makes


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def remove_stale_temps(folder: str | os.PathLike, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove the temporaries that killed writers left in ``folder``: named like ours, last written more than
    ``max_age`` seconds ago, and not locked by a live writer. Returns what was removed."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not TEMP_NAME.fullmatch(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or now - entry.stat(follow_symlinks=False).st_mtime < max_age:
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                if _try_lock(fd):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            finally:
                os.close(fd)
        except OSError:  # removed by another writer meanwhile, or not ours to remove
            continue
    return removed


@contextlib.contextmanager
def temp_beside(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty, locked temporary file in ``path``'s folder (created if missing); it is removed
    afterwards unless the body renamed it. Stale temporaries in that folder are swept first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        _try_lock(fd)  # held until we close: a sweeper never removes the temporary of a live writer
        yield tmp_path
    finally:
        tmp_path.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``.

    If the body raises (or the process is interrupted), the temporary file is removed and
    ``path`` is left as it was, so a reader never sees a half-written file.
    """
    path = Path(path)
    with temp_beside(path) as tmp_path:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp_path, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
