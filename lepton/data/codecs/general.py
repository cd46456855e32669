"""General-purpose lossless codecs for typed array blocks: ``deflate`` (zlib), ``zstd`` and ``lzma``.

Every codec compresses the array's little-endian, C-order bytes; with ``shuffle`` (the default) the
bytes of multi-byte elements are first regrouped by significance (byte 0 of every element, then
byte 1, …), which makes float and wide-int arrays far more compressible (the Blosc trick).
Decoding never trusts the stream: output is read in bounded chunks up to the expected size, so a
forged or truncated stream raises :class:`~lepton.errors.FormatError` instead of allocating
without bound.
"""

from __future__ import annotations

import abc
import lzma
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zstandard

from lepton.errors import DataError, FormatError
from lepton.utils.checks import check_int

# Every dtype the packed store accepts (native byte order; the codecs always write little-endian).
DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(t)
    for t in (
        "bool",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "int8",
        "int16",
        "int32",
        "int64",
        "float16",
        "float32",
        "float64",
    )
)
# xz's dictionary size per preset (bytes)
_LZMA_DICT = [1 << 18, 1 << 20, 1 << 21, 1 << 22, 1 << 22, 1 << 23, 1 << 23, 1 << 24, 1 << 25, 1 << 26]
_ZSTD_MAX_RATIO = 40_000  # RLE blocks expand at most ~32,800x (100 MB of zeros -> 3,070 bytes)


def check_dtype(dtype: Any, *, decoding: bool) -> np.dtype:
    """Return ``dtype`` as a native-order numpy dtype, or raise if the store does not accept it."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise (FormatError if decoding else DataError)(f"unknown dtype {dtype!r}: {exc}") from None
    dt = dt.newbyteorder("=")
    if dt not in DTYPES:
        names = ", ".join(d.name for d in DTYPES)
        raise (FormatError if decoding else DataError)(f"dtype {dt.name!r} is not supported; expected one of {names}")
    return dt


def check_shape(shape: Any) -> tuple[int, ...]:
    """Validate a decode shape: a tuple of non-negative ints."""
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise FormatError(f"shape {shape!r} is not a sequence of integers") from None
    if any(s < 0 for s in out) or len(out) > 32:
        raise FormatError(f"shape {out} is invalid: expected at most 32 non-negative dimensions")
    return out


def to_bytes(array: np.ndarray, shuffle: bool) -> bytes:
    """The array's little-endian C-order bytes, byte-shuffled when ``shuffle`` and itemsize > 1."""
    dt = check_dtype(array.dtype, decoding=False)
    a = np.ascontiguousarray(array, dtype=dt.newbyteorder("<"))
    if shuffle and dt.itemsize > 1 and a.size:
        return np.ascontiguousarray(a.view(np.uint8).reshape(-1, dt.itemsize).T).tobytes()
    return a.tobytes()


def from_bytes(raw: bytes, dtype: np.dtype, shape: tuple[int, ...], shuffle: bool, codec: str) -> np.ndarray:
    """Inverse of :func:`to_bytes`; ``raw`` must already have the exact expected length."""
    n = int(np.prod(shape, dtype=np.int64))
    if shuffle and dtype.itemsize > 1 and n:
        u8 = np.frombuffer(raw, dtype=np.uint8).reshape(dtype.itemsize, n).T
        raw = np.ascontiguousarray(u8).tobytes()
    if dtype == np.bool_:
        u8 = np.frombuffer(raw, dtype=np.uint8)
        if u8.size and u8.max() > 1:
            raise FormatError(f"{codec}: a bool array holds a byte other than 0 or 1")
        return u8.astype(np.bool_).reshape(shape)
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def expected_nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n * dtype.itemsize


