"""Byte sources for the packed store: a local file read with ``pread``, or any fsspec URL read by range.

A store is read by ranges (the footer, the index, then only the blocks asked for), so a store in object
storage (``s3://bucket/mnist.lds``, ``gs://…``, ``https://…``, ``memory://…``) is never downloaded whole.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Protocol

from lepton.errors import DataError, FormatError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(location: str | os.PathLike) -> bool:
    """True for ``scheme://…`` locations (handled by fsspec), False for plain paths."""
    return isinstance(location, str) and bool(_URL.match(location))


class ByteSource(Protocol):
    """Random-access reads of one immutable file."""

    location: str
    size: int

    def read(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class LocalSource:
    """A local file read with ``os.pread`` (thread-safe, no shared file position)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.location = str(path)
        try:
            self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            raise DataError(f"{path}: no such store; pack one with `lepton data pack SOURCE -o {path}`.") from None
        except OSError as e:
            raise DataError(f"{path}: cannot open the store ({e.strerror}).") from None
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise FormatError(
                f"{self.location}: read of {length} bytes at offset {offset} is outside the {self.size}-byte file"
            )
        out = bytearray()
        while len(out) < length:
            chunk = os.pread(self._fd, length - len(out), offset + len(out))
            if not chunk:
                raise FormatError(f"{self.location}: the file shrank while being read (at byte {offset + len(out)})")
            out += chunk
        return bytes(out)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FsspecSource:
    """A file behind an fsspec URL, read with ranged ``cat_file`` calls."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.location = url
        try:
            self._fs, self._path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except (ImportError, ValueError) as e:
            raise DataError(
                f"{url}: cannot open this URL with fsspec ({e}); install the filesystem's "
                "package (e.g. s3fs for s3://, gcsfs for gs://)."
            ) from None
        try:
            self.size = int(self._fs.size(self._path))
        except FileNotFoundError:
            raise DataError(f"{url}: no such store.") from None

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise FormatError(
                f"{self.location}: read of {length} bytes at offset {offset} is outside the {self.size}-byte file"
            )
        if length == 0:
            return b""
        data = self._fs.cat_file(self._path, start=offset, end=offset + length)
        if len(data) != length:
            raise FormatError(f"{self.location}: asked for {length} bytes at offset {offset}, got {len(data)}")
        return bytes(data)

    def close(self) -> None:
        """fsspec filesystems are cached and shared; nothing to release per source."""


def open_source(location: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> ByteSource:
    """A :class:`ByteSource` for a local path or a ``scheme://`` URL (``file://`` included)."""
    if is_url(location):
        return FsspecSource(str(location), storage_options)
    return LocalSource(Path(location).expanduser())
