"""Entropy coding of non-negative integer streams: ``encode_symbols`` / ``decode_symbols``.

A symbol stream is self-describing; the caller also keeps its length (``count``) and passes it to decode:

- ``count == 0``: zero bytes.
- otherwise: uvarint ``count`` (checked against the caller's count, so a wrong count never decodes);
  uvarint ``k`` (distinct symbols, ``1 <= k <= min(count, 2**20)``); the alphabet (the k distinct values,
  ascending); then, if ``k >= 2``, the coder's body over ranks 0..k-1 (each rank is the index of its symbol
  in the alphabet): see :mod:`.huffman` and :mod:`.ans`. With ``k == 1`` nothing follows.
- alphabet: a mode byte. Mode 0 (list): uvarint first value, then ``k-1`` uvarints ``next - previous - 1``.
  Mode 1 (bitmap): uvarint first value, uvarint ``span = last - first``, then ``span + 1`` bits, MSB first,
  zero-padded to a byte; bit i set means ``first + i`` is in the alphabet. The encoder writes the shorter.

Decoding checks everything and raises :class:`lepton.errors.FormatError` naming ``what``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from lepton.compress.coding import ans, huffman
from lepton.compress.coding.bits import Reader, uvarint
from lepton.errors import ConfigError, FormatError

Method = Literal["huffman", "ans"]
METHODS: tuple[Method, ...] = ("huffman", "ans")
MAX_COUNT = 1 << 28  # symbols in one stream
MAX_DISTINCT = 1 << 20  # distinct symbols in one stream
MAX_SYMBOL = (1 << 63) - 1

_CODERS = {"huffman": huffman, "ans": ans}

__all__ = ["MAX_COUNT", "MAX_DISTINCT", "METHODS", "Method", "decode_symbols", "encode_symbols", "entropy_bits"]


def _check_method(method: str) -> None:
    if method not in _CODERS:
        raise ConfigError(
            f"The 'method' parameter of the symbol coder must be one of {', '.join(METHODS)}. Got {method!r} instead."
        )


def _encode_alphabet(alphabet: np.ndarray) -> bytes:
    first, span = int(alphabet[0]), int(alphabet[-1] - alphabet[0])
    listed = b"".join(uvarint(int(d)) for d in np.diff(alphabet) - 1)
    bitmap_size = (span + 1 + 7) // 8
    if len(alphabet) > 1 and bitmap_size + len(uvarint(span)) < len(listed):
        bits = np.zeros(span + 1, dtype=np.uint8)
        bits[alphabet - first] = 1
        return b"\x01" + uvarint(first) + uvarint(span) + np.packbits(bits).tobytes()
    return b"\x00" + uvarint(first) + listed


def _decode_alphabet(reader: Reader, k: int) -> np.ndarray:
    mode = reader.byte("alphabet mode", 1)
    first = reader.uvarint("first symbol", MAX_SYMBOL)
    if mode == 0:
        values = [first]
        for _ in range(k - 1):
            values.append(values[-1] + 1 + reader.uvarint("alphabet step", MAX_SYMBOL))
        if values[-1] > MAX_SYMBOL:
            raise FormatError(f"{reader.what}: alphabet value {values[-1]} exceeds 2**63-1; the data is corrupted.")
        return np.array(values, dtype=np.int64)
    span = reader.uvarint("alphabet span", min(MAX_SYMBOL - first, 8 * reader.remaining()))
    bits = np.unpackbits(np.frombuffer(reader.take((span + 8) // 8, "alphabet bitmap"), dtype=np.uint8))
    if bits[span + 1 :].any() or not (bits[0] and bits[span]) or int(bits.sum()) != k:
        raise FormatError(
            f"{reader.what}: the alphabet bitmap does not hold {k} symbols from {first} to "
            f"{first + span} with zero padding; the data is corrupted."
        )
    return first + np.flatnonzero(bits).astype(np.int64)


def encode_symbols(symbols: np.ndarray, method: Method = "ans") -> bytes:
    """Entropy-code a 1-D array of integers in [0, 2**63) with ``method`` ("ans" or "huffman")."""
    _check_method(method)
    symbols = np.asarray(symbols)
    if symbols.ndim != 1 or (symbols.size and not np.issubdtype(symbols.dtype, np.integer)):
        raise ConfigError(
            f"encode_symbols needs a 1-D integer array, got dtype {symbols.dtype} with shape "
            f"{symbols.shape}; flatten it and cast to an integer dtype."
        )
    if len(symbols) > MAX_COUNT:
        raise ConfigError(
            f"encode_symbols takes at most {MAX_COUNT} symbols per stream, got {len(symbols)}; split the stream."
        )
    if len(symbols) == 0:
        return b""
    if symbols.min() < 0 or (symbols.dtype == np.uint64 and symbols.max() > MAX_SYMBOL):
        raise ConfigError(
            f"encode_symbols needs symbols in [0, 2**63), got [{symbols.min()}, {symbols.max()}]; "
            "map negative values to non-negative ones first (e.g. zigzag)."
        )
    symbols = symbols.astype(np.int64)
    alphabet = np.unique(symbols)
    if len(alphabet) > MAX_DISTINCT:
        raise ConfigError(
            f"encode_symbols takes at most {MAX_DISTINCT} distinct symbols, got {len(alphabet)}; "
            "bucket large values first (lepton.compress.coding.bits.bucketize)."
        )
    head = uvarint(len(symbols)) + uvarint(len(alphabet)) + _encode_alphabet(alphabet)
    if len(alphabet) == 1:
        return head
    ranks = np.searchsorted(alphabet, symbols)
    return head + _CODERS[method].encode(ranks, len(alphabet))


def decode_symbols(data: bytes, count: int, method: Method = "ans", *, what: str = "symbol stream") -> np.ndarray:
    """Decode ``count`` symbols (int64) written by :func:`encode_symbols` with the same ``method``.

    Refuses (FormatError naming ``what``) truncated or trailing data, impossible tables, a count other than
    the stored one, and an alphabet symbol that never occurs. Never loops past ``count`` symbols.
    """
    _check_method(method)
    if not isinstance(count, (int, np.integer)) or not 0 <= count <= MAX_COUNT:
        raise FormatError(f"{what}: symbol count {count!r} is not an integer in [0, {MAX_COUNT}].")
    count = int(count)
    if count == 0:
        if len(data):
            raise FormatError(f"{what}: expected no bytes for 0 symbols, found {len(data)}.")
        return np.zeros(0, dtype=np.int64)
    reader = Reader(data, what)
    stored = reader.uvarint("symbol count", MAX_COUNT)
    if stored != count:
        raise FormatError(
            f"{what}: the stream holds {stored} symbols, expected {count}; the count is wrong or the data is corrupted."
        )
    k = reader.uvarint("number of distinct symbols", min(count, MAX_DISTINCT))
    if k == 0:
        raise FormatError(f"{what}: 0 distinct symbols for {count} symbols; the data is corrupted.")
    alphabet = _decode_alphabet(reader, k)
    if k == 1:
        reader.finish()
        return np.full(count, alphabet[0], dtype=np.int64)
    ranks = _CODERS[method].decode(reader.rest(), count, k, what)
    if np.bincount(ranks, minlength=k).min() == 0:
        raise FormatError(
            f"{what}: some alphabet symbols never occur among the {count} decoded symbols; "
            "the data is corrupted or the count is wrong."
        )
    return alphabet[ranks]


def entropy_bits(symbols: np.ndarray) -> float:
    """Order-0 empirical entropy of ``symbols`` in bits (total): the bound a static model approaches."""
    _, counts = np.unique(np.asarray(symbols), return_counts=True)
    if len(counts) < 2:
        return 0.0
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())