@dataclass(frozen=True)
class _ByteCodec(abc.ABC):
    """Shared encode/decode plumbing; subclasses implement ``_compress`` and ``_decompress``."""

    name: str = field(init=False, default="")
    shuffle: bool = True

    @property
    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "name"}

    def supports(self, dtype: Any, shape: tuple[int, ...]) -> bool:
        try:
            check_dtype(dtype, decoding=False)
        except DataError:
            return False
        return True

    def encode(self, array: np.ndarray) -> bytes:
        return self._compress(to_bytes(np.asarray(array), self.shuffle))

    def decode(self, data: bytes, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        dt = check_dtype(dtype, decoding=True)
        shp = check_shape(shape)
        n = expected_nbytes(dt, shp)
        raw = self._decompress(bytes(data), n)
        if len(raw) != n:
            raise FormatError(
                f"{self.name}: stream decodes to {len(raw)} bytes, expected {n} "
                f"for {dt.name}{list(shp)}; the block is truncated or corrupt"
            )
        return from_bytes(raw, dt, shp, self.shuffle, self.name)

    @abc.abstractmethod
    def _compress(self, raw: bytes) -> bytes:
        """Compress the raw little-endian bytes."""

    @abc.abstractmethod
    def _decompress(self, data: bytes, n: int) -> bytes:
        """Decompress at most ``n + 1`` bytes, raising FormatError on a corrupt stream."""


def _level(name: str, level: Any, lo: int, hi: int) -> int:
    return check_int(level, "level", lo, hi, owner=f"codec {name!r}")


@dataclass(frozen=True)
class DeflateCodec(_ByteCodec):
    """LZ77 + Huffman (zlib stream with its Adler-32 check)."""

    name: str = field(init=False, default="deflate")
    level: int = 9

    def __post_init__(self) -> None:
        _level(self.name, self.level, 0, 9)

    def _compress(self, raw: bytes) -> bytes:
        return zlib.compress(raw, self.level)

    def _decompress(self, data: bytes, n: int) -> bytes:
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, n + 1)
        except zlib.error as exc:
            raise FormatError(f"deflate: corrupt stream ({exc})") from None
        if not d.eof or d.unused_data or d.unconsumed_tail:
            raise FormatError("deflate: stream is truncated, too long or followed by extra bytes")
        return out


_COMPRESSORS = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    """This thread's zstd compressor for ``level``, made once and reused (a compressor is not thread-safe).

    A fresh one per block allocated its context anew each time (~65 MB at level 19); on a thread pool packing
    large blocks the allocator kept those freed contexts fragmented and the process grew block after block.
    """
    cache = getattr(_COMPRESSORS, "by_level", None)
    if cache is None:
        cache = _COMPRESSORS.by_level = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
    return cache[level]


@dataclass(frozen=True)
class ZstdCodec(_ByteCodec):
    """Zstandard frame with content size and XXH64 checksum."""

    name: str = field(init=False, default="zstd")
    level: int = 19

    def __post_init__(self) -> None:
        _level(self.name, self.level, 1, 22)

    def _compress(self, raw: bytes) -> bytes:
        return _compressor(self.level).compress(raw)

    def _decompress(self, data: bytes, n: int) -> bytes:
        try:
            size = zstandard.frame_content_size(data)
        except zstandard.ZstdError as exc:
            raise FormatError(f"zstd: not a zstd frame ({exc})") from None
        if size != n:
            raise FormatError(f"zstd: frame declares {size} bytes, expected {n}")
        if n > _ZSTD_MAX_RATIO * len(data) + 65536:  # zstd cannot expand that far: a forged size
            raise FormatError(f"zstd: {len(data)} bytes cannot hold {n} bytes of data")
        try:
            return zstandard.ZstdDecompressor().decompress(data, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise FormatError(f"zstd: corrupt stream ({exc})") from None


@dataclass(frozen=True)
class LzmaCodec(_ByteCodec):
    """LZMA2 in an .xz container with CRC-32 (``preset`` 0-9, ``extreme`` = xz -e)."""

    name: str = field(init=False, default="lzma")
    preset: int = 9
    extreme: bool = True

    def __post_init__(self) -> None:
        check_int(self.preset, "preset", 0, 9, owner="codec 'lzma'")

    def _compress(self, raw: bytes) -> bytes:
        preset = self.preset | (lzma.PRESET_EXTREME if self.extreme else 0)
        # a dictionary larger than the input changes nothing but costs time (-9 allocates ~670 MB)
        dict_size = min(_LZMA_DICT[self.preset], max(4096, 1 << max(len(raw) - 1, 1).bit_length()))
        filters = [{"id": lzma.FILTER_LZMA2, "preset": preset, "dict_size": dict_size}]
        return lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=filters)

    def _decompress(self, data: bytes, n: int) -> bytes:
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            out = d.decompress(data, n + 1)
        except lzma.LZMAError as exc:
            raise FormatError(f"lzma: corrupt stream ({exc})") from None
        if not d.eof or d.unused_data:
            raise FormatError("lzma: stream is truncated, too long or followed by extra bytes")
        return out
