"""``lepton-cm``: lossless context-mixing coder for uint8 images (MNIST-like greyscale blocks).

The array's last two axes are the image height and width (``[N, H, W]``, ``[H, W]``, or
``[N, C, H, W]`` as ``N*C`` planes); a 0-d or 1-d array is coded as one row. The model starts
empty for every block and learns as it codes (see :mod:`lepton.data.codecs._cm_kernel`), so the
stream holds no separately stored model parameters.

Stream layout: ``b"LCM"``, a version byte (2), the CRC-32 of the raw pixels (4 bytes,
little-endian), then the arithmetic-coded bits. The decoder checks that the coder consumed the
stream exactly and that the CRC matches, so corruption raises FormatError; a stream of another
version (1 was the earlier, smaller model) is refused with a FormatError naming its version.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lepton.data.codecs.general import check_dtype, check_shape
from lepton.errors import DataError, FormatError

MAGIC = b"LCM\x02"
HEADER = len(MAGIC) + 4
# Each pixel costs at least one binary decision at p <= 65512/65536, i.e. >= 0.00053 bits, so a
# stream of b bytes can hold at most ~15,100 * b pixels; more is a forged shape.
MAX_PIXELS_PER_BYTE = 16_384


def _planes(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) >= 2:
        h, w = shape[-2], shape[-1]
        n = int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) > 2 else 1
        return n, h, w
    return 1, 1, (shape[0] if shape else 1)


def _tbits(pixels: int) -> int:
    """Context-table size (log2 entries per model) for a block: small blocks get small tables; 2**21
    entries cap it (2**22 measured only ~0.1% smaller streams, for twice the memory to clear)."""
    return min(21, max(12, (pixels * 4).bit_length()))


@dataclass(frozen=True)
class CMCodec:
    """Context-mixing arithmetic coder for uint8 images; ``params`` is empty (nothing to tune)."""

    name: str = field(init=False, default="lepton-cm")

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def supports(self, dtype: Any, shape: tuple[int, ...]) -> bool:
        try:
            return np.dtype(dtype) == np.uint8
        except TypeError:
            return False

    def encode(self, array: np.ndarray) -> bytes:
        from lepton.data.codecs._cm_kernel import run

        array = np.asarray(array)
        if array.dtype != np.uint8:
            raise DataError(f"lepton-cm codes uint8 images only, got dtype {array.dtype}; "
                            "use 'zstd' or 'lzma' for other arrays")
        images = np.ascontiguousarray(array).reshape(_planes(array.shape))
        header = MAGIC + zlib.crc32(images.tobytes()).to_bytes(4, "little")
        if images.size == 0:
            return header
        buf = np.empty(images.size * 13 + 64, dtype=np.uint8)  # > 9 decisions x 11.4 bits worst case
        n = run(images, buf, True, _tbits(images.size))
        return header + buf[:n].tobytes()

    def decode(self, data: bytes, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        from lepton.data.codecs._cm_kernel import run

        if check_dtype(dtype, decoding=True) != np.uint8:
            raise FormatError(f"lepton-cm: stored dtype is {np.dtype(dtype).name}, but lepton-cm "
                              "only codes uint8")
        shp = check_shape(shape)
        data = bytes(data)
        if len(data) >= len(MAGIC) and data[:3] == MAGIC[:3] and data[3] != MAGIC[3]:
            raise FormatError(f"lepton-cm: stream version {data[3]} is not supported (this decoder reads "
                              f"version {MAGIC[3]}, b'LCM\\x02'); re-encode the block")
        if len(data) < HEADER or data[:len(MAGIC)] != MAGIC:
            raise FormatError("lepton-cm: missing or unknown stream header (expected b'LCM\\x02')")
        crc = int.from_bytes(data[len(MAGIC):HEADER], "little")
        stream = np.frombuffer(data, dtype=np.uint8, offset=HEADER).copy()  # the kernel takes a writable buffer
        planes = _planes(shp)
        pixels = planes[0] * planes[1] * planes[2]
        if pixels > MAX_PIXELS_PER_BYTE * max(stream.size, 1):
            raise FormatError(f"lepton-cm: {stream.size} bytes cannot hold {pixels} pixels; "
                              "the stored shape is forged or the block is truncated")
        images = np.zeros(planes, dtype=np.uint8)
        if images.size:
            used = run(images, stream, False, _tbits(images.size))
            if used != stream.size:
                raise FormatError(f"lepton-cm: the coder used {used} of {stream.size} stream bytes; "
                                  "the block is truncated or corrupt")
        elif stream.size:
            raise FormatError("lepton-cm: extra bytes after an empty block")
        if zlib.crc32(images.tobytes()) != crc:
            raise FormatError("lepton-cm: decoded pixels fail the CRC-32 check; the block is corrupt")
        return images.reshape(shp)
