"""Byte- and bit-level primitives shared by the coders and the `.lep` file: a bounds-checked reader,
LEB128 varints, MSB-first bit packing, and the bucketing of large integers into small symbols + raw bits."""

from __future__ import annotations

import numpy as np

from lepton.errors import FormatError

MAX_BUCKET_BITS = 40  # bucketize() accepts values below 2**40; plenty for gaps in a tensor of <= 2**28 elements


class Reader:
    """Reads a byte string front to back; every read checks that the bytes exist (FormatError names ``what``)."""

    def __init__(self, data: bytes | bytearray | memoryview, what: str) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, name: str) -> bytes:
        if n > self.remaining():
            raise FormatError(
                f"{self.what}: {name} needs {n} bytes at offset {self.pos} but only "
                f"{self.remaining()} remain; the data is truncated or corrupted."
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self, name: str, limit: int) -> int:
        value = self.take(1, name)[0]
        if value > limit:
            raise FormatError(f"{self.what}: {name} is {value}, expected at most {limit}; the data is corrupted.")
        return value

    def uvarint(self, name: str, limit: int) -> int:
        """A canonical unsigned LEB128 integer in [0, limit]."""
        value = shift = 0
        for i in range(10):
            b = self.take(1, name)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise FormatError(f"{self.what}: {name} is an overlong varint; the data is corrupted.")
                if value > limit:
                    raise FormatError(
                        f"{self.what}: {name} is {value}, expected at most {limit}; the data is corrupted or forged."
                    )
                return value
            shift += 7
        raise FormatError(f"{self.what}: {name} is a varint longer than 10 bytes; the data is corrupted.")

    def rest(self) -> bytes:
        return self.take(self.remaining(), "the rest")

    def finish(self) -> None:
        if self.remaining():
            raise FormatError(f"{self.what}: {self.remaining()} unexpected bytes after the end of the data.")


def uvarint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant first, high bit set on all but the last byte."""
    if value < 0:
        raise ValueError(f"uvarint needs a non-negative integer, got {value}.")
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pack_bits(values: np.ndarray, widths: np.ndarray) -> bytes:
    """Concatenate ``values[i]`` written in ``widths[i]`` bits, most significant bit first; zero-pad the last byte."""
    values = np.asarray(values, dtype=np.uint64)
    widths = np.asarray(widths, dtype=np.int64)
    total = int(widths.sum())
    bits = np.zeros(total, dtype=np.uint8)
    starts = np.cumsum(widths) - widths
    for j in range(int(widths.max(initial=0))):
        sel = widths > j
        shift = (widths[sel] - 1 - j).astype(np.uint64)
        bits[starts[sel] + j] = (values[sel] >> shift) & np.uint64(1)
    return np.packbits(bits).tobytes()


def unpack_bits(data: bytes, widths: np.ndarray, what: str) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``data`` must be exactly the packed bytes, padding bits zero."""
    widths = np.asarray(widths, dtype=np.int64)
    total = int(widths.sum())
    if len(data) != (total + 7) // 8:
        raise FormatError(
            f"{what}: expected {(total + 7) // 8} bytes for {total} bits, found {len(data)}; "
            "the data is truncated or corrupted."
        )
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bits[total:].any():
        raise FormatError(f"{what}: nonzero padding bits after the last value; the data is corrupted.")
    values = np.zeros(len(widths), dtype=np.uint64)
    starts = np.cumsum(widths) - widths
    for j in range(int(widths.max(initial=0))):
        sel = widths > j
        values[sel] = (values[sel] << np.uint64(1)) | bits[starts[sel] + j]
    return values


def pack_fixed(values: np.ndarray, width: int) -> bytes:
    values = np.asarray(values)
    return pack_bits(values, np.full(len(values), width, dtype=np.int64))


def unpack_fixed(reader: Reader, count: int, width: int, name: str) -> np.ndarray:
    """``count`` values of ``width`` bits each, read from ``reader`` (whole bytes, zero padding)."""
    data = reader.take((count * width + 7) // 8, name)
    return unpack_bits(data, np.full(count, width, dtype=np.int64), f"{reader.what}: {name}")


def _bit_length(values: np.ndarray) -> np.ndarray:
    """Exact bit lengths of non-negative integers below 2**53 (frexp of an exact float is exact)."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


def bucketize(values: np.ndarray, direct_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split integers into (symbols, extra values, extra widths), like DEFLATE's distance codes.

    A value below ``2**direct_bits`` is its own symbol with no extra bits. A larger value of bit length ``b``
    becomes symbol ``2**direct_bits + 2*(b - direct_bits - 1) + (its second-highest bit)`` followed by its
    ``b - 2`` lowest bits, so a long tail costs a few symbols (two per octave) instead of one symbol per value.
    """
    if not 1 <= direct_bits <= 30:
        raise ValueError(f"direct_bits must be in [1, 30], got {direct_bits}.")
    values = np.asarray(values, dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() >= 1 << MAX_BUCKET_BITS):
        raise ValueError(f"bucketize needs values in [0, 2**{MAX_BUCKET_BITS}), got [{values.min()}, {values.max()}].")
    direct = 1 << direct_bits
    big = values >= direct
    symbols = values.copy()
    widths = np.zeros(len(values), dtype=np.int64)
    extra = np.zeros(len(values), dtype=np.int64)
    if big.any():
        v = values[big]
        b = _bit_length(v)
        symbols[big] = direct + 2 * (b - direct_bits - 1) + ((v >> (b - 2)) & 1)
        widths[big] = b - 2
        extra[big] = v & ((np.int64(1) << (b - 2)) - 1)
    return symbols, extra, widths


def bucket_symbol_limit(direct_bits: int, max_bits: int) -> int:
    """One past the largest symbol :func:`bucketize` emits for values below ``2**max_bits``."""
    return (1 << direct_bits) + 2 * max(0, max_bits - direct_bits)


def bucket_widths(symbols: np.ndarray, direct_bits: int) -> np.ndarray:
    """Extra-bit widths of bucketized ``symbols`` (symbols must be below a checked :func:`bucket_symbol_limit`)."""
    symbols = np.asarray(symbols, dtype=np.int64)
    j = symbols - (1 << direct_bits)
    return np.where(j >= 0, direct_bits + 1 + j // 2 - 2, 0)


def unbucketize(symbols: np.ndarray, extra: np.ndarray, direct_bits: int) -> np.ndarray:
    """Inverse of :func:`bucketize` given the symbols and the extra values read with :func:`bucket_widths`."""
    symbols = np.asarray(symbols, dtype=np.int64)
    j = symbols - (1 << direct_bits)
    big = j >= 0
    out = symbols.copy()
    if big.any():
        jb = j[big]
        b = direct_bits + 1 + jb // 2
        out[big] = ((2 | (jb & 1)) << (b - 2)) | np.asarray(extra, dtype=np.int64)[big]
    return out
