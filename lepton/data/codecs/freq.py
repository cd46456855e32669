"""``freq``: small-integer fields (labels, class ids, counts) coded at their entropy with a static frequency table.

Each value is one symbol of a range coder (:mod:`constriction`, 32-bit words) drawn from a categorical
distribution over the contiguous alphabet ``[base, base + K)``. Where the table lives:

- In a packed store, :meth:`FreqCodec.fit` counts the whole field and the store keeps the table
  (``FreqCodec.model``, ~15 bytes for ten classes) once per split, beside the field's blocks; every block
  is coded with it and stays independently decodable.
- A block holding a value outside that table's alphabet (or a codec without a table) carries its own table.
- A block whose alphabet is wider than ``max_symbols`` (or that zstd codes smaller) is stored with zstd.

Table layout (model bytes, and inline in mode-1 blocks): ``b"LFQ\\x01"``, ``base`` (zigzag varint), ``K``
(varint, 1..65,536), the count width ``w`` (one byte, 1..24; bit 7 set: sparse), then dense: ``K`` counts of
``w`` bits; sparse: a bitmap of ``K`` bits (which counts are non-zero), then those counts of ``w`` bits; every
run of bits packed least significant bit first and padded to a byte. Counts are the field's counts rescaled
to sum to about ``2^(8 + log2 m)`` for ``m`` distinct values (at least 4,096), every observed value keeping a count >= 1; at least one count is non-zero.

Block layout: a mode byte, then
- mode 0 (the field's table): the range coder's words (uint32, little-endian; none for a one-symbol table);
- mode 1 (an inline table): the table, then the words;
- mode 2 (wide alphabet): a zstd frame of the values (:class:`~lepton.data.codecs.general.ZstdCodec`).

The decoder checks the mode, every count and length in the table, that the alphabet fits the dtype, that
the words are whole, that the coder consumed all of them and that the decoded values encode back to exactly
these words (the stream is canonical); anything else is a FormatError.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from lepton.data.codecs.general import ZstdCodec, check_dtype, check_shape
from lepton.errors import ConfigError, DataError, FormatError
from lepton.utils.checks import check_int

MAGIC = b"LFQ\x01"
MAX_SYMBOLS = 1 << 16
MAX_VALUES = 1 << 27  # values one block decodes to at most (a store's block decodes to at most 1 GiB: 2^27 int64)
MODE_FIELD, MODE_INLINE, MODE_ZSTD = 0, 1, 2
SPARSE = 0x80  # the width byte's flag for a sparse table
_INTS = tuple(np.dtype(t) for t in ("bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"))
_ZSTD = ZstdCodec(level=19)


@dataclass(frozen=True)
class FreqTable:
    """A categorical distribution over ``[base, base + len(counts))`` with integer ``counts``."""

    base: int
    counts: np.ndarray  # uint32 [K]

    @classmethod
    def of(cls, values: np.ndarray) -> FreqTable:
        """The table of ``values`` (int64, non-empty): their counts, rescaled to a compact precision."""
        base = int(values.min())
        raw = np.bincount(values - base).astype(np.float64)
        total = 1 << max(12, 8 + int(np.ceil(np.log2(np.count_nonzero(raw)))))
        counts = np.where(raw > 0, np.maximum(1, np.rint(raw * (total / raw.sum()))), 0)
        return cls(base, counts.astype(np.uint32))

    @cached_property
    def model(self) -> Any:
        import constriction

        p = self.counts.astype(np.float64)
        return constriction.stream.model.Categorical(p / p.sum(), perfect=False)  # every symbol codable

    def to_bytes(self) -> bytes:
        """Dense (``K`` counts) or sparse (a bitmap of the non-zero counts, then those), whichever is shorter."""
        w = max(1, int(self.counts.max()).bit_length())
        head = MAGIC + _varint(_zigzag(self.base)) + _varint(len(self.counts))
        dense = bytes([w]) + _pack(self.counts, w)
        nonzero = self.counts > 0
        sparse = (
            bytes([w | SPARSE]) + np.packbits(nonzero, bitorder="little").tobytes() + _pack(self.counts[nonzero], w)
        )
        return head + min(dense, sparse, key=len)

    @classmethod
    def from_bytes(cls, data: bytes, pos: int = 0) -> tuple[FreqTable, int]:
        """The table at ``data[pos:]`` and the offset just past it; FormatError if it is malformed."""
        if data[pos : pos + 4] != MAGIC:
            raise FormatError("freq: the frequency table does not start with b'LFQ\\x01'")
        z, pos = _read_varint(data, pos + 4)
        k, pos = _read_varint(data, pos)
        if not 1 <= k <= MAX_SYMBOLS:
            raise FormatError(f"freq: the table declares {k} symbols, expected 1..{MAX_SYMBOLS}")
        if pos >= len(data) or not 1 <= data[pos] & ~SPARSE <= 24:
            raise FormatError("freq: the table's count width is missing or not in 1..24 bits")
        w, sparse, pos = data[pos] & ~SPARSE, bool(data[pos] & SPARSE), pos + 1
        present = np.ones(k, bool)
        if sparse:
            present, pos = _unpack(data, pos, k, 1, "bitmap").astype(bool), pos + (k + 7) // 8
        m = int(present.sum())
        counts = np.zeros(k, np.uint32)
        counts[present] = _unpack(data, pos, m, w, "counts")
        pos += (m * w + 7) // 8
        if not counts.any():
            raise FormatError("freq: every count of the table is zero")
        base = (z >> 1) ^ -(z & 1)
        if base < -(1 << 63) or base + k - 1 >= 1 << 64:
            raise FormatError(f"freq: the table's alphabet [{base}, {base + k}) is outside 64-bit integers")
        return cls(base, counts), pos

    def covers(self, lo: int, hi: int) -> bool:
        return self.base <= lo and hi < self.base + len(self.counts)


def _pack(values: np.ndarray, w: int) -> bytes:
    """``values`` as ``w``-bit fields, least significant bit first, padded to a byte."""
    bits = ((values.astype(np.uint32)[:, None] >> np.arange(w, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(bits.ravel(), bitorder="little").tobytes()


def _unpack(data: bytes, pos: int, n: int, w: int, what: str) -> np.ndarray:
    """``n`` fields of ``w`` bits at ``data[pos:]`` (uint32); FormatError if the bytes run short."""
    size = (n * w + 7) // 8
    if pos + size > len(data):
        raise FormatError(f"freq: the table needs {size} bytes of {what}, {len(data) - pos} are left")
    bits = np.unpackbits(np.frombuffer(data, np.uint8, size, pos), count=n * w, bitorder="little")
    return (bits.reshape(n, w).astype(np.uint32) << np.arange(w, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)


def _zigzag(v: int) -> int:
    return (v << 1) if v >= 0 else ((-v) << 1) - 1


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    v = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        v |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            return v, i + 1
        shift += 7
    raise FormatError("freq: a varint in the table is truncated or longer than 10 bytes")


@dataclass(frozen=True)
class FreqCodec:
    """Static-frequency range coder for integer and bool arrays with few distinct values.

    ``model``: a fitted table's bytes, as a store keeps them (empty: each block carries its own table);
    ``max_symbols``: the widest alphabet (max - min + 1) coded with a table, wider blocks go to zstd.
    """

    model: bytes = field(default=b"", repr=False)
    max_symbols: int = 4096
    name: str = field(init=False, default="freq")

    def __post_init__(self) -> None:
        check_int(self.max_symbols, "max_symbols", 2, MAX_SYMBOLS, owner="codec 'freq'")
        if not isinstance(self.model, bytes):
            raise ConfigError("freq: model must be bytes (FreqCodec.fit makes them)")
        if self.model:
            _, end = FreqTable.from_bytes(self.model)
            if end != len(self.model):
                raise FormatError(f"freq: the model has {len(self.model) - end} bytes after its table")

    @property
    def params(self) -> dict[str, Any]:
        """The JSON parameters; a fitted ``model`` travels separately (a store keeps it as a blob)."""
        return {"max_symbols": self.max_symbols}

    @cached_property
    def _table(self) -> FreqTable | None:
        return FreqTable.from_bytes(self.model)[0] if self.model else None

    def supports(self, dtype: Any, shape: tuple[int, ...]) -> bool:
        try:
            return np.dtype(dtype) in _INTS
        except TypeError:
            return False

    def _values(self, array: np.ndarray) -> tuple[np.ndarray, bool]:
        """The array as int64 values, and whether they fit int64 (uint64 above 2^63 - 1 does not)."""
        a = np.asarray(array)
        dt = check_dtype(a.dtype, decoding=False)
        if dt not in _INTS:
            raise DataError(f"freq codes integer and bool arrays only, got dtype {dt.name}; use 'zstd' for others")
        if dt == np.uint64 and a.size and int(a.max()) >= 1 << 63:
            return a.ravel(), False
        return a.astype(np.int64).ravel(), True

    def fit(self, array: np.ndarray, *, progress: Any = None) -> FreqCodec:
        """A codec whose table is the counts of ``array`` (one table for every block of a field); ``progress``
        is accepted for :func:`~lepton.data.codecs.fit_codec` and not called (counting is instant)."""
        values, ok = self._values(array)
        if not ok or not values.size or int(values.max()) - int(values.min()) >= self.max_symbols:
            return self  # no useful table: every block codes itself
        return dataclasses.replace(self, model=FreqTable.of(values).to_bytes())

    def encode(self, array: np.ndarray) -> bytes:
        array = np.asarray(array)
        values, ok = self._values(array)
        if not values.size:
            return bytes([MODE_FIELD])
        options = [bytes([MODE_ZSTD]) + _ZSTD.encode(array)]
        lo, hi = (int(values.min()), int(values.max())) if ok else (0, 1 << 64)
        if hi - lo < self.max_symbols:
            if self._table is not None and self._table.covers(lo, hi):
                options.append(bytes([MODE_FIELD]) + _code(values, self._table))
            own = FreqTable.of(values)
            options.append(bytes([MODE_INLINE]) + own.to_bytes() + _code(values, own))
        return min(options, key=len)

    def decode(self, data: bytes, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        dt, shp = check_dtype(dtype, decoding=True), check_shape(shape)
        if dt not in _INTS:
            raise FormatError(f"freq: dtype {dt.name} is not an integer or bool dtype")
        n = int(np.prod(shp, dtype=np.int64))
        data = bytes(data)
        if not data or data[0] > MODE_ZSTD:
            raise FormatError(f"freq: unknown block mode {data[0] if data else 'none'} (expected 0, 1 or 2)")
        mode = data[0]
        if n == 0:
            if data != bytes([MODE_FIELD]):
                raise FormatError("freq: an empty block is the single byte 0")
            return np.zeros(shp, dt)
        if mode == MODE_ZSTD:
            return _ZSTD.decode(data[1:], dt, shp)
        if n > MAX_VALUES:  # one symbol may cost almost nothing: bound the shape, not the bytes
            raise FormatError(f"freq: a block of {n:,} values is larger than the {MAX_VALUES:,} this codec decodes")
        if mode == MODE_FIELD:
            if self._table is None:
                raise FormatError("freq: the block uses the field's table but the codec has none")
            table, pos = self._table, 1
        else:
            table, pos = FreqTable.from_bytes(data, 1)
        info = np.iinfo(dt) if dt != np.bool_ else np.iinfo(np.uint8)
        hi = 1 if dt == np.bool_ else info.max
        if table.base < info.min or table.base + len(table.counts) - 1 > hi:
            raise FormatError(
                f"freq: the table's alphabet [{table.base}, {table.base + len(table.counts)}) does not fit {dt.name}"
            )
        words = data[pos:]
        if len(words) % 4 or len(words) // 4 > n + 4:  # a symbol costs at most 32 bits (leaky model, 24-bit precision)
            raise FormatError(f"freq: {len(words)} bytes of coded words for {n} values is not a valid stream")
        symbols = _decode(np.frombuffer(words, "<u4").astype(np.uint32), table, n)
        out = symbols.astype(np.int64) + table.base
        if _code(out, table) != words:  # the coder's output is canonical: anything else was forged
            raise FormatError("freq: the coded words are not what these values encode to (truncated, padded or forged)")
        return out.astype(dt).reshape(shp)


def _code(values: np.ndarray, table: FreqTable) -> bytes:
    import constriction

    if len(table.counts) == 1:  # one symbol carries no information: no words at all
        return b""

    enc = constriction.stream.queue.RangeEncoder()
    enc.encode((values - table.base).astype(np.int32), table.model)
    return enc.get_compressed().astype("<u4").tobytes()


def _decode(words: np.ndarray, table: FreqTable, n: int) -> np.ndarray:
    import constriction

    if len(table.counts) == 1:
        return np.zeros(n, np.int32)  # the canonical check refuses any words

    try:
        dec = constriction.stream.queue.RangeDecoder(words)
        symbols = np.asarray(dec.decode(table.model, n))
        exhausted = dec.maybe_exhausted()
    except Exception as exc:  # constriction raises on an invalid stream (e.g. "the compressed data ended")
        raise FormatError(f"freq: corrupt range-coder stream ({exc})") from None
    if not exhausted:
        raise FormatError("freq: the coded words hold more than the block's values (corrupt or forged)")
    return symbols
