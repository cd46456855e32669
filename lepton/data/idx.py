"""The IDX file format of LeCun's MNIST distribution: parse, read (raw or .gz) and write.

Layout: two zero bytes, a dtype code, the number of dimensions ``ndim``; then ``ndim`` big-endian
uint32 sizes; then the values, big-endian, C order. The file must hold exactly that many bytes.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from lepton.errors import FormatError

# IDX dtype code -> numpy dtype (big-endian, as stored)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
MAX_IDX_BYTES = 1 << 34  # refuse forged gzip streams that would inflate past 16 GiB


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into a native-endian array; every length is checked before use."""
    if len(data) < 4:
        raise FormatError(f"{source}: {len(data)} bytes is too short for an IDX header (needs 4).")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise FormatError(f"{source}: not an IDX file (first two bytes are {data[:2].hex()}, expected 0000).")
    if code not in IDX_DTYPES:
        raise FormatError(
            f"{source}: unknown IDX dtype code 0x{code:02x}; known: "
            + ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
            + "."
        )
    if ndim == 0:
        raise FormatError(f"{source}: IDX header declares 0 dimensions.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FormatError(f"{source}: truncated IDX header ({len(data)} bytes, needs {header}).")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.uint64)) * dtype.itemsize
    if len(data) - header != expected:
        raise FormatError(
            f"{source}: IDX header declares shape {shape} ({expected} data bytes) but the file "
            f"holds {len(data) - header}; the file is truncated or corrupted."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (the exact inverse of :func:`parse_idx`)."""
    native = np.dtype(array.dtype).newbyteorder("=")
    if native not in _CODES:
        raise FormatError(
            f"dtype {array.dtype} has no IDX code; use one of uint8, int8, int16, int32, float32, float64."
        )
    if array.ndim == 0 or array.ndim > 255:
        raise FormatError(f"IDX needs 1 to 255 dimensions, got {array.ndim}.")
    code = _CODES[native]
    header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """The raw (decompressed) IDX bytes of ``path``; ``.gz`` files are decompressed with a size cap."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read(MAX_IDX_BYTES + 1)
            if len(data) > MAX_IDX_BYTES:
                raise FormatError(f"{path}: decompresses to more than {MAX_IDX_BYTES} bytes; refusing.")
            return data
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise FormatError(f"{path}: cannot read IDX file ({e}).") from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    return parse_idx(read_idx_bytes(path), source=str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as IDX; gzip-compressed when ``path`` ends in ``.gz``. Atomic."""
    from lepton.utils.io import atomic_write_bytes

    data = idx_bytes(array)
    path = Path(path)
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
